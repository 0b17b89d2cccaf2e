//! Export checked from outside, without libtorch: every model family the trainer builds is exported with
//! random weights, parsed back and checked for structure, then run in onnxruntime and compared with the
//! crate's own interpreter (1e-4); the INT8 QDQ model must run and mostly agree with FP32 on top-1; bad
//! inputs are refused with errors that name the culprit. onnxruntime runs through the venv's python
//! (`scripts/setup.sh` installs it); these tests fail, not skip, when it is missing.

use prost::Message;
use std::collections::{BTreeMap, HashSet};
use tanren_core::{CnnSpec, ConvBlock, Head, ModelSpec, Normalize, ResnetSpec};
use tanren_onnx::proto::{self, data_type};
use tanren_onnx::safetensors::{self, Tensor};
use tanren_onnx::{
    expected_tensors, export_fp32, export_int8_qdq, infer_fp32, ort, ExportOptions, OnnxError,
};

/// xorshift64*: uniform floats in [lo, hi), deterministic per seed.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

/// Weights shaped like tch's init (uniform ±1/√fan_in) with batch-norm statistics far from identity,
/// so folding is really exercised.
fn random_weights(spec: &ModelSpec, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut map = BTreeMap::new();
    for (name, shape) in expected_tensors(spec).unwrap() {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let bound = (3.0 / fan_in as f32).sqrt();
        let (lo, hi) = match name.rsplit('.').next().unwrap() {
            "running_var" => (0.3, 2.0),
            "running_mean" | "bias" if shape.len() == 1 => (-0.3, 0.3),
            "weight" if shape.len() == 1 => (0.5, 1.5), // batch-norm gamma
            _ => (-bound, bound),
        };
        let data = (0..n).map(|_| rng.uniform(lo, hi)).collect();
        map.insert(name, Tensor { shape, data });
    }
    safetensors::write(&map)
}

fn images(spec: &ModelSpec, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let per = (spec.in_channels() * spec.image_size() * spec.image_size()) as usize;
    (0..n * per).map(|_| rng.uniform(-2.0, 2.0)).collect()
}

fn shape(spec: &ModelSpec, n: usize) -> [usize; 4] {
    let s = spec.image_size() as usize;
    [n, spec.in_channels() as usize, s, s]
}

fn cnn(in_channels: u32, image_size: u32, blocks: &[(u32, u32)], batch_norm: bool, head: Head) -> ModelSpec {
    ModelSpec::Cnn(CnnSpec {
        in_channels,
        num_classes: 5,
        image_size,
        blocks: blocks
            .iter()
            .map(|&(out_channels, kernel)| ConvBlock { out_channels, kernel })
            .collect(),
        batch_norm,
        dropout: 0.3,
        head,
    })
}

fn resnet(in_channels: u32, image_size: u32, depth: u32, width: u32) -> ModelSpec {
    ModelSpec::Resnet(ResnetSpec {
        in_channels,
        num_classes: 7,
        image_size,
        depth,
        width,
    })
}

/// One of each shape the trainer builds: the seed CNN, BN/GAP CNNs with every kernel and odd sizes
/// (max-pool floors), 8 blocks, ResNet 8/14/20 at several widths and odd sizes (stride-2 ceil).
fn families() -> Vec<(&'static str, ModelSpec)> {
    vec![
        ("seed cnn", ModelSpec::seed_cnn(2, 16)),
        (
            "cnn bn gap k1357 odd",
            cnn(
                3,
                30,
                &[(6, 1), (8, 3), (5, 5), (9, 7)],
                true,
                Head::GlobalAvgPool,
            ),
        ),
        (
            "cnn flatten k5 no-bn 1ch",
            cnn(1, 28, &[(8, 5), (12, 3)], false, Head::Flatten),
        ),
        (
            "cnn bn flatten 1ch",
            cnn(1, 21, &[(4, 3), (6, 3)], true, Head::Flatten),
        ),
        (
            "cnn 8 blocks",
            cnn(
                3,
                256,
                &[(4, 3), (4, 3), (6, 3), (6, 1), (8, 5), (8, 3), (8, 3), (8, 7)],
                true,
                Head::GlobalAvgPool,
            ),
        ),
        ("resnet-8 w8 1ch", resnet(1, 20, 8, 8)),
        ("resnet-14 w4 odd", resnet(3, 17, 14, 4)),
        ("resnet-20 w16", resnet(3, 32, 20, 16)),
    ]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap()
}

fn opts() -> ExportOptions {
    ExportOptions {
        classes: (0..7).map(|i| format!("class{i}")).collect(),
        normalize: Some(Normalize { mean: 0.5, std: 0.25 }),
        uint8_input: None,
    }
}

