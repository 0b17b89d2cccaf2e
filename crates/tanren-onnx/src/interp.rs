//! A small f32 reference interpreter for a lowered `Net`: convolutions as im2col + GEMM, one image per
//! rayon task. It exists for two reasons: INT8 calibration needs every activation's range over real
//! images without libtorch, and it is an independent check of the exported graph (tests compare it with
//! onnxruntime and libtorch).

use crate::net::{Conv, Linear, Net, Op};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// One image's activation, `[c, h, w]` row-major; flattened values are `[n, 1, 1]`.
#[derive(Debug, Clone)]
struct Act {
    c: usize,
    h: usize,
    w: usize,
    data: Vec<f32>,
}

/// The smallest and largest value a tensor took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

impl Range {
    const EMPTY: Range = Range {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
    };

    fn of(data: &[f32]) -> Range {
        data.iter().fold(Range::EMPTY, |r, &v| Range {
            min: r.min.min(v),
            max: r.max.max(v),
        })
    }

    fn merge(self, o: Range) -> Range {
        Range {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }

    pub fn max_abs(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }
}

/// Logits for a batch of `n` images (`images.len() == n * C * H * W`, checked by the caller), `n * classes`.
pub fn forward(net: &Net, images: &[f32]) -> Vec<f32> {
    let per = net.input.iter().product::<usize>();
    images
        .par_chunks(per)
        .flat_map_iter(|img| run(net, img, None))
        .collect()
}

/// The range of every value (index = value id, 0 the input) over all images.
pub fn ranges(net: &Net, images: &[f32]) -> Vec<Range> {
    let per = net.input.iter().product::<usize>();
    let slots = net.nodes.len() + 1;
    images
        .par_chunks(per)
        .map(|img| {
            let mut r = vec![Range::EMPTY; slots];
            run(net, img, Some(&mut r));
            r
        })
        .reduce(
            || vec![Range::EMPTY; slots],
            |a, b| a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect(),
        )
}

fn run(net: &Net, image: &[f32], mut record: Option<&mut [Range]>) -> Vec<f32> {
    let [c, h, w] = net.input;
    let mut values: Vec<Option<Act>> = vec![None; net.nodes.len() + 1];
    values[0] = Some(Act {
        c,
        h,
        w,
        data: image.to_vec(),
    });
    // The last reader of each value, so activations are dropped as soon as they are dead.
    let mut last_use = vec![0usize; values.len()];
    for (i, n) in net.nodes.iter().enumerate() {
        for &v in &n.inputs {
            last_use[v] = i;
        }
    }
    if let Some(r) = record.as_deref_mut() {
        r[0] = Range::of(image);
    }
    for (i, node) in net.nodes.iter().enumerate() {
        let x = values[node.inputs[0]]
            .as_ref()
            .expect("inputs come before their readers");
        let out = match &node.op {
            Op::Conv(k) => conv(x, k),
            Op::Relu => map(x, |v| v.max(0.0)),
            Op::MaxPool2 => max_pool2(x),
            Op::Add => {
                let y = values[node.inputs[1]]
                    .as_ref()
                    .expect("inputs come before their readers");
                let mut out = x.clone();
                out.data.iter_mut().zip(&y.data).for_each(|(a, b)| *a += b);
                out
            }
            Op::GlobalAvgPool => global_avg_pool(x),
            Op::Flatten => Act {
                c: x.data.len(),
                h: 1,
                w: 1,
                data: x.data.clone(),
            },
            Op::Gemm(l) => gemm(x, l),
        };
        if let Some(r) = record.as_deref_mut() {
            r[i + 1] = Range::of(&out.data);
        }
        for &v in &node.inputs {
            if last_use[v] == i {
                values[v] = None;
            }
        }
        values[i + 1] = Some(out);
    }
    values.pop().flatten().expect("the net has an output").data
}

fn map(x: &Act, f: impl Fn(f32) -> f32) -> Act {
    Act {
        data: x.data.iter().map(|&v| f(v)).collect(),
        ..*x
    }
}

/// Convolution as one GEMM: `out[cout, pixels] = w[cout, cin·k·k] · cols[cin·k·k, pixels] + b`, with
/// `cols` the im2col unfolding (skipped for a plain 1×1). ndarray's GEMM is matrixmultiply's blocked
/// kernel with runtime AVX/FMA detection: several times the speed of direct loops, so calibrating a
/// wide CNN at 128 px stays in seconds.
fn conv(x: &Act, k: &Conv) -> Act {
    let ho = (x.h + 2 * k.pad - k.k) / k.stride + 1;
    let wo = (x.w + 2 * k.pad - k.k) / k.stride + 1;
    let (rows, pixels) = (k.cin * k.k * k.k, ho * wo);
    let unfolded;
    let cols: &[f32] = if k.k == 1 && k.stride == 1 && k.pad == 0 {
        &x.data
    } else {
        unfolded = im2col(x, k, ho, wo);
        &unfolded
    };
    let mut out: Vec<f32> = k.b.iter().flat_map(|&b| std::iter::repeat_n(b, pixels)).collect();
    let w = ArrayView2::from_shape((k.cout, rows), &k.w).expect("weights are [cout, cin·k·k]");
    let cols = ArrayView2::from_shape((rows, pixels), cols).expect("cols are [cin·k·k, pixels]");
    let mut c = ArrayViewMut2::from_shape((k.cout, pixels), &mut out).expect("out is [cout, pixels]");
    general_mat_mul(1.0, &w, &cols, 1.0, &mut c);
    Act {
        c: k.cout,
        h: ho,
        w: wo,
        data: out,
    }
}

/// `cols[(ic·k + ky)·k + kx][oy·wo + ox] = x[ic][oy·s + ky − p][ox·s + kx − p]`, zero outside the image.
fn im2col(x: &Act, k: &Conv, ho: usize, wo: usize) -> Vec<f32> {
    let (s, p, kk) = (k.stride, k.pad, k.k);
    let mut cols = vec![0f32; k.cin * kk * kk * ho * wo];
    for (r, dst) in cols.chunks_exact_mut(ho * wo).enumerate() {
        let (ic, ky, kx) = (r / (kk * kk), r / kk % kk, r % kk);
        let input = &x.data[ic * x.h * x.w..(ic + 1) * x.h * x.w];
        // Output columns whose input column ox·s + kx − p lies inside the image.
        let ox_lo = p.saturating_sub(kx).div_ceil(s);
        let ox_hi = if x.w + p > kx {
            ((x.w + p - kx - 1) / s + 1).min(wo)
        } else {
            0
        };
        if ox_lo >= ox_hi {
            continue;
        }
        for oy in 0..ho {
            let iy = oy * s + ky;
            if iy < p || iy - p >= x.h {
                continue;
            }
            let row = &input[(iy - p) * x.w..(iy - p + 1) * x.w];
            let ix0 = ox_lo * s + kx - p;
            let dst = &mut dst[oy * wo + ox_lo..oy * wo + ox_hi];
            for (d, &v) in dst.iter_mut().zip(row[ix0..].iter().step_by(s)) {
                *d = v;
            }
        }
    }
    cols
}

fn max_pool2(x: &Act) -> Act {
    let (ho, wo) = (x.h / 2, x.w / 2);
    let mut data = Vec::with_capacity(x.c * ho * wo);
    for c in 0..x.c {
        let plane = &x.data[c * x.h * x.w..(c + 1) * x.h * x.w];
        for oy in 0..ho {
            let (r0, r1) = (&plane[2 * oy * x.w..], &plane[(2 * oy + 1) * x.w..]);
            for ox in 0..wo {
                let i = 2 * ox;
                data.push(r0[i].max(r0[i + 1]).max(r1[i]).max(r1[i + 1]));
            }
        }
    }
    Act {
        c: x.c,
        h: ho,
        w: wo,
        data,
    }
}

fn global_avg_pool(x: &Act) -> Act {
    let n = x.h * x.w;
    Act {
        c: x.c,
        h: 1,
        w: 1,
        data: x
            .data
            .chunks_exact(n)
            .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32)
            .collect(),
    }
}

fn gemm(x: &Act, l: &Linear) -> Act {
    let data =
        l.w.chunks_exact(l.inp)
            .zip(&l.b)
            .map(|(row, b)| b + row.iter().zip(&x.data).map(|(w, v)| w * v).sum::<f32>())
            .collect();
    Act {
        c: l.out,
        h: 1,
        w: 1,
        data,
    }
}
