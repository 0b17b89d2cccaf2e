//! Shared by the trainer's integration tests: a small learnable synthetic dataset built straight into
//! `DeviceData` (no files, no decode) and a config around any model spec.
#![allow(dead_code)]

use tanren_core::{seed_params, train_config, ModelSpec, TrainConfig};
use tanren_trainer::DeviceData;
use tch::{Device, Kind, Tensor};

pub const SIZE: u32 = 16;

/// Two classes: class 0 is bright on the left half, class 1 on the right, both under uniform noise.
/// The noise comes from a private generator so building data does not move libtorch's global one.
fn split(n: i64, seed: u64) -> (Tensor, Tensor) {
    let s = SIZE as i64;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut pixels = Vec::with_capacity((n * 3 * s * s) as usize);
    let mut labels = Vec::with_capacity(n as usize);
    for i in 0..n {
        let label = i % 2;
        labels.push(label);
        for _c in 0..3 {
            for _y in 0..s {
                for x in 0..s {
                    let bright = (x < s / 2) == (label == 0);
                    let base = if bright { 170 } else { 60 };
                    pixels.push((base + (next() % 60) as i64 - 30) as u8);
                }
            }
        }
    }
    (
        Tensor::from_slice(&pixels).view([n, 3, s, s]),
        Tensor::from_slice(&labels),
    )
}

pub fn synthetic() -> DeviceData {
    let (train_x, train_y) = split(240, 1);
    let (val_x, val_y) = split(60, 2);
    let (test_x, test_y) = split(60, 3);
    assert_eq!(train_x.kind(), Kind::Uint8);
    DeviceData {
        train_x,
        train_y,
        val_x,
        val_y,
        test_x,
        test_y,
        cache_hit: false,
        streamed: false,
    }
}

/// The seed's procedure (Adam 1e-3, batch 10 here 20) around `model` at `SIZE` px.
pub fn config(model: ModelSpec, epochs: u32) -> TrainConfig {
    let mut cfg = train_config(&seed_params(), 2, 7).expect("seed params");
    cfg.model = model;
    cfg.image_size = SIZE;
    cfg.batch_size = 20;
    cfg.epochs = epochs;
    cfg
}

pub const CPU: Device = Device::Cpu;
