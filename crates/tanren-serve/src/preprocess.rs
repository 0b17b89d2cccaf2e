//! Images in, model input out — with the training pipeline's own code. `tanren_dataset::decode_resize`
//! is the function that built every training tensor (decode, colour conversion, antialiased bilinear
//! resize to size×size, CHW uint8); normalisation happens on the device in the trainer's
//! `data::normalize`, inside the batch. Nothing here re-implements either, so a served prediction
//! is the prediction the worker made on the same file.
//!
//! What is added is the refusal of hostile input before it costs memory: the header's dimensions are
//! read first and an image past the upload limits (`tanren_dataset::Limits::default()`: the same
//! pixel count and side length a training upload may have) is refused without decoding it.

use crate::error::ServeError;
use rayon::prelude::*;
use std::io::Cursor;

/// One uploaded file: the bytes and a label for messages (file name or position).
pub struct Upload {
    pub label: String,
    pub bytes: bytes::Bytes,
}

/// Decode and resize every upload in parallel (rayon), or say which one is bad and why.
pub fn decode_all(uploads: &[Upload], size: u32, channels: u32) -> Result<Vec<Vec<u8>>, ServeError> {
    if let [one] = uploads {
        // No pool hand-off for a single image.
        return decode_one(&one.bytes, size, channels)
            .map(|px| vec![px])
            .map_err(|reason| ServeError::BadImage {
                index_label: one.label.clone(),
                reason,
            });
    }
    uploads
        .par_iter()
        .map(|u| {
            decode_one(&u.bytes, size, channels).map_err(|reason| ServeError::BadImage {
                index_label: u.label.clone(),
                reason,
            })
        })
        .collect()
}

fn decode_one(bytes: &[u8], size: u32, channels: u32) -> Result<Vec<u8>, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let Some(format) = reader.format() else {
        return Err("not an image (PNG, JPEG, BMP, GIF or WebP expected)".into());
    };
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("unreadable {format:?} header: {e}"))?;
    let limits = tanren_dataset::Limits::default();
    if u64::from(w) * u64::from(h) > limits.max_image_pixels || w.max(h) > limits.max_dimension {
        return Err(format!(
            "the image is {w}x{h}; the server decodes at most {} megapixels and {} pixels a side",
            limits.max_image_pixels / 1_000_000,
            limits.max_dimension
        ));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err("truncated JPEG (no end-of-image marker)".into());
    }
    tanren_dataset::decode_resize(bytes, size, channels).map_err(|e| format!("cannot decode: {e}"))
}

/// A JPEG ends with the EOI marker (FF D9), possibly followed by padding. Decoders fill a truncated
/// file's missing rows with grey and report success; a prediction on half an image is not an answer.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    end >= 2 && bytes[end - 2..end] == [0xFF, 0xD9]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 10) as u8, (y * 10) as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 3) as u8, 90]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_exactly_as_the_training_cache_does() {
        let bytes = png(20, 12);
        let ours = decode_one(&bytes, 16, 3).unwrap();
        assert_eq!(ours, tanren_dataset::decode_resize(&bytes, 16, 3).unwrap());
    }

    #[test]
    fn refuses_what_is_not_an_image_or_is_cut_short() {
        assert!(decode_one(b"hello, world", 16, 3)
            .unwrap_err()
            .contains("not an image"));
        assert!(decode_one(b"", 16, 3).unwrap_err().contains("empty"));
        let j = jpeg(200, 200);
        decode_one(&j, 16, 3).unwrap();
        let cut = &j[..j.len() / 2];
        assert!(
            decode_one(cut, 16, 3).unwrap_err().contains("truncated"),
            "half a JPEG"
        );
        let p = png(64, 64);
        assert!(decode_one(&p[..p.len() / 2], 16, 3).is_err(), "half a PNG");
    }

    #[test]
    fn refuses_an_absurd_header_without_allocating_it() {
        // A valid PNG signature + IHDR declaring 60000x60000, and nothing else.
        let mut p = png(1, 1);
        p[16..20].copy_from_slice(&60000u32.to_be_bytes());
        p[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let err = decode_one(&p, 16, 3).unwrap_err();
        assert!(err.contains("60000x60000") || err.contains("header"), "{err}");
    }
}
