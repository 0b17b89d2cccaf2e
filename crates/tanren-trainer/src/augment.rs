//! Data augmentation as batched tensor ops on the device: one gather per batch does random crop with
//! zero padding and horizontal flip for every image at once, on uint8 (a quarter of float's bytes).
//!
//! Randomness comes from libtorch's generator on the batch's device, so `tch::manual_seed(trial seed)`
//! at the start of training fixes it together with init, shuffling and dropout.

use tch::{Kind, Tensor};

/// What to apply; both off is the identity (and costs nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Augment {
    /// Pad each side by this many pixels, then crop back to the original size at a random offset.
    pub crop_padding: u32,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augment {
    pub fn is_identity(&self) -> bool {
        self.crop_padding == 0 && !self.horizontal_flip
    }

    /// `x` is a (N, C, H, W) batch; the result has the same shape, kind and device.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        if self.is_identity() {
            return x.shallow_clone();
        }
        let (n, c, h, w) = match x.size()[..] {
            [n, c, h, w] => (n, c, h, w),
            ref s => panic!("augment expects an NCHW batch, got shape {s:?}"),
        };
        let dev = x.device();
        let p = self.crop_padding as i64;
        let padded = if p > 0 {
            x.constant_pad_nd([p, p, p, p])
        } else {
            x.shallow_clone()
        };
        let opts = (Kind::Int64, dev);
        // Offsets in [0, 2p] per image; with p = 0 they are all 0 (randint's high is exclusive).
        let dy = Tensor::randint(2 * p + 1, [n, 1], opts);
        let dx = Tensor::randint(2 * p + 1, [n, 1], opts);
        let rows = dy + Tensor::arange(h, opts).view([1, h]);
        let ar = Tensor::arange(w, opts).view([1, w]);
        let cols = if self.horizontal_flip {
            let flip = Tensor::randint(2, [n, 1], opts).to_kind(Kind::Bool);
            // A flipped image reads its columns right to left inside the same crop window.
            (&dx + (w - 1) - &ar).where_self(&flip, &(&dx + &ar))
        } else {
            dx + ar
        };
        // All four dims indexed (broadcast to N×C×H×W): a `None` between advanced indices would move
        // the indexed dims to the front.
        let batch = Tensor::arange(n, opts).view([n, 1, 1, 1]);
        let chan = Tensor::arange(c, opts).view([1, c, 1, 1]);
        padded.index(&[
            Some(batch),
            Some(chan),
            Some(rows.view([n, 1, h, 1])),
            Some(cols.view([n, 1, 1, w])),
        ])
    }
}
