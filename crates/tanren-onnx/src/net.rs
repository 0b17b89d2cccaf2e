//! A trained model lowered to a flat list of inference ops: what both the ONNX writer and the reference
//! interpreter walk, so the file we export and the numbers we calibrate on come from one description.
//!
//! Lowering follows `tanren-trainer`'s `model.rs` and `resnet.rs` layer for layer (names included) and
//! folds every eval-mode batch norm into the convolution before it, which is exact up to f32 rounding:
//! `bn(conv(x)) = conv'(x)` with `w' = w·γ/√(σ²+ε)` and `b' = β + (b − μ)·γ/√(σ²+ε)`.

use crate::safetensors::Tensor;
use crate::OnnxError;
use std::collections::BTreeMap;
use tanren_core::{CnnSpec, Head, ModelSpec, ResnetSpec};

/// tch's `BatchNormConfig` default, which is what the trainer builds with.
pub const BN_EPS: f64 = 1e-5;

#[derive(Debug, Clone)]
pub struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    /// `[cout, cin, k, k]`, batch norm folded in.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct Linear {
    pub inp: usize,
    pub out: usize,
    /// `[out, inp]`, as torch stores it (ONNX `Gemm` with `transB = 1`).
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

#[derive(Debug, Clone)]
pub enum Op {
    Conv(Conv),
    Relu,
    /// 2×2, stride 2, no padding, odd sizes floored: `max_pool2d_default(2)`.
    MaxPool2,
    Add,
    GlobalAvgPool,
    Flatten,
    Gemm(Linear),
}

/// One op. Value 0 is the graph input; node `i` produces value `i + 1`.
#[derive(Debug, Clone)]
pub struct Node {
    /// The layer's name in the weights file where it has one (`blocks.0.conv`, `stages.1.0.short.conv`),
    /// else a name in the same style (`blocks.0.pool`); unique within the net.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Net {
    /// `[C, H, W]` of one input image.
    pub input: [usize; 3],
    pub classes: usize,
    pub nodes: Vec<Node>,
}

impl Net {
    /// Validates the spec, checks every tensor's presence, dtype and shape, refuses leftovers (weights
    /// of another architecture), and lowers.
    pub fn load(spec: &ModelSpec, weights: &[u8]) -> Result<Net, OnnxError> {
        spec.validate().map_err(OnnxError::InvalidSpec)?;
        let mut w = Weights {
            tensors: crate::safetensors::parse(weights)?,
        };
        let net = match spec {
            ModelSpec::Cnn(c) => lower_cnn(c, &mut w)?,
            ModelSpec::Resnet(r) => lower_resnet(r, &mut w)?,
        };
        if let Some(name) = w.tensors.keys().next() {
            return Err(OnnxError::UnexpectedTensor { name: name.clone() });
        }
        Ok(net)
    }

    fn push(&mut self, name: impl Into<String>, op: Op, inputs: Vec<usize>) -> usize {
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
        });
        self.nodes.len()
    }
}

