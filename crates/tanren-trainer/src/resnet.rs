//! CIFAR-style ResNet (He et al. 2016, §4.2) of depth 6n+2. Variable names: `stem.conv`, `stem.bn`,
//! `stages.{s}.{b}.{conv1,bn1,conv2,bn2}`, `stages.{s}.{b}.short.{conv,bn}` where a block changes
//! shape (1×1 projection, option B), and `fc`.

use tanren_core::ResnetSpec;
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> Self {
        let cfg = nn::ConvConfig {
            stride,
            padding: k / 2,
            bias: false,
            ..Default::default()
        };
        ConvBn {
            conv: nn::conv2d(&p / "conv", cin, cout, k, cfg),
            bn: nn::batch_norm2d(&p / "bn", cout, Default::default()),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train)
    }
}

#[derive(Debug)]
struct Block {
    a: ConvBn,
    b: ConvBn,
    short: Option<ConvBn>,
}

#[derive(Debug)]
pub struct Resnet {
    stem: ConvBn,
    blocks: Vec<Block>,
    fc: nn::Linear,
}

/// (blocks per stage, channels of stage 0).
fn shape(r: &ResnetSpec) -> (u32, i64) {
    ((r.depth - 2) / 6, r.width as i64)
}

/// `ConvBn` keeps `conv`/`bn` under its own path; the basic block's two layers are named conv1/bn1 and
/// conv2/bn2, so they get a small path adapter here rather than a second type.
fn conv_bn_named(p: &nn::Path, idx: u32, cin: i64, cout: i64, stride: i64) -> ConvBn {
    let cfg = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    ConvBn {
        conv: nn::conv2d(p / format!("conv{idx}"), cin, cout, 3, cfg),
        bn: nn::batch_norm2d(p / format!("bn{idx}"), cout, Default::default()),
    }
}

pub fn build(root: &nn::Path, r: &ResnetSpec) -> Resnet {
    let (n, w) = shape(r);
    let stem = ConvBn::new(root / "stem", r.in_channels as i64, w, 3, 1);
    let mut blocks = Vec::new();
    let mut cin = w;
    for s in 0..3u32 {
        let cout = w << s;
        for b in 0..n {
            let p = root / "stages" / s / b;
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let short = (stride != 1 || cin != cout).then(|| ConvBn::new(&p / "short", cin, cout, 1, stride));
            blocks.push(Block {
                a: conv_bn_named(&p, 1, cin, cout, stride),
                b: conv_bn_named(&p, 2, cout, cout, 1),
                short,
            });
            cin = cout;
        }
    }
    let fc = nn::linear(root / "fc", cin, r.num_classes as i64, Default::default());
    Resnet { stem, blocks, fc }
}

impl Resnet {
    pub(crate) fn fc_device(&self) -> tch::Device {
        self.fc.ws.device()
    }
}

impl ModuleT for Resnet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.stem.forward_t(xs, train).relu();
        for blk in &self.blocks {
            let out = blk.a.forward_t(&x, train).relu();
            let out = blk.b.forward_t(&out, train);
            let short = match &blk.short {
                Some(s) => s.forward_t(&x, train),
                None => x,
            };
            x = (out + short).relu();
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
