//! The ONNX export (tanren-onnx, torch-free) reproduces libtorch: every model family is built here with
//! tch, its batch norms given non-trivial statistics, saved with `save_weights`, exported, run in
//! onnxruntime and compared with `forward_t(x, false)` (max abs diff ≤ 1e-4); a trained model's INT8 QDQ
//! export keeps libtorch's top-1 on held-out images. onnxruntime comes from the venv (scripts/setup.sh).

mod common;

use common::{config, synthetic, CPU, SIZE};
use tanren_core::{CnnSpec, ConvBlock, Head, ModelSpec, ResnetSpec};
use tanren_onnx::{export_fp32, export_int8_qdq, infer_fp32, ort, ExportOptions};
use tanren_trainer::{build, save_weights, train, EpochControl};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

fn cnn(in_channels: u32, image_size: u32, blocks: &[(u32, u32)], batch_norm: bool, head: Head) -> ModelSpec {
    ModelSpec::Cnn(CnnSpec {
        in_channels,
        num_classes: 6,
        image_size,
        blocks: blocks
            .iter()
            .map(|&(out_channels, kernel)| ConvBlock { out_channels, kernel })
            .collect(),
        batch_norm,
        dropout: 0.25,
        head,
    })
}

fn resnet(in_channels: u32, image_size: u32, depth: u32, width: u32) -> ModelSpec {
    ModelSpec::Resnet(ResnetSpec {
        in_channels,
        num_classes: 4,
        image_size,
        depth,
        width,
    })
}

/// Gives every batch norm the statistics and affine parameters of a trained net (a fresh one's are the
/// identity, which would let a wrong fold pass).
fn perturb_batch_norms(vs: &nn::VarStore) {
    tch::no_grad(|| {
        // Sorted, so the values drawn (from the seeded generator) do not depend on hash order.
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, mut t) in vars {
            let r = Tensor::rand(t.size(), (Kind::Float, t.device()));
            let v = if name.ends_with("running_var") {
                r * 1.5 + 0.3
            } else if name.ends_with("running_mean") || name.contains("bn") && name.ends_with("bias") {
                r * 0.6 - 0.3
            } else if name.contains("bn") && name.ends_with("weight") {
                r + 0.5
            } else {
                continue;
            };
            t.copy_(&v);
        }
    });
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn weights_bytes(vs: &nn::VarStore) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_weights(vs, &path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn onnx_export_matches_libtorch_for_every_family() {
    let families = [
        ("seed cnn", ModelSpec::seed_cnn(2, 16)),
        (
            "cnn bn gap k5371",
            cnn(
                3,
                30,
                &[(8, 5), (16, 3), (12, 7), (6, 1)],
                true,
                Head::GlobalAvgPool,
            ),
        ),
        (
            "cnn bn flatten 1ch",
            cnn(1, 28, &[(8, 3), (8, 5)], true, Head::Flatten),
        ),
        (
            "cnn gap k7 1ch",
            cnn(1, 19, &[(5, 7), (7, 3)], false, Head::GlobalAvgPool),
        ),
        ("resnet-8 w8", resnet(3, 16, 8, 8)),
        ("resnet-14 w6 1ch odd", resnet(1, 17, 14, 6)),
        ("resnet-20 w4", resnet(3, 24, 20, 4)),
    ];
    for (i, (label, spec)) in families.into_iter().enumerate() {
        tch::manual_seed(i as i64);
        let vs = nn::VarStore::new(CPU);
        let net = build(&vs.root(), &spec);
        perturb_batch_norms(&vs);
        let weights = weights_bytes(&vs);

        let (n, c, s) = (6i64, spec.in_channels() as i64, spec.image_size() as i64);
        let x = Tensor::randn([n, c, s, s], (Kind::Float, CPU));
        let torch = to_vec(&tch::no_grad(|| net.forward_t(&x, false)));
        let xs = to_vec(&x);

        let model = export_fp32(&spec, &weights, &ExportOptions::default()).unwrap();
        let shape = [n as usize, c as usize, s as usize, s as usize];
        let (dims, onnx) = ort::run(&model, ort::Input::F32(&xs), shape).unwrap();
        assert_eq!(dims, vec![n as usize, spec.num_classes() as usize]);
        let interp = infer_fp32(&spec, &weights, &xs).unwrap();

        let scale = torch.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (d_ort, d_interp) = (max_abs_diff(&torch, &onnx), max_abs_diff(&torch, &interp));
        println!("{label}: max |libtorch - onnxruntime| {d_ort:.2e}, |libtorch - interpreter| {d_interp:.2e} (logits up to {scale:.2})");
        assert!(
            scale > 0.05,
            "{label}: logits are all ~0, the comparison would prove nothing"
        );
        assert!(
            d_ort <= 1e-4,
            "{label}: onnxruntime differs from libtorch by {d_ort}"
        );
        assert!(
            d_interp <= 1e-4,
            "{label}: the interpreter differs from libtorch by {d_interp}"
        );
    }
}

/// Trained weights (not just random ones) through the whole INT8 path: calibrate on normalised training
/// images, run the QDQ model in onnxruntime on the test split, compare top-1 with libtorch.
#[test]
fn int8_export_of_a_trained_model_keeps_its_predictions() {
    let data = synthetic();
    for spec in [
        ModelSpec::Cnn(CnnSpec {
            in_channels: 3,
            num_classes: 2,
            image_size: SIZE,
            blocks: vec![
                ConvBlock {
                    out_channels: 8,
                    kernel: 5,
                },
                ConvBlock {
                    out_channels: 16,
                    kernel: 3,
                },
            ],
            batch_norm: true,
            dropout: 0.0,
            head: Head::GlobalAvgPool,
        }),
        resnet(3, SIZE, 8, 8),
    ] {
        let mut cfg = config(spec.clone(), 2);
        cfg.model = match spec {
            ModelSpec::Resnet(mut r) => {
                r.num_classes = 2;
                ModelSpec::Resnet(r)
            }
            s => s,
        };
        let t = train(&cfg, &data, CPU, |_| EpochControl::Continue).unwrap();
        let weights = weights_bytes(&t.vs);
        let norm = |x: &Tensor| tanren_trainer::data::normalize(x, cfg.normalize);
        let calib = to_vec(&norm(&data.train_x.narrow(0, 0, 200)));
        let model = export_int8_qdq(&cfg.model, &weights, &calib, &ExportOptions::default()).unwrap();

        let x = norm(&data.test_x);
        let n = x.size()[0] as usize;
        let torch = tch::no_grad(|| t.net.forward_t(&x, false)).argmax(1, false);
        let torch = Vec::<i64>::try_from(torch).unwrap();
        let (_, logits) = ort::run(
            &model,
            ort::Input::F32(&to_vec(&x)),
            [n, 3, SIZE as usize, SIZE as usize],
        )
        .unwrap();
        let agree = logits
            .chunks(2)
            .zip(&torch)
            .filter(|(l, &p)| (l[1] > l[0]) as i64 == p)
            .count();
        println!("{:?}: int8 top-1 agrees with libtorch on {agree}/{n}", cfg.model);
        assert!(
            agree * 100 >= n * 95,
            "int8 agrees with libtorch on only {agree}/{n}"
        );
    }
}
