//! Test helpers: real images encoded with the image crate, real zips written with the zip crate, and
//! byte-level patches for the hostile cases no honest zip writer produces (lying sizes, encryption
//! flags, odd compression methods, absurd PNG headers).
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use image::{ImageFormat, Rgb, RgbImage};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A small image whose pixels depend on `seed`, so different files really differ after resizing.
pub fn image(seed: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = seed.wrapping_mul(2654435761) ^ x.wrapping_mul(40503) ^ y.wrapping_mul(9973);
        Rgb([
            (v ^ (v >> 7)) as u8,
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
        ])
    })
}

pub fn encode(img: &image::DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

pub fn png(seed: u32) -> Vec<u8> {
    encode(&image(seed, 12, 9).into(), ImageFormat::Png)
}

/// One of each supported format, chosen by `seed`.
pub fn any_format(seed: u32) -> (Vec<u8>, &'static str) {
    let img: image::DynamicImage = image(seed, 10 + seed % 7, 8 + seed % 5).into();
    match seed % 5 {
        0 => (encode(&img, ImageFormat::Png), "png"),
        1 => (encode(&img, ImageFormat::Jpeg), "JPG"),
        2 => (encode(&img, ImageFormat::Bmp), "bmp"),
        3 => (encode(&img, ImageFormat::Gif), "gif"),
        _ => (encode(&img, ImageFormat::WebP), "webp"),
    }
}

/// A zip written entry by entry.
pub struct Zip {
    w: ZipWriter<Cursor<Vec<u8>>>,
}

impl Zip {
    pub fn new() -> Self {
        Zip {
            w: ZipWriter::new(Cursor::new(Vec::new())),
        }
    }

    pub fn file(mut self, name: &str, bytes: &[u8]) -> Self {
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        self.w.start_file(name, opts).expect("start");
        self.w.write_all(bytes).expect("write");
        self
    }

    pub fn dir(mut self, name: &str) -> Self {
        self.w
            .add_directory(name, SimpleFileOptions::default())
            .expect("dir");
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.w
            .add_symlink(name, target, SimpleFileOptions::default())
            .expect("symlink");
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.w.finish().expect("finish").into_inner()
    }
}

/// `n` PNGs per class under `prefix` (e.g. "train/" or "pets/"), classes named as given.
pub fn with_classes(mut zip: Zip, prefix: &str, classes: &[(&str, u32)], seed: u32) -> Zip {
    for (ci, (class, n)) in classes.iter().enumerate() {
        for i in 0..*n {
            let s = seed + ci as u32 * 1000 + i;
            let (bytes, ext) = any_format(s);
            zip = zip.file(&format!("{prefix}{class}/img_{i:03}.{ext}"), &bytes);
        }
    }
    zip
}

/// Rewrite header fields of entry `index` in both its local and central headers. The closures get
/// the header bytes starting at the signature (fields at the offsets of APPNOTE 4.3.7 / 4.3.12).
pub fn patch(
    mut zip: Vec<u8>,
    index: usize,
    local: impl Fn(&mut [u8]),
    central: impl Fn(&mut [u8]),
) -> Vec<u8> {
    let eocd = zip.len() - 22; // written without a comment
    assert_eq!(&zip[eocd..eocd + 4], b"PK\x05\x06");
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let mut at = u32_at(&zip, eocd + 16);
    for _ in 0..index {
        at += 46 + u16_at(&zip, at + 28) + u16_at(&zip, at + 30) + u16_at(&zip, at + 32);
    }
    assert_eq!(&zip[at..at + 4], b"PK\x01\x02");
    let local_at = u32_at(&zip, at + 42);
    central(&mut zip[at..at + 46]);
    assert_eq!(&zip[local_at..local_at + 4], b"PK\x03\x04");
    local(&mut zip[local_at..local_at + 30]);
    zip
}

pub fn set_u16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn set_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// A PNG whose IHDR claims `w`×`h` followed by a tiny junk IDAT: its header is readable but decoding
/// it would fail, so a refusal for its size proves the header was checked before any decode.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    for (kind, data) in [
        (&b"IHDR"[..], &ihdr[..]),
        (b"IDAT", b"\x78\x9c\x00junk"),
        (b"IEND", b""),
    ] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    out
}

/// A 24-bit BMP whose header claims `w`×`h`, followed by a few bytes of pixels.
pub fn bmp_header_only(w: i32, h: i32) -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&70u32.to_le_bytes()); // file size (a claim, like the rest)
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
    out.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]); // no compression, sizes/resolution/palette counts zero
    out.extend_from_slice(&[0; 16]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every name under `dir`, recursively, sorted: "unchanged" means equal listings.
pub fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Write `zip` to a temp dir of its own and return (that dir, the zip's path).
pub fn write_zip(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("upload.zip");
    std::fs::write(&path, bytes).expect("write zip");
    (dir, path)
}
