//! The decode cache on a real ingested dataset: pixels equal `decode_resize` of each file, a second
//! load is a hit that decodes nothing, 1- and 3-channel variants agree, damaged files are rebuilt.

mod common;

use std::path::Path;

use common::*;
use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use tanren_dataset::cache::{cache_path, HEADER_LEN};
use tanren_dataset::{decode_resize, ingest_zip, load_or_build, CacheStatus, Limits, Manifest, Split};

/// A dataset mixing formats, sizes, grayscale and alpha sources.
fn dataset(root: &Path) -> Manifest {
    let gray = encode(
        &GrayImage::from_fn(20, 15, |x, y| Luma([(x * 12 + y) as u8])).into(),
        ImageFormat::Png,
    );
    let rgba = encode(
        &RgbaImage::from_fn(7, 30, |x, y| Rgba([x as u8 * 30, y as u8 * 8, 99, 128])).into(),
        ImageFormat::Png,
    );
    let zip = with_classes(Zip::new(), "", &[("circle", 6), ("square", 5)], 11)
        .file("circle/gray.png", &gray)
        .file("square/alpha.png", &rgba)
        .bytes();
    let (_d, zip_path) = write_zip(&zip);
    ingest_zip(&zip_path, &root.join("ds"), &Limits::default(), 5).expect("ingest")
}

#[test]
fn cache_matches_decode_resize_and_hits_without_decoding() {
    let root = tempfile::tempdir().expect("tempdir");
    let m = dataset(root.path());
    let (ds, cache) = (root.path().join("ds"), root.path().join("cache"));
    let mut built = Vec::new();
    for split in [Split::Train, Split::Test] {
        for channels in [1, 3] {
            let (p, status) = load_or_build(&ds, &m, split, 16, channels, &cache).expect("build");
            let samples = m.samples(split);
            assert_eq!(
                status,
                CacheStatus::Built {
                    decoded: samples.len()
                }
            );
            assert_eq!((p.n, p.channels, p.size), (samples.len(), channels, 16));
            let per = (channels * 16 * 16) as usize;
            assert_eq!(p.pixels.len(), p.n * per);
            for (i, s) in samples.iter().enumerate() {
                let want = decode_resize(&std::fs::read(ds.join(&s.path)).expect("read"), 16, channels)
                    .expect("decode");
                assert_eq!(&p.pixels[i * per..(i + 1) * per], &want[..], "{}", s.path);
                assert_eq!(p.labels[i], s.label as i64);
            }
            built.push((split, channels, p.pixels));
        }
    }
    // The images are gone: a hit must not need them.
    std::fs::remove_dir_all(ds.join("train")).expect("rm");
    std::fs::remove_dir_all(ds.join("test")).expect("rm");
    for (split, channels, pixels) in built {
        let (p, status) = load_or_build(&ds, &m, split, 16, channels, &cache).expect("hit");
        assert_eq!(status, CacheStatus::Hit);
        assert_eq!(p.pixels, pixels);
    }
    // Only the four packed files, no temp files.
    assert_eq!(std::fs::read_dir(&cache).expect("ls").count(), 4);
}

#[test]
fn damaged_or_stale_cache_files_are_rebuilt() {
    let root = tempfile::tempdir().expect("tempdir");
    let m = dataset(root.path());
    let (ds, cache) = (root.path().join("ds"), root.path().join("cache"));
    let (first, _) = load_or_build(&ds, &m, Split::Train, 8, 3, &cache).expect("build");
    let path = cache_path(&cache, &m.sha256, Split::Train, 8, 3);
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(bytes.len(), HEADER_LEN + first.pixels.len() + 8 * first.n);
    for damaged in [
        bytes[..bytes.len() - 1].to_vec(),
        [&b"XXXX"[..], &bytes[4..]].concat(),
    ] {
        std::fs::write(&path, damaged).expect("write");
        let (p, status) = load_or_build(&ds, &m, Split::Train, 8, 3, &cache).expect("rebuild");
        assert_eq!(
            status,
            CacheStatus::Built {
                decoded: m.train.len()
            }
        );
        assert_eq!(p.pixels, first.pixels);
    }
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn channels_and_colour_conversion() {
    // Grayscale source: the three RGB planes are the luma plane replicated.
    let gray = encode(
        &GrayImage::from_fn(9, 9, |x, y| Luma([(x * 20 + y * 3) as u8])).into(),
        ImageFormat::Png,
    );
    let one = decode_resize(&gray, 9, 1).expect("decode");
    let three = decode_resize(&gray, 9, 3).expect("decode");
    assert_eq!(three, [one.clone(), one.clone(), one.clone()].concat());
    // Same size: no resampling, the exact pixels in CHW order.
    assert_eq!(
        one,
        GrayImage::from_fn(9, 9, |x, y| Luma([(x * 20 + y * 3) as u8])).into_raw()
    );

    // Colour to luma with PIL's weights: pure red is 76, pure green 150, pure blue 29.
    let rgb = RgbImage::from_fn(3, 1, |x, _| {
        Rgb([[255, 0, 0], [0, 255, 0], [0, 0, 255]][x as usize])
    });
    let png = encode(&DynamicImage::from(rgb), ImageFormat::Png);
    assert_eq!(decode_resize(&png, 1, 1).map(|v| v.len()).expect("decode"), 1);
    let solid = encode(
        &DynamicImage::from(RgbImage::from_pixel(40, 30, Rgb([255, 0, 0]))),
        ImageFormat::Png,
    );
    assert_eq!(decode_resize(&solid, 8, 1).expect("decode"), vec![76; 64]);
    // A solid colour stays solid through the resize, in planar order.
    let planes = decode_resize(&solid, 8, 3).expect("decode");
    assert_eq!(planes, [vec![255u8; 64], vec![0; 64], vec![0; 64]].concat());
    for (size, channels) in [(0, 3), (8, 2), (8, 4)] {
        assert!(decode_resize(&solid, size, channels).is_err());
    }
}

#[test]
fn bad_parameters_are_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let m = dataset(root.path());
    let err = load_or_build(
        &root.path().join("ds"),
        &m,
        Split::Test,
        32,
        2,
        &root.path().join("c"),
    )
    .err();
    assert_eq!(err.map(|e| e.code()), Some("bad_parameter"));
}
