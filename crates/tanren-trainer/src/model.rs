//! Networks built from a `ModelSpec`. Variable names (`blocks.{i}.conv`, `blocks.{i}.bn`, `fc`) are part
//! of the model file format: `model.json` + these names are enough to rebuild the model elsewhere.

use tanren_core::{CnnSpec, Head, ModelSpec};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
pub struct Net {
    blocks: Vec<(nn::Conv2D, Option<nn::BatchNorm>)>,
    fc: nn::Linear,
    dropout: f64,
    head: Head,
}

pub fn build(root: &nn::Path, spec: &ModelSpec) -> Net {
    match spec {
        ModelSpec::Cnn(c) => build_cnn(root, c),
    }
}

fn build_cnn(root: &nn::Path, c: &CnnSpec) -> Net {
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
    Net {
        blocks,
        fc,
        dropout: c.dropout,
        head: c.head,
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (conv, bn) in &self.blocks {
            x = x.apply(conv);
            if let Some(bn) = bn {
                x = x.apply_t(bn, train);
            }
            x = x.relu().max_pool2d_default(2);
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

pub fn parameter_count(vs: &nn::VarStore) -> u64 {
    vs.trainable_variables().iter().map(|t| t.numel() as u64).sum()
}
