//! Networks built from a `ModelSpec`. Variable names (`blocks.{i}.conv`, `blocks.{i}.bn`, `fc` for the
//! CNN; see `resnet.rs` for the ResNet) are part of the model file format: `model.json` + these names
//! are enough to rebuild the model elsewhere.

use crate::resnet::{self, Resnet};
use tanren_core::{CnnSpec, Head, ModelSpec};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
pub enum Net {
    Cnn(Cnn),
    /// Boxed: its layer list makes it several times the CNN's size.
    Resnet(Box<Resnet>),
}

#[derive(Debug)]
pub struct Cnn {
    blocks: Vec<(nn::Conv2D, Option<nn::BatchNorm>)>,
    fc: nn::Linear,
    dropout: f64,
    head: Head,
}

pub fn build(root: &nn::Path, spec: &ModelSpec) -> Net {
    match spec {
        ModelSpec::Cnn(c) => Net::Cnn(build_cnn(root, c)),
        ModelSpec::Resnet(r) => Net::Resnet(Box::new(resnet::build(root, r))),
    }
}

fn build_cnn(root: &nn::Path, c: &CnnSpec) -> Cnn {
    let mut in_ch = c.in_channels as i64;
    let mut side = c.image_size as i64;
    let mut blocks = Vec::new();
    for (i, b) in c.blocks.iter().enumerate() {
        let p = root / "blocks" / i;
        let k = b.kernel as i64;
        let conv_cfg = nn::ConvConfig {
            padding: k / 2,
            bias: !c.batch_norm,
            ..Default::default()
        };
        let conv = nn::conv2d(&p / "conv", in_ch, b.out_channels as i64, k, conv_cfg);
        let bn = c
            .batch_norm
            .then(|| nn::batch_norm2d(&p / "bn", b.out_channels as i64, Default::default()));
        blocks.push((conv, bn));
        in_ch = b.out_channels as i64;
        side /= 2;
    }
    let features = match c.head {
        Head::Flatten => in_ch * side * side,
        Head::GlobalAvgPool => in_ch,
    };
    let fc = nn::linear(root / "fc", features, c.num_classes as i64, Default::default());
    Cnn {
        blocks,
        fc,
        dropout: c.dropout,
        head: c.head,
    }
}

impl ModuleT for Cnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (conv, bn) in &self.blocks {
            x = x.apply(conv);
            if let Some(bn) = bn {
                x = x.apply_t(bn, train);
            }
            // Pool, then ReLU: the same function and the same gradients as the seed's ReLU-then-pool
            // (ReLU is monotone, and both orders send the gradient to the window's first maximum or
            // nowhere), but ReLU and its backward touch a quarter of the elements: ~20% per step on CPU.
            x = x.max_pool2d_default(2).relu();
        }
        x = match self.head {
            Head::Flatten => x.flatten(1, -1),
            Head::GlobalAvgPool => x.adaptive_avg_pool2d([1, 1]).flatten(1, -1),
        };
        if self.dropout > 0.0 {
            x = x.dropout(self.dropout, train);
        }
        x.apply(&self.fc)
    }
}

impl Net {
    /// Where the weights live (every layer shares one device; the head is always there).
    pub fn device(&self) -> tch::Device {
        match self {
            Net::Cnn(n) => n.fc.ws.device(),
            Net::Resnet(n) => n.fc_device(),
        }
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Net::Cnn(n) => n.forward_t(xs, train),
            Net::Resnet(n) => n.forward_t(xs, train),
        }
    }
}

pub fn parameter_count(vs: &nn::VarStore) -> u64 {
    vs.trainable_variables().iter().map(|t| t.numel() as u64).sum()
}

/// Elements of the largest activation one image produces in a forward pass (a convolution's output
/// before pooling). Serving uses it to keep a CPU batch's working set near the caches: past that,
/// a bigger batch only adds memory traffic.
pub fn peak_activation_elems(spec: &ModelSpec) -> u64 {
    match spec {
        ModelSpec::Cnn(c) => {
            let (mut peak, mut side) = (0u64, c.image_size as u64);
            for b in &c.blocks {
                peak = peak.max(b.out_channels as u64 * side * side);
                side /= 2;
            }
            peak.max(c.num_classes as u64)
        }
        // Stage 0 (width w at full size) is the largest: later stages double the width and quarter
        // the area.
        ModelSpec::Resnet(r) => {
            (r.width as u64 * r.image_size as u64 * r.image_size as u64).max(r.num_classes as u64)
        }
    }
}