/// The tensors a spec needs, by name and shape, in the trainer's naming: what `Net::load` checks and what
/// tests fill with random values.
pub fn expected_tensors(spec: &ModelSpec) -> Result<Vec<(String, Vec<usize>)>, OnnxError> {
    spec.validate().map_err(OnnxError::InvalidSpec)?;
    let mut out = Vec::new();
    let mut conv_bn = |p: &str, cin: usize, cout: usize, k: usize, bias: bool, bn: Option<&str>| {
        out.push((format!("{p}.weight"), vec![cout, cin, k, k]));
        if bias {
            out.push((format!("{p}.bias"), vec![cout]));
        }
        if let Some(bn) = bn {
            for v in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{bn}.{v}"), vec![cout]));
            }
        }
    };
    let (features, classes) = match spec {
        ModelSpec::Cnn(c) => {
            let (mut cin, mut side) = (c.in_channels as usize, c.image_size as usize);
            for (i, b) in c.blocks.iter().enumerate() {
                let bn = format!("blocks.{i}.bn");
                let cout = b.out_channels as usize;
                let bn = c.batch_norm.then_some(bn.as_str());
                conv_bn(
                    &format!("blocks.{i}.conv"),
                    cin,
                    cout,
                    b.kernel as usize,
                    !c.batch_norm,
                    bn,
                );
                cin = cout;
                side /= 2;
            }
            let features = match c.head {
                Head::Flatten => cin * side * side,
                Head::GlobalAvgPool => cin,
            };
            (features, c.num_classes as usize)
        }
        ModelSpec::Resnet(r) => {
            let (n, w) = resnet_shape(r);
            conv_bn("stem.conv", r.in_channels as usize, w, 3, false, Some("stem.bn"));
            let mut cin = w;
            for s in 0..3 {
                let cout = w << s;
                for b in 0..n {
                    let p = format!("stages.{s}.{b}");
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    conv_bn(
                        &format!("{p}.conv1"),
                        cin,
                        cout,
                        3,
                        false,
                        Some(&format!("{p}.bn1")),
                    );
                    conv_bn(
                        &format!("{p}.conv2"),
                        cout,
                        cout,
                        3,
                        false,
                        Some(&format!("{p}.bn2")),
                    );
                    if stride != 1 || cin != cout {
                        conv_bn(
                            &format!("{p}.short.conv"),
                            cin,
                            cout,
                            1,
                            false,
                            Some(&format!("{p}.short.bn")),
                        );
                    }
                    cin = cout;
                }
            }
            (cin, r.num_classes as usize)
        }
    };
    out.push(("fc.weight".into(), vec![classes, features]));
    out.push(("fc.bias".into(), vec![classes]));
    Ok(out)
}

/// (blocks per stage, channels of stage 0), as in the trainer's `resnet::shape`.
fn resnet_shape(r: &ResnetSpec) -> (usize, usize) {
    (((r.depth - 2) / 6) as usize, r.width as usize)
}

struct Weights {
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Removes and returns a tensor after checking its shape, so leftovers are easy to find.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, OnnxError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| OnnxError::MissingTensor { name: name.into() })?;
        if t.shape != shape {
            return Err(OnnxError::WrongShape {
                name: name.into(),
                expected: shape.to_vec(),
                got: t.shape,
            });
        }
        Ok(t.data)
    }

    /// A convolution (`{conv}.weight`, `{conv}.bias` when `bn` is None) with the batch norm `bn`
    /// (`{bn}.weight/bias/running_mean/running_var`) folded in.
    fn conv(
        &mut self,
        conv: &str,
        bn: Option<&str>,
        (cin, cout, k, stride): (usize, usize, usize, usize),
    ) -> Result<Conv, OnnxError> {
        let mut w = self.take(&format!("{conv}.weight"), &[cout, cin, k, k])?;
        let b = match bn {
            None => self.take(&format!("{conv}.bias"), &[cout])?,
            Some(bn) => {
                let gamma = self.take(&format!("{bn}.weight"), &[cout])?;
                let beta = self.take(&format!("{bn}.bias"), &[cout])?;
                let mean = self.take(&format!("{bn}.running_mean"), &[cout])?;
                let var = self.take(&format!("{bn}.running_var"), &[cout])?;
                let per_out = cin * k * k;
                (0..cout)
                    .map(|o| {
                        let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
                        for v in &mut w[o * per_out..(o + 1) * per_out] {
                            *v = (*v as f64 * scale) as f32;
                        }
                        (beta[o] as f64 - mean[o] as f64 * scale) as f32
                    })
                    .collect()
            }
        };
        Ok(Conv {
            cin,
            cout,
            k,
            stride,
            pad: k / 2,
            w,
            b,
        })
    }

    fn linear(&mut self, name: &str, inp: usize, out: usize) -> Result<Linear, OnnxError> {
        Ok(Linear {
            inp,
            out,
            w: self.take(&format!("{name}.weight"), &[out, inp])?,
            b: self.take(&format!("{name}.bias"), &[out])?,
        })
    }
}

