//! Writes a lowered `Net` as an ONNX `ModelProto`: FP32, or INT8 in QDQ form (the form TensorRT and
//! onnxruntime build int8 kernels from): weights stored as int8 with one symmetric scale per output
//! channel and a `DequantizeLinear` (axis 0), and every Conv/Gemm input (and each residual Add's
//! shortcut input) passed through a `QuantizeLinear`→`DequantizeLinear` pair with one symmetric int8
//! scale per tensor. Biases stay f32
//! (TensorRT and onnxruntime quantise them themselves from the input and weight scales).

use crate::interp::Range;
use crate::net::{Net, Op};
use crate::proto::{self, attribute_type, data_type, type_proto, AttributeProto, NodeProto, TensorProto};
use crate::ExportOptions;
use std::collections::BTreeMap;

/// Opset 17 (ONNX 1.12) with IR version 8: old enough for every runtime in use (TensorRT 8.6+,
/// onnxruntime 1.12+), new enough for per-axis QDQ (opset 13).
pub const OPSET: i64 = 17;
pub const IR_VERSION: i64 = 8;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

/// How a net's activations are quantised: the calibrated range of each value id.
pub struct Quant<'a> {
    pub ranges: &'a [Range],
}

struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Graph {
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
    }

    fn f32(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        self.inits.push(tensor(
            name,
            dims,
            data_type::FLOAT,
            data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }

    fn i8(&mut self, name: &str, dims: &[usize], data: &[i8]) {
        self.inits.push(tensor(
            name,
            dims,
            data_type::INT8,
            data.iter().map(|&v| v as u8).collect(),
        ));
    }
}

fn tensor(name: &str, dims: &[usize], dt: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dt,
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

/// The symmetric int8 scale that maps `[-max_abs, max_abs]` onto `[-127, 127]`; an all-zero tensor
/// gets scale 1 so dequantisation stays finite.
pub fn symmetric_scale(max_abs: f32) -> f32 {
    if max_abs > 0.0 && max_abs.is_finite() {
        max_abs / 127.0
    } else {
        1.0
    }
}

/// Per-output-channel symmetric int8 weights: `(q, scales)` with `w ≈ q · scale[channel]`.
pub fn quantize_per_channel(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / channels;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for ch in w.chunks_exact(per) {
        let scale = symmetric_scale(ch.iter().fold(0f32, |m, v| m.max(v.abs())));
        q.extend(ch.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (q, scales)
}

/// The model; `metadata` becomes its `metadata_props`.
pub fn model(
    net: &Net,
    opts: &ExportOptions,
    quant: Option<Quant>,
    metadata: Vec<(String, String)>,
) -> proto::ModelProto {
    let mut g = Graph {
        nodes: Vec::new(),
        inits: Vec::new(),
    };
    let n = net.nodes.len();
    // Name of every value: the node that makes it, the graph input, or the graph output.
    let mut names: Vec<String> = std::iter::once(INPUT.to_string())
        .chain(net.nodes.iter().map(|nd| nd.name.clone()))
        .collect();
    names[n] = OUTPUT.to_string();

    let input_type = match opts.uint8_input {
        Some(norm) => {
            // Normalisation inside the graph, in the trainer's arithmetic: x·(1/(255·std)) − mean/std.
            names[0] = "input_normalized".into();
            g.f32("input_scale", &[], &[(1.0 / (255.0 * norm.std)) as f32]);
            g.f32("input_offset", &[], &[(norm.mean / norm.std) as f32]);
            g.node(
                "Cast",
                "input_cast",
                &[INPUT],
                "input_float",
                vec![int("to", data_type::FLOAT as i64)],
            );
            g.node(
                "Mul",
                "input_mul",
                &["input_float", "input_scale"],
                "input_scaled",
                vec![],
            );
            g.node(
                "Sub",
                "input_sub",
                &["input_scaled", "input_offset"],
                &names[0],
                vec![],
            );
            data_type::UINT8
        }
        None => data_type::FLOAT,
    };

    // With quantisation, the name a layer reads a value under (its QDQ output), made once per value
    // however many layers read it (a ResNet block's input feeds conv1, the shortcut and the Add).
    let mut qdq: BTreeMap<usize, String> = BTreeMap::new();
    for (i, node) in net.nodes.iter().enumerate() {
        let out = names[i + 1].clone();
        let mut inputs: Vec<String> = node.inputs.iter().map(|&v| names[v].clone()).collect();
        // Which input is quantised: Conv/Gemm read int8 activations; an Add gets its shortcut input
        // quantised (TensorRT's rule for fusing the residual Add into the int8 conv before it).
        let slot = match node.op {
            Op::Conv(_) | Op::Gemm(_) => Some(0),
            Op::Add => Some(1),
            _ => None,
        };
        if let (Some(q), Some(slot)) = (&quant, slot) {
            let v = node.inputs[slot];
            inputs[slot] = qdq
                .entry(v)
                .or_insert_with(|| {
                    let base = &names[v];
                    let (s, z) = (format!("{base}.act_scale"), format!("{base}.act_zero_point"));
                    let (qv, dqv) = (format!("{base}.q"), format!("{base}.dq"));
                    g.f32(&s, &[], &[symmetric_scale(q.ranges[v].max_abs())]);
                    g.i8(&z, &[], &[0]);
                    let (qn, dqn) = (format!("{base}.quantize"), format!("{base}.dequantize"));
                    g.node("QuantizeLinear", &qn, &[base, &s, &z], &qv, vec![]);
                    g.node("DequantizeLinear", &dqn, &[&qv, &s, &z], &dqv, vec![]);
                    dqv
                })
                .clone();
        }
        let x = &inputs[0];
        let (w_name, b_name) = (format!("{}.weight", node.name), format!("{}.bias", node.name));
        match &node.op {
            Op::Conv(c) => {
                weight(
                    &mut g,
                    &w_name,
                    &[c.cout, c.cin, c.k, c.k],
                    &c.w,
                    c.cout,
                    quant.is_some(),
                );
                g.f32(&b_name, &[c.cout], &c.b);
                let (k, s, p) = (c.k as i64, c.stride as i64, c.pad as i64);
                g.node(
                    "Conv",
                    &node.name,
                    &[x, &w_name, &b_name],
                    &out,
                    vec![
                        ints("kernel_shape", &[k, k]),
                        ints("strides", &[s, s]),
                        ints("pads", &[p, p, p, p]),
                        ints("dilations", &[1, 1]),
                        int("group", 1),
                    ],
                );
            }
            Op::Gemm(l) => {
                weight(&mut g, &w_name, &[l.out, l.inp], &l.w, l.out, quant.is_some());
                g.f32(&b_name, &[l.out], &l.b);
                g.node(
                    "Gemm",
                    &node.name,
                    &[x, &w_name, &b_name],
                    &out,
                    vec![int("transB", 1)],
                );
            }
            Op::Relu => g.node("Relu", &node.name, &[x], &out, vec![]),
            Op::MaxPool2 => g.node(
                "MaxPool",
                &node.name,
                &[x],
                &out,
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ),
            Op::Add => g.node("Add", &node.name, &[x, &inputs[1]], &out, vec![]),
            Op::GlobalAvgPool => g.node("GlobalAveragePool", &node.name, &[x], &out, vec![]),
            Op::Flatten => g.node("Flatten", &node.name, &[x], &out, vec![int("axis", 1)]),
        }
    }

    let [c, h, w] = net.input;
    let graph = proto::GraphProto {
        node: g.nodes,
        name: "tanren".into(),
        initializer: g.inits,
        input: vec![value_info(INPUT, input_type, &[None, Some(c), Some(h), Some(w)])],
        output: vec![value_info(OUTPUT, data_type::FLOAT, &[None, Some(net.classes)])],
        ..Default::default()
    };
    proto::ModelProto {
        ir_version: IR_VERSION,
        producer_name: "tanren".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        doc_string: "Image classifier trained by tanren; see metadata_props for classes and input.".into(),
        graph: Some(graph),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| proto::StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    }
}

/// A weight initializer named `name`: f32, or int8 + per-channel `DequantizeLinear` producing `name`.
fn weight(g: &mut Graph, name: &str, dims: &[usize], w: &[f32], channels: usize, int8: bool) {
    if !int8 {
        g.f32(name, dims, w);
        return;
    }
    let (q, scales) = quantize_per_channel(w, channels);
    let (qn, sn, zn) = (
        format!("{name}_quantized"),
        format!("{name}_scale"),
        format!("{name}_zero_point"),
    );
    g.i8(&qn, dims, &q);
    g.f32(&sn, &[channels], &scales);
    g.i8(&zn, &[channels], &vec![0; channels]);
    g.node(
        "DequantizeLinear",
        &format!("{name}_dequantize"),
        &[&qn, &sn, &zn],
        name,
        vec![int("axis", 0)],
    );
}

/// A tensor type with the batch dimension (None) symbolic.
fn value_info(name: &str, elem_type: i32, dims: &[Option<usize>]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => Value::DimValue(*v as i64),
                None => Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    proto::ValueInfoProto {
        name: name.into(),
        r#type: Some(proto::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(proto::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
