//! Decode cache: every image of a split decoded and resized once per (dataset sha256, split, size,
//! channels) into one packed uint8 file, reused by every later trial on this machine.
//!
//! File format (all integers little endian), `HEADER_LEN` = 64 bytes of header, so the trainer may
//! also memory-map the pixels at a fixed offset:
//!
//! | offset | bytes | field                                      |
//! |--------|-------|--------------------------------------------|
//! | 0      | 8     | magic `TANRENPK`                           |
//! | 8      | 4     | format version (`VERSION`)                 |
//! | 12     | 4     | channels C (1 or 3)                        |
//! | 16     | 4     | size S (images are S×S)                    |
//! | 20     | 4     | split (0 train, 1 test)                    |
//! | 24     | 8     | N, number of images                        |
//! | 32     | 32    | dataset sha256 (raw bytes)                 |
//! | 64     | N·C·S·S | pixels, N×C×H×W row-major (CHW per image) |
//! | …      | 8·N   | labels, i64                                |
//!
//! `VERSION` changes whenever the pixels would (decoder, resize filter, colour conversion), so an old
//! file is rebuilt rather than silently mixed with new ones.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType as FirFilter, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::error::{ParameterError, ParameterErrorKind};
use image::{DynamicImage, GrayImage, ImageError, ImageReader};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{IngestError, Manifest};

pub const MAGIC: [u8; 8] = *b"TANRENPK";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
/// Largest image side the cache builds; far beyond what a small CNN trains on.
pub const MAX_SIZE: u32 = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// A whole split in memory.
#[derive(Clone)]
pub struct Packed {
    pub n: usize,
    pub channels: u32,
    pub size: u32,
    /// N×C×H×W row-major, CHW per image.
    pub pixels: Vec<u8>,
    pub labels: Vec<i64>,
}

/// Shape only: printing megabytes of pixels helps nobody.
impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("n", &self.n)
            .field("channels", &self.channels)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Built { decoded: usize },
}

/// Where the packed file for this key lives.
pub fn cache_path(cache_dir: &Path, sha256: &str, split: Split, size: u32, channels: u32) -> PathBuf {
    cache_dir.join(format!("{sha256}-{}-{size}px-{channels}c.tpk", split.name()))
}

/// Load the packed file for (manifest.sha256, split, size, channels) from `cache_dir`, or build it by
/// decoding every sample of the split in parallel and writing it atomically (temp file + rename), so
/// concurrent builders and crashes never expose a partial file.
pub fn load_or_build(
    dataset_dir: &Path,
    manifest: &Manifest,
    split: Split,
    size: u32,
    channels: u32,
    cache_dir: &Path,
) -> Result<(Packed, CacheStatus), IngestError> {
    check_params(size, channels)?;
    let sha = hex::decode(&manifest.sha256)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            IngestError::BadParameter(format!(
                "manifest sha256 {:?} is not 64 hex digits",
                manifest.sha256
            ))
        })?;
    let samples = manifest.samples(split);
    let labels: Vec<i64> = samples.iter().map(|s| s.label as i64).collect();
    let header = Header {
        channels,
        size,
        split,
        n: samples.len() as u64,
        sha,
    };
    let path = cache_path(cache_dir, &manifest.sha256, split, size, channels);

    // Anything unexpected about an existing file (old version, truncated, other labels) means rebuild.
    if let Ok(Some(packed)) = read_packed(&path, &header) {
        if packed.labels == labels {
            return Ok((packed, CacheStatus::Hit));
        }
    }

    let per = (channels * size * size) as usize;
    let mut pixels = vec![0u8; per * samples.len()];
    pixels
        .par_chunks_mut(per.max(1))
        .zip(samples.par_iter())
        .try_for_each(|(out, sample)| {
            let fail = |reason: String| IngestError::Decode {
                path: sample.path.clone(),
                reason,
            };
            let bytes = fs::read(dataset_dir.join(&sample.path)).map_err(|e| fail(e.to_string()))?;
            let chw = decode_resize(&bytes, size, channels).map_err(|e| fail(e.to_string()))?;
            out.copy_from_slice(&chw);
            Ok::<(), IngestError>(())
        })?;
    let packed = Packed {
        n: samples.len(),
        channels,
        size,
        pixels,
        labels,
    };
    write_packed(cache_dir, &path, &header, &packed)?;
    Ok((
        packed,
        CacheStatus::Built {
            decoded: samples.len(),
        },
    ))
}