/// Parses the model back and checks what every consumer relies on: versions, the input/output contract,
/// only the promised ops, every node input defined before use, unique names, the metadata.
fn check_structure(bytes: &[u8], spec: &ModelSpec, int8: bool) -> proto::ModelProto {
    let m = proto::ModelProto::decode(bytes).expect("a ModelProto");
    assert_eq!(m.ir_version, tanren_onnx::IR_VERSION);
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(
        (m.opset_import[0].domain.as_str(), m.opset_import[0].version),
        ("", tanren_onnx::OPSET)
    );
    let g = m.graph.as_ref().expect("a graph");
    let dims = |v: &proto::ValueInfoProto| -> (i32, Vec<String>) {
        use proto::tensor_shape_proto::dimension::Value;
        let Some(proto::type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
            panic!("not a tensor type")
        };
        let d = t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                Value::DimValue(v) => v.to_string(),
                Value::DimParam(p) => p.clone(),
            });
        (t.elem_type, d.collect())
    };
    let (c, s) = (spec.in_channels().to_string(), spec.image_size().to_string());
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name, "input");
    assert_eq!(
        dims(&g.input[0]),
        (data_type::FLOAT, vec!["batch".into(), c, s.clone(), s])
    );
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, "logits");
    assert_eq!(
        dims(&g.output[0]),
        (
            data_type::FLOAT,
            vec!["batch".into(), spec.num_classes().to_string()]
        )
    );

    let mut allowed = vec![
        "Conv",
        "Relu",
        "MaxPool",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "Add",
    ];
    if int8 {
        allowed.extend(["QuantizeLinear", "DequantizeLinear"]);
    }
    let mut defined: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(defined.len(), g.initializer.len(), "initializer names are unique");
    defined.insert("input");
    for n in &g.node {
        assert!(
            allowed.contains(&n.op_type.as_str()),
            "unexpected op {}",
            n.op_type
        );
        for i in &n.input {
            assert!(
                defined.contains(i.as_str()),
                "{} reads {i} before it is defined",
                n.name
            );
        }
        for o in &n.output {
            assert!(defined.insert(o), "{o} is defined twice");
        }
    }
    assert!(defined.contains("logits"));
    let convs = g.node.iter().filter(|n| n.op_type == "Conv").count();
    let expected_convs = expected_tensors(spec)
        .unwrap()
        .iter()
        .filter(|(_, shape)| shape.len() == 4)
        .count();
    assert_eq!(
        convs, expected_convs,
        "one Conv per conv layer, batch norm folded"
    );
    assert!(!g.node.iter().any(|n| n.op_type == "BatchNormalization"));

    let meta: BTreeMap<_, _> = m
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta["format"], "tanren-model/1");
    let arch: ModelSpec = serde_json::from_str(meta["architecture"]).unwrap();
    assert_eq!(&arch, spec);
    let classes: Vec<String> = serde_json::from_str(meta["classes"]).unwrap();
    assert_eq!(classes[0], "class0");
    let input: serde_json::Value = serde_json::from_str(meta["input"]).unwrap();
    assert_eq!(input["normalize"]["std"], 0.25);
    assert_eq!(meta.contains_key("quantization"), int8);
    m
}

#[test]
fn fp32_export_matches_the_interpreter_in_onnxruntime() {
    for (i, (label, spec)) in families().into_iter().enumerate() {
        let weights = random_weights(&spec, i as u64 + 1);
        let bytes = export_fp32(&spec, &weights, &opts()).unwrap();
        check_structure(&bytes, &spec, false);
        let n = if spec.image_size() > 64 { 2 } else { 5 };
        let x = images(&spec, n, 100 + i as u64);
        let ours = infer_fp32(&spec, &weights, &x).unwrap();
        let (dims, theirs) = ort::run(&bytes, ort::Input::F32(&x), shape(&spec, n)).unwrap();
        assert_eq!(dims, vec![n, spec.num_classes() as usize]);
        let diff = max_abs_diff(&ours, &theirs);
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!("{label}: max |interpreter - onnxruntime| = {diff:.2e} (logits up to {scale:.2})");
        assert!(
            scale > 0.05,
            "{label}: logits are all ~0, the comparison would prove nothing"
        );
        assert!(
            diff <= 1e-4,
            "{label}: interpreter and onnxruntime differ by {diff}"
        );
    }
}

