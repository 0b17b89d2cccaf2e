//! A trial's seed fixes init, shuffling, augmentation and dropout: on the CPU two runs are bit-for-bit
//! equal. Its own test binary (one test), because libtorch's generator is process-wide.

mod common;

use common::{config, synthetic, CPU, SIZE};
use tanren_core::{CnnSpec, ConvBlock, Head, ModelSpec};
use tanren_trainer::{train, EpochControl, Trained};

fn run(seed: u64) -> Trained {
    let mut cfg = config(
        ModelSpec::Cnn(CnnSpec {
            in_channels: 3,
            num_classes: 2,
            image_size: SIZE,
            blocks: vec![ConvBlock {
                out_channels: 8,
                kernel: 3,
            }],
            batch_norm: true,
            dropout: 0.3,
            head: Head::Flatten,
        }),
        2,
    );
    cfg.seed = seed;
    cfg.crop_padding = 2;
    cfg.horizontal_flip = true;
    train(&cfg, &synthetic(), CPU, |_| EpochControl::Continue).unwrap()
}

fn weights(t: &Trained) -> Vec<(String, Vec<u32>)> {
    let mut v: Vec<_> =
        t.vs.variables()
            .into_iter()
            .map(|(name, w)| {
                let f = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
                (name, f.iter().map(|x| x.to_bits()).collect())
            })
            .collect();
    v.sort();
    v
}

#[test]
fn same_seed_repeats_bit_for_bit_on_cpu() {
    let (a, b, c) = (run(5), run(5), run(6));
    let losses = |t: &Trained| -> Vec<u64> {
        t.epochs
            .iter()
            .flat_map(|e| [e.train_loss.to_bits(), e.val_loss.to_bits()])
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c), "another seed must train another model");
}