/// Decode one image file and resize it exactly as the cache does: like torchvision's
/// `ImageFolder` + `Resize((size, size))` — convert first (RGB: grayscale replicated, alpha dropped;
/// luma: PIL's ITU-R 601 weights), then Pillow's bilinear convolution (antialiased: the filter widens
/// when downscaling), ignoring aspect ratio. EXIF orientation is ignored, as PIL's loader does.
/// Returns C×H×W bytes.
pub fn decode_resize(bytes: &[u8], size: u32, channels: u32) -> Result<Vec<u8>, ImageError> {
    if size == 0 || size > MAX_SIZE || !(channels == 1 || channels == 3) {
        return Err(param_error(format!(
            "size must be 1..={MAX_SIZE} and channels 1 or 3, got size {size}, channels {channels}"
        )));
    }
    let img = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()?
        .decode()?;
    let hw = (size * size) as usize;
    // Grey sources are resized as one plane and replicated: identical bytes, a third of the work.
    if channels == 1 || !img.color().has_color() {
        let luma = to_luma_pil(&img);
        let plane = resize_u8(luma.width(), luma.height(), luma.into_raw(), PixelType::U8, size)?;
        return Ok(if channels == 1 { plane } else { plane.repeat(3) });
    }
    let rgb = img.to_rgb8();
    let hwc = resize_u8(rgb.width(), rgb.height(), rgb.into_raw(), PixelType::U8x3, size)?;
    let mut chw = vec![0u8; 3 * hw];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        chw[i] = px[0];
        chw[hw + i] = px[1];
        chw[2 * hw + i] = px[2];
    }
    Ok(chw)
}

fn resize_u8(w: u32, h: u32, buf: Vec<u8>, pixel: PixelType, size: u32) -> Result<Vec<u8>, ImageError> {
    if (w, h) == (size, size) {
        return Ok(buf);
    }
    let src = FirImage::from_vec_u8(w, h, buf, pixel).map_err(|e| param_error(e.to_string()))?;
    let mut dst = FirImage::new(size, size, pixel);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FirFilter::Bilinear));
    Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(|e| param_error(e.to_string()))?;
    Ok(dst.into_vec())
}

fn param_error(msg: String) -> ImageError {
    ImageError::Parameter(ParameterError::from_kind(ParameterErrorKind::Generic(msg)))
}

/// PIL's `convert("L")`: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16. The image crate's own luma
/// uses Rec. 709 weights, which would give a different tensor than the PyTorch reference.
fn to_luma_pil(img: &DynamicImage) -> GrayImage {
    if !img.color().has_color() {
        return img.to_luma8();
    }
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let luma = rgb
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16) as u8
        })
        .collect();
    GrayImage::from_raw(w, h, luma).expect("one byte per pixel")
}

fn check_params(size: u32, channels: u32) -> Result<(), IngestError> {
    if size == 0 || size > MAX_SIZE {
        return Err(IngestError::BadParameter(format!(
            "image size must be 1..={MAX_SIZE}, got {size}"
        )));
    }
    if channels != 1 && channels != 3 {
        return Err(IngestError::BadParameter(format!(
            "channels must be 1 or 3, got {channels}"
        )));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
struct Header {
    channels: u32,
    size: u32,
    split: Split,
    n: u64,
    sha: [u8; 32],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.channels.to_le_bytes());
        h[16..20].copy_from_slice(&self.size.to_le_bytes());
        h[20..24].copy_from_slice(&(self.split as u32).to_le_bytes());
        h[24..32].copy_from_slice(&self.n.to_le_bytes());
        h[32..64].copy_from_slice(&self.sha);
        h
    }
}

/// `Ok(None)` when the file is absent or is not exactly the file `want` describes.
fn read_packed(path: &Path, want: &Header) -> std::io::Result<Option<Packed>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let per = u64::from(want.channels) * u64::from(want.size) * u64::from(want.size);
    let expected_len = HEADER_LEN as u64 + want.n * per + 8 * want.n;
    if file.metadata()?.len() != expected_len {
        return Ok(None);
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)?;
    if header != want.encode() {
        return Ok(None);
    }
    let n = want.n as usize;
    let mut pixels = vec![0u8; n * per as usize];
    r.read_exact(&mut pixels)?;
    let mut raw = vec![0u8; 8 * n];
    r.read_exact(&mut raw)?;
    let labels = raw
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    Ok(Some(Packed {
        n,
        channels: want.channels,
        size: want.size,
        pixels,
        labels,
    }))
}

fn write_packed(cache_dir: &Path, path: &Path, header: &Header, packed: &Packed) -> Result<(), IngestError> {
    fs::create_dir_all(cache_dir)?;
    let tmp = tempfile::Builder::new().prefix(".tpk-").tempfile_in(cache_dir)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        w.write_all(&header.encode())?;
        w.write_all(&packed.pixels)?;
        for l in &packed.labels {
            w.write_all(&l.to_le_bytes())?;
        }
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