fn lower_cnn(c: &CnnSpec, w: &mut Weights) -> Result<Net, OnnxError> {
    let (mut cin, mut side) = (c.in_channels as usize, c.image_size as usize);
    let mut net = Net {
        input: [cin, side, side],
        classes: c.num_classes as usize,
        nodes: Vec::new(),
    };
    let mut x = 0;
    for (i, b) in c.blocks.iter().enumerate() {
        let cout = b.out_channels as usize;
        let bn = format!("blocks.{i}.bn");
        let conv = w.conv(
            &format!("blocks.{i}.conv"),
            c.batch_norm.then_some(bn.as_str()),
            (cin, cout, b.kernel as usize, 1),
        )?;
        x = net.push(format!("blocks.{i}.conv"), Op::Conv(conv), vec![x]);
        // Pool before ReLU, as the trainer does (same function, cheaper).
        x = net.push(format!("blocks.{i}.pool"), Op::MaxPool2, vec![x]);
        x = net.push(format!("blocks.{i}.relu"), Op::Relu, vec![x]);
        cin = cout;
        side /= 2;
    }
    let features = match c.head {
        Head::Flatten => cin * side * side,
        Head::GlobalAvgPool => {
            x = net.push("gap", Op::GlobalAvgPool, vec![x]);
            cin
        }
    };
    // Dropout is the identity at inference.
    x = net.push("flatten", Op::Flatten, vec![x]);
    let fc = w.linear("fc", features, net.classes)?;
    net.push("fc", Op::Gemm(fc), vec![x]);
    Ok(net)
}

fn lower_resnet(r: &ResnetSpec, w: &mut Weights) -> Result<Net, OnnxError> {
    let (n, width) = resnet_shape(r);
    let (c, side) = (r.in_channels as usize, r.image_size as usize);
    let mut net = Net {
        input: [c, side, side],
        classes: r.num_classes as usize,
        nodes: Vec::new(),
    };
    let stem = w.conv("stem.conv", Some("stem.bn"), (c, width, 3, 1))?;
    let x = net.push("stem.conv", Op::Conv(stem), vec![0]);
    let mut x = net.push("stem.relu", Op::Relu, vec![x]);
    let mut cin = width;
    for s in 0..3 {
        let cout = width << s;
        for b in 0..n {
            let p = format!("stages.{s}.{b}");
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let conv1 = w.conv(
                &format!("{p}.conv1"),
                Some(&format!("{p}.bn1")),
                (cin, cout, 3, stride),
            )?;
            let conv2 = w.conv(
                &format!("{p}.conv2"),
                Some(&format!("{p}.bn2")),
                (cout, cout, 3, 1),
            )?;
            let a = net.push(format!("{p}.conv1"), Op::Conv(conv1), vec![x]);
            let a = net.push(format!("{p}.relu1"), Op::Relu, vec![a]);
            let a = net.push(format!("{p}.conv2"), Op::Conv(conv2), vec![a]);
            let short = if stride != 1 || cin != cout {
                let sc = w.conv(
                    &format!("{p}.short.conv"),
                    Some(&format!("{p}.short.bn")),
                    (cin, cout, 1, stride),
                )?;
                net.push(format!("{p}.short.conv"), Op::Conv(sc), vec![x])
            } else {
                x
            };
            let sum = net.push(format!("{p}.add"), Op::Add, vec![a, short]);
            x = net.push(format!("{p}.relu"), Op::Relu, vec![sum]);
            cin = cout;
        }
    }
    let x = net.push("gap", Op::GlobalAvgPool, vec![x]);
    let x = net.push("flatten", Op::Flatten, vec![x]);
    let fc = w.linear("fc", cin, net.classes)?;
    net.push("fc", Op::Gemm(fc), vec![x]);
    Ok(net)
}