/// The uint8 variant normalises in the graph exactly as the trainer does, so feeding pixels gives the
/// float model's logits on the normalised pixels.
#[test]
fn uint8_input_variant_normalises_inside_the_graph() {
    let spec = resnet(3, 16, 8, 8);
    let weights = random_weights(&spec, 9);
    let norm = Normalize {
        mean: 0.45,
        std: 0.27,
    };
    let n = 4;
    let mut rng = Rng(77);
    let pixels: Vec<u8> = (0..n * 3 * 16 * 16)
        .map(|_| rng.uniform(0.0, 256.0) as u8)
        .collect();
    let scale = (1.0 / (255.0 * norm.std)) as f32;
    let offset = (norm.mean / norm.std) as f32;
    let x: Vec<f32> = pixels.iter().map(|&p| p as f32 * scale - offset).collect();
    let o = ExportOptions {
        uint8_input: Some(norm),
        ..opts()
    };
    let bytes = export_fp32(&spec, &weights, &o).unwrap();
    let m = proto::ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.unwrap();
    let Some(proto::type_proto::Value::TensorType(t)) = &g.input[0].r#type.as_ref().unwrap().value else {
        panic!("input is not a tensor")
    };
    assert_eq!(t.elem_type, data_type::UINT8);
    let (_, theirs) = ort::run(&bytes, ort::Input::U8(&pixels), shape(&spec, n)).unwrap();
    let ours = infer_fp32(&spec, &weights, &x).unwrap();
    let diff = max_abs_diff(&ours, &theirs);
    println!("uint8 input: max diff {diff:.2e}");
    assert!(diff <= 1e-4, "uint8-input model differs by {diff}");

    // The INT8 model takes the same uint8 input (its first QDQ sits after the in-graph normalisation).
    let int8 = export_int8_qdq(&spec, &weights, &x, &o).unwrap();
    let (_, q) = ort::run(&int8, ort::Input::U8(&pixels), shape(&spec, n)).unwrap();
    let diff = max_abs_diff(&ours, &q);
    let spread = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        diff < 0.25 * spread,
        "uint8-input int8 model is far from fp32 ({diff} vs {spread})"
    );
}

/// Smooth random images (a few random blobs), so the nets see inputs with structure rather than
/// white noise, as calibration images would have.
fn blob_images(spec: &ModelSpec, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let (c, s) = (spec.in_channels() as usize, spec.image_size() as usize);
    let mut out = Vec::with_capacity(n * c * s * s);
    for _ in 0..n {
        let blobs: Vec<[f32; 5]> = (0..3)
            .map(|_| {
                [
                    rng.uniform(0.0, s as f32),
                    rng.uniform(0.0, s as f32),
                    rng.uniform(2.0, s as f32 / 2.0),
                    rng.uniform(-2.0, 2.0),
                    rng.uniform(-1.0, 1.0),
                ]
            })
            .collect();
        for ch in 0..c {
            for y in 0..s {
                for x in 0..s {
                    let v: f32 = blobs
                        .iter()
                        .map(|&[bx, by, r, a, tint]| {
                            let d2 = (x as f32 - bx).powi(2) + (y as f32 - by).powi(2);
                            (a + tint * ch as f32) * (-d2 / (r * r)).exp()
                        })
                        .sum();
                    out.push(v + rng.uniform(-0.1, 0.1));
                }
            }
        }
    }
    out
}

