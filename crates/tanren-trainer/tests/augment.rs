//! Augmentation: shapes and kind are kept, a seed repeats it exactly, and every output image is a
//! zero-padded crop window (optionally mirrored) of its input — nothing else.

use std::sync::Mutex;
use tanren_trainer::Augment;
use tch::{Kind, Tensor};

/// libtorch's generator is process-wide; tests that re-seed it must not interleave.
static RNG: Mutex<()> = Mutex::new(());

fn batch() -> Tensor {
    Tensor::arange(6 * 3 * 8 * 8, (Kind::Int64, tch::Device::Cpu))
        .remainder(251)
        .to_kind(Kind::Uint8)
        .view([6, 3, 8, 8])
}

fn run(aug: Augment, seed: i64) -> Tensor {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    aug.apply(&batch())
}

#[test]
fn shape_kind_and_seed() {
    let aug = Augment {
        crop_padding: 2,
        horizontal_flip: true,
    };
    let a = run(aug, 11);
    assert_eq!(a.size(), vec![6, 3, 8, 8]);
    assert_eq!(a.kind(), Kind::Uint8);
    assert!(a.equal(&run(aug, 11)), "same seed, same augmentation");
    assert!(!a.equal(&run(aug, 12)), "another seed, another augmentation");
    let off = Augment::default();
    assert!(run(off, 1).equal(&batch()), "both off is the identity");
}

/// Every image must be one of the (2p+1)² windows of its padded self, mirrored or not.
#[test]
fn outputs_are_crops_and_flips() {
    let p = 2;
    let aug = Augment {
        crop_padding: p as u32,
        horizontal_flip: true,
    };
    let x = batch();
    let padded = x.constant_pad_nd([p, p, p, p]);
    let mut flipped_seen = false;
    for seed in 0..4 {
        let out = run(aug, seed);
        for i in 0..6 {
            let o = out.get(i);
            let mut found = false;
            for dy in 0..=2 * p {
                for dx in 0..=2 * p {
                    let w = padded.get(i).narrow(1, dy, 8).narrow(2, dx, 8);
                    if o.equal(&w) {
                        found = true;
                    } else if o.equal(&w.flip([2])) {
                        found = true;
                        flipped_seen = true;
                    }
                }
            }
            assert!(found, "seed {seed} image {i} is not a crop window");
        }
    }
    assert!(flipped_seen, "24 coin flips and never a mirror");
}