#[test]
fn int8_qdq_runs_in_onnxruntime_and_agrees_with_fp32_on_top1() {
    for (i, (label, spec)) in [
        (
            "cnn bn gap",
            cnn(3, 32, &[(16, 3), (32, 3), (32, 3)], true, Head::GlobalAvgPool),
        ),
        ("seed cnn", ModelSpec::seed_cnn(2, 28)),
        ("resnet-8", resnet(3, 32, 8, 16)),
        ("resnet-14 1ch", resnet(1, 28, 14, 8)),
    ]
    .into_iter()
    .enumerate()
    {
        let weights = random_weights(&spec, 40 + i as u64);
        let calib = blob_images(&spec, 200, 500 + i as u64);
        let t = std::time::Instant::now();
        let bytes = export_int8_qdq(&spec, &weights, &calib, &opts()).unwrap();
        let calib_secs = t.elapsed().as_secs_f64();
        let m = check_structure(&bytes, &spec, true);
        let g = m.graph.unwrap();
        let int8_weights = g
            .initializer
            .iter()
            .filter(|t| t.data_type == data_type::INT8 && t.dims.len() >= 2)
            .count();
        let layers = g
            .node
            .iter()
            .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
            .count();
        assert_eq!(
            int8_weights, layers,
            "{label}: every Conv/Gemm weight is stored as int8"
        );
        for n in g
            .node
            .iter()
            .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
        {
            let producer = g.node.iter().find(|p| p.output[0] == n.input[0]).unwrap();
            assert_eq!(
                producer.op_type, "DequantizeLinear",
                "{label}: {} reads a dequantised input",
                n.name
            );
        }
        for n in g.node.iter().filter(|n| n.op_type == "Add") {
            let producer = g.node.iter().find(|p| p.output[0] == n.input[1]).unwrap();
            assert_eq!(
                producer.op_type, "DequantizeLinear",
                "{label}: {} shortcut is quantised",
                n.name
            );
        }

        let n = 200;
        let x = blob_images(&spec, n, 900 + i as u64);
        let fp32 = infer_fp32(&spec, &weights, &x).unwrap();
        let (_, int8) = ort::run(&bytes, ort::Input::F32(&x), shape(&spec, n)).unwrap();
        let k = spec.num_classes() as usize;
        let agree = fp32
            .chunks(k)
            .zip(int8.chunks(k))
            .filter(|(a, b)| argmax(a) == argmax(b))
            .count();
        let spread = fp32.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&fp32, &int8);
        println!(
            "{label}: int8 top-1 agrees with fp32 on {agree}/{n}; max |diff| {diff:.3} (logits up to {spread:.2}); \
             calibration + export {calib_secs:.2}s"
        );
        // Random weights leave small margins between classes; trained models agree more (see
        // tanren-trainer's onnx test). A broken quantisation (wrong axis, scale) lands near chance.
        assert!(
            agree * 100 >= n * 85,
            "{label}: int8 agrees with fp32 on only {agree}/{n}"
        );
        assert!(
            diff < 0.25 * spread,
            "{label}: int8 logits are far from fp32 ({diff} vs {spread})"
        );
    }
}

#[test]
fn refusals_name_what_is_wrong() {
    let spec = resnet(3, 16, 8, 8);
    let good = random_weights(&spec, 3);
    let tensors = safetensors::parse(&good).unwrap();
    let o = opts();

    let mut missing = tensors.clone();
    missing.remove("stages.1.0.short.bn.running_var");
    let e = export_fp32(&spec, &safetensors::write(&missing), &o).unwrap_err();
    assert!(
        matches!(&e, OnnxError::MissingTensor { name } if name == "stages.1.0.short.bn.running_var"),
        "{e}"
    );

    let mut wrong = tensors.clone();
    wrong.get_mut("fc.weight").unwrap().shape = vec![32, 7]; // same count, transposed
    let e = export_fp32(&spec, &safetensors::write(&wrong), &o).unwrap_err();
    assert!(
        e.to_string().contains("fc.weight") && e.to_string().contains("[7, 32]"),
        "{e}"
    );

    // Weights of a deeper net: every tensor the spec needs is there, and more.
    let deeper = random_weights(&resnet(3, 16, 14, 8), 3);
    let e = export_fp32(&spec, &deeper, &o).unwrap_err();
    assert!(matches!(e, OnnxError::UnexpectedTensor { .. }), "{e}");

    let bad_spec = resnet(3, 16, 10, 8);
    let e = export_fp32(&bad_spec, &good, &o).unwrap_err();
    assert!(matches!(e, OnnxError::InvalidSpec(_)), "{e}");

    // An F16 tensor: rewrite one dtype in the header in place.
    let mut f16 = good.clone();
    let at = f16.windows(5).position(|w| w == b"\"F32\"").unwrap();
    f16[at + 1..at + 4].copy_from_slice(b"F16");
    let e = export_fp32(&spec, &f16, &o).unwrap_err();
    assert!(
        matches!(e, OnnxError::WrongDtype { ref dtype, .. } if dtype == "F16"),
        "{e}"
    );

    let e = export_fp32(&spec, &good[..good.len() - 4], &o).unwrap_err();
    assert!(matches!(e, OnnxError::Safetensors(_)), "{e}");
    assert!(matches!(
        export_fp32(&spec, b"nonsense", &o),
        Err(OnnxError::Safetensors(_))
    ));

    let per = 3 * 16 * 16;
    let e = export_int8_qdq(&spec, &good, &vec![0.0; per + 1], &o).unwrap_err();
    assert!(matches!(e, OnnxError::BadInput(_)), "{e}");
    let e = export_int8_qdq(&spec, &good, &[], &o).unwrap_err();
    assert!(matches!(e, OnnxError::BadInput(_)), "{e}");
    let mut nan = vec![0.0; per];
    nan[5] = f32::NAN;
    assert!(matches!(
        infer_fp32(&spec, &good, &nan),
        Err(OnnxError::BadInput(_))
    ));

    // And the untouched weights still export: the refusals above were about the edits.
    export_fp32(&spec, &good, &o).unwrap();
}
