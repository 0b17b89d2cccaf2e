//! Ingest end to end on real zips: accepted layouts, class order, counts, the seeded split, skipped
//! files, and every refusal leaving nothing behind.

mod common;

use std::path::Path;

use common::*;
use tanren_dataset::{ingest_zip, load_manifest, IngestError, Layout, Limits, Manifest};

/// Ingest into a fresh, empty parent dir; also returns that parent.
fn ingest(zip: &[u8], limits: &Limits, seed: u64) -> (tempfile::TempDir, Result<Manifest, IngestError>) {
    let (_zip_dir, zip_path) = write_zip(zip);
    let parent = tempfile::tempdir().expect("tempdir");
    let result = ingest_zip(&zip_path, &parent.path().join("ds"), limits, seed);
    (parent, result)
}

fn ok(zip: &[u8], seed: u64) -> (tempfile::TempDir, Manifest) {
    let (parent, result) = ingest(zip, &Limits::default(), seed);
    (parent, result.expect("accepted"))
}

/// Refused with `code`, and the parent directory is left exactly as it was (empty).
fn refused(zip: &[u8], limits: &Limits, code: &str) -> IngestError {
    let (parent, result) = ingest(zip, limits, 0);
    let err = result.expect_err("refused");
    assert_eq!(err.code(), code, "{err}");
    assert!(err.is_client_error());
    assert_eq!(
        listing(parent.path()),
        Vec::<std::path::PathBuf>::new(),
        "left files behind"
    );
    err
}

fn counts(m: &Manifest) -> Vec<(&str, usize, usize)> {
    m.classes
        .iter()
        .map(|c| (c.name.as_str(), c.train, c.test))
        .collect()
}

fn check_files(dir: &Path, m: &Manifest) {
    for s in m.train.iter().chain(&m.test) {
        let bytes = std::fs::read(dir.join(&s.path)).expect("sample file exists");
        image::load_from_memory(&bytes).expect("decodable");
    }
    for list in [&m.train, &m.test] {
        assert!(list
            .windows(2)
            .all(|w| (w[0].label, &w[0].path) < (w[1].label, &w[1].path)));
    }
    assert_eq!(&load_manifest(dir).expect("manifest"), m);
}

#[test]
fn train_test_layout_with_and_without_top_folder() {
    for prefix in ["", "pets/"] {
        let classes = [("dog", 4), ("cat", 3), ("Zebra", 2)];
        let mut zip = with_classes(Zip::new(), &format!("{prefix}train/"), &classes, 1);
        zip = with_classes(
            zip,
            &format!("{prefix}test/"),
            &[("dog", 2), ("cat", 1), ("Zebra", 1)],
            500,
        );
        let zip = zip
            .file(&format!("{prefix}train/cat/deeper/nested.png"), &png(9))
            .file("__MACOSX/._x.png", b"junk")
            .file(&format!("{prefix}train/.DS_Store"), b"junk")
            .file(&format!("{prefix}test/dog/Thumbs.db"), b"junk")
            .file(&format!("{prefix}test/dog/notes.txt"), b"hello")
            .file(&format!("{prefix}train/loose.png"), &png(3))
            .bytes();
        let (parent, m) = ok(&zip, 0);
        assert_eq!(m.layout, Layout::TrainTest);
        // Byte order, like ImageFolder: uppercase sorts first.
        assert_eq!(counts(&m), [("Zebra", 2, 1), ("cat", 4, 1), ("dog", 4, 2)]);
        assert!(m.classes.iter().enumerate().all(|(i, c)| c.index == i));
        assert_eq!(m.skipped.len(), 5, "{:?}", m.skipped);
        assert_eq!(m.sha256.len(), 64);
        check_files(&parent.path().join("ds"), &m);
        // Only the dataset dir is left: the staging dir was renamed, not copied.
        assert_eq!(std::fs::read_dir(parent.path()).expect("ls").count(), 1);
    }
}

#[test]
fn class_folders_are_split_stratified_and_deterministically() {
    for prefix in ["", "shapes/"] {
        let zip = with_classes(Zip::new(), prefix, &[("b", 10), ("a", 7), ("c", 2)], 3).bytes();
        let (parent, m) = ok(&zip, 42);
        assert_eq!(m.layout, Layout::ClassFolders);
        // test = round(0.2 n), at least 1: 7 -> 1, 10 -> 2, 2 -> 1.
        assert_eq!(counts(&m), [("a", 6, 1), ("b", 8, 2), ("c", 1, 1)]);
        check_files(&parent.path().join("ds"), &m);

        // Same seed: the same source files land in test; another seed: a different choice.
        let test_bytes = |dir: &Path, m: &Manifest| -> Vec<Vec<u8>> {
            m.test
                .iter()
                .map(|s| std::fs::read(dir.join(&s.path)).expect("read"))
                .collect()
        };
        let first = test_bytes(&parent.path().join("ds"), &m);
        let (again_dir, again) = ok(&zip, 42);
        assert_eq!(again, m);
        assert_eq!(test_bytes(&again_dir.path().join("ds"), &again), first);
        let differs = (43..48).any(|seed| {
            let (d, other) = ok(&zip, seed);
            test_bytes(&d.path().join("ds"), &other) != first
        });
        assert!(differs, "the split ignores its seed");
    }
}

#[test]
fn undecodable_images_are_skipped_and_counted() {
    let good = png(1);
    let zip = with_classes(Zip::new(), "train/", &[("a", 2), ("b", 2)], 0);
    let zip = with_classes(zip, "test/", &[("a", 1), ("b", 1)], 50)
        .file("train/a/truncated.png", &good[..good.len() / 2])
        .file("train/b/text.png", b"this is not an image")
        .file("test/a/garbage.jpg", &[0xFF, 0xD8, 0xFF, 0x00, 0x01])
        .bytes();
    let (_parent, m) = ok(&zip, 0);
    assert_eq!(counts(&m), [("a", 2, 1), ("b", 2, 1)]);
    let mut names: Vec<_> = m.skipped.iter().map(|s| s.path.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["test/a/garbage.jpg", "train/a/truncated.png", "train/b/text.png"]
    );
    assert!(m.skipped.iter().all(|s| !s.reason.is_empty()));
}

#[test]
fn structural_refusals() {
    let lim = Limits::default();
    refused(b"PK but not really a zip", &lim, "not_a_zip");
    let zip = with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0).bytes();
    for cut in [zip.len() / 2, zip.len() - 5, 30] {
        refused(&zip[..cut], &lim, "not_a_zip");
    }
    let mut wrong_offset = zip.clone();
    let eocd = zip.len() - 22;
    set_u32(&mut wrong_offset[eocd..], 16, 7); // central directory "starts" inside the first file
    let (_p, result) = ingest(&wrong_offset, &lim, 0);
    assert!(result.expect_err("refused").is_client_error());
    refused(
        &with_classes(Zip::new(), "train/", &[("a", 2), ("b", 2)], 0).bytes(),
        &lim,
        "unknown_layout",
    );
    refused(
        &with_classes(Zip::new(), "", &[("only", 5)], 0).bytes(),
        &lim,
        "too_few_classes",
    );
    let zip = with_classes(Zip::new(), "train/", &[("a", 2), ("b", 2)], 0);
    let err = refused(
        &with_classes(zip, "test/", &[("a", 1), ("c", 1)], 9).bytes(),
        &lim,
        "class_mismatch",
    );
    let IngestError::ClassMismatch {
        only_train,
        only_test,
    } = err
    else {
        unreachable!()
    };
    assert_eq!(
        (only_train, only_test),
        (vec!["b".to_string()], vec!["c".to_string()])
    );
    // A test class whose only file is corrupt ends up empty.
    let zip = with_classes(Zip::new(), "train/", &[("a", 2), ("b", 2)], 0);
    let zip = with_classes(zip, "test/", &[("a", 1)], 9)
        .file("test/b/bad.png", b"nope")
        .bytes();
    refused(&zip, &lim, "empty_class");
    // A single image cannot be split into train and test.
    refused(
        &with_classes(Zip::new(), "", &[("a", 3), ("b", 1)], 0).bytes(),
        &lim,
        "empty_class",
    );
}

#[test]
fn unsafe_entries_are_refused() {
    let lim = Limits::default();
    let base = || with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0);
    for name in [
        "../evil.png",
        "a/../../evil.png",
        "/etc/evil.png",
        "C:/evil.png",
        "a\\..\\..\\evil.png",
    ] {
        refused(&base().file(name, &png(1)).bytes(), &lim, "unsafe_path");
    }
    refused(
        &base().symlink("a/link.png", "/etc/passwd").bytes(),
        &lim,
        "symlink",
    );
    // The encryption flag (general purpose bit 0) set on an entry.
    let zip = patch(base().bytes(), 0, |l| l[6] |= 1, |c| c[8] |= 1);
    refused(&zip, &lim, "encrypted");
    // Compression method 12 (bzip2), which this build does not decode.
    let zip = patch(base().bytes(), 0, |l| set_u16(l, 8, 12), |c| set_u16(c, 10, 12));
    refused(&zip, &lim, "unsupported_compression");
}

#[test]
fn size_limits_are_enforced() {
    let base = || with_classes(Zip::new(), "", &[("a", 3), ("b", 3)], 0);
    let lim = Limits {
        max_entries: 5,
        ..Limits::default()
    };
    refused(&base().bytes(), &lim, "too_many_entries");
    let lim = Limits {
        max_entry_bytes: 200,
        ..Limits::default()
    };
    refused(
        &base().file("a/big.bmp", &vec![7u8; 201]).bytes(),
        &lim,
        "entry_too_large",
    );
    let lim = Limits {
        max_total_uncompressed: 1500,
        ..Limits::default()
    };
    refused(&base().bytes(), &lim, "too_large_uncompressed");
    let lim = Limits {
        max_image_pixels: 50,
        ..Limits::default()
    };
    refused(&base().bytes(), &lim, "image_too_large");
}

#[test]
fn zip_bomb_is_refused() {
    let zip = with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0)
        .file("a/bomb.bmp", &vec![0u8; 100 << 20])
        .bytes();
    assert!(zip.len() < 1 << 20);
    refused(&zip, &Limits::default(), "suspicious_ratio");
}

#[test]
fn lying_sizes_are_caught_while_decompressing() {
    // 10 MB of zeros whose headers claim 100 bytes: only counting while decompressing catches it.
    let liar = || {
        let zip = Zip::new().file("a/liar.bmp", &vec![0u8; 10 << 20]);
        let zip = with_classes(zip, "", &[("a", 2), ("b", 2)], 0).bytes();
        patch(zip, 0, |l| set_u32(l, 22, 100), |c| set_u32(c, 24, 100))
    };
    refused(&liar(), &Limits::default(), "suspicious_ratio");
    // With the ratio guard off, the per-entry limit stops it, one chunk past the limit.
    let lim = Limits {
        max_ratio: u64::MAX,
        max_entry_bytes: 2 << 20,
        ..Limits::default()
    };
    let err = refused(&liar(), &lim, "entry_too_large");
    let IngestError::EntryTooLarge { size, .. } = err else {
        unreachable!()
    };
    assert!(size > 2 << 20 && size <= (2 << 20) + (64 << 10), "{size}");
    let lim = Limits {
        max_ratio: u64::MAX,
        max_total_uncompressed: 1 << 20,
        ..Limits::default()
    };
    refused(&liar(), &lim, "too_large_uncompressed");
}

#[test]
fn absurd_image_header_is_refused_before_decoding() {
    let zip = with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0)
        .file("b/huge.png", &png_header_only(100_000, 100_000))
        .bytes();
    let start = std::time::Instant::now();
    let err = refused(&zip, &Limits::default(), "image_too_large");
    assert!(err.to_string().contains("b/huge.png"), "{err}");
    assert!(start.elapsed().as_secs() < 5);
    let zip = with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0)
        .file("a/wide.bmp", &bmp_header_only(20_000, 10))
        .bytes();
    refused(&zip, &Limits::default(), "image_too_large");
    // Control: within the limits the same file is merely undecodable, hence skipped. So the refusal
    // above came from the header alone.
    let zip = with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0)
        .file("b/small.png", &png_header_only(100, 100))
        .bytes();
    let (_p, m) = ok(&zip, 0);
    assert_eq!(m.skipped.len(), 1);
}

#[test]
fn existing_output_is_not_touched() {
    let zip = with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0).bytes();
    let (_zip_dir, zip_path) = write_zip(&zip);
    let parent = tempfile::tempdir().expect("tempdir");
    let out = parent.path().join("ds");
    std::fs::create_dir(&out).expect("mkdir");
    let err = ingest_zip(&zip_path, &out, &Limits::default(), 0).expect_err("exists");
    assert_eq!(err.code(), "output_exists");
    assert!(!err.is_client_error());
    assert_eq!(listing(parent.path()), vec![out]);
}

/// `café` composed (NFC: Linux, Windows) and decomposed (NFD: macOS's HFS+).
const CAFE_NFC: &str = "caf\u{e9}";
const CAFE_NFD: &str = "cafe\u{301}";

#[test]
fn folder_names_differing_only_by_normalisation_are_one_class() {
    let zip = with_classes(Zip::new(), "", &[(CAFE_NFC, 3), (CAFE_NFD, 2), ("tea", 5)], 0).bytes();
    let (parent, m) = ok(&zip, 0);
    assert_eq!(m.classes.len(), 2, "{:?}", m.classes);
    let cafe = &m.classes[0];
    assert_eq!(cafe.name, CAFE_NFC);
    assert_eq!(cafe.train + cafe.test, 5);
    // Sorted by bytes: `e` (0x65) before the first byte of `é` (0xC3).
    assert_eq!(cafe.merged_spellings, [CAFE_NFD, CAFE_NFC]);
    assert!(m.classes[1].merged_spellings.is_empty());
    check_files(&parent.path().join("ds"), &m);
    let json = std::fs::read_to_string(parent.path().join("ds/manifest.json")).expect("manifest");
    assert_eq!(json.matches("merged_spellings").count(), 1, "absent when empty");

    // A zip made entirely on macOS: one spelling, NFD. The class is named in NFC, nothing merged.
    let zip = with_classes(Zip::new(), "", &[(CAFE_NFD, 2), ("tea", 2)], 0).bytes();
    let (_p, m) = ok(&zip, 0);
    assert_eq!(
        (m.classes[0].name.as_str(), m.classes[0].merged_spellings.len()),
        (CAFE_NFC, 0)
    );

    // train/ written on one machine, test/ on another: the same classes, not a mismatch.
    let zip = with_classes(Zip::new(), "train/", &[(CAFE_NFC, 2), ("tea", 2)], 0);
    let zip = with_classes(zip, "test/", &[(CAFE_NFD, 1), ("tea", 1)], 50).bytes();
    let (_p, m) = ok(&zip, 0);
    assert_eq!(m.layout, Layout::TrainTest);
    assert_eq!(counts(&m), [(CAFE_NFC, 2, 1), ("tea", 2, 1)]);
    assert_eq!(m.classes[0].merged_spellings, [CAFE_NFD, CAFE_NFC]);
}

#[test]
fn dataset_inside_nested_wrapper_folders_is_found() {
    let zip = with_classes(Zip::new(), "outer/inner/train/", &[("cat", 2), ("dog", 3)], 0);
    let zip = with_classes(zip, "outer/inner/test/", &[("cat", 1), ("dog", 1)], 50)
        .dir("outer/")
        .dir("outer/inner/")
        .file("outer/README.txt", b"about")
        .file("outer/inner/LICENSE", b"cc-by")
        .bytes();
    let (parent, m) = ok(&zip, 0);
    assert_eq!(m.layout, Layout::TrainTest);
    assert_eq!(counts(&m), [("cat", 2, 1), ("dog", 3, 1)]);
    let skipped: Vec<&str> = m.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(skipped, ["outer/README.txt", "outer/inner/LICENSE"]);
    check_files(&parent.path().join("ds"), &m);

    // Class folders four wrappers deep.
    let zip = with_classes(Zip::new(), "a/b/c/d/", &[("cat", 2), ("dog", 2)], 0).bytes();
    let (_p, m) = ok(&zip, 0);
    assert_eq!((m.layout, m.classes.len()), (Layout::ClassFolders, 2));

    // Five is past the bound: the refusal says how deep it went.
    let zip = with_classes(Zip::new(), "a/b/c/d/e/", &[("cat", 2), ("dog", 2)], 0).bytes();
    let err = refused(&zip, &Limits::default(), "unknown_layout");
    assert!(err.to_string().contains("`a/b/c/d/e/`"), "{err}");

    // What a refusal names is where it looked.
    let zip = with_classes(Zip::new(), "outer/inner/train/", &[("cat", 2), ("dog", 2)], 0).bytes();
    let err = refused(&zip, &Limits::default(), "unknown_layout");
    assert!(
        err.to_string()
            .contains("no `test/` folder beside it (in `outer/inner/`)"),
        "{err}"
    );
    let zip = with_classes(Zip::new(), "outer/", &[("cat", 3)], 0).bytes();
    let err = refused(&zip, &Limits::default(), "too_few_classes");
    assert!(
        err.to_string()
            .starts_with("found 1 class folder(s) with images in `outer/` (`cat`), need at least 2"),
        "{err}"
    );
}

/// `zip` with its end-of-central-directory record claiming `entries` (both count fields).
fn claiming(mut zip: Vec<u8>, entries: u16) -> Vec<u8> {
    let eocd = zip.len() - 22;
    set_u16(&mut zip[eocd..], 8, entries);
    set_u16(&mut zip[eocd..], 10, entries);
    zip
}

/// `zip` turned zip64: a zip64 end record claiming `entries` and its locator, inserted before the
/// end record, whose own count then says "see zip64" (0xFFFF).
fn claiming_zip64(zip: Vec<u8>, entries: u64) -> Vec<u8> {
    let eocd = zip.len() - 22;
    let (cd_size, cd_offset) = {
        let e = &zip[eocd..];
        (
            u32::from_le_bytes(e[12..16].try_into().unwrap()),
            u32::from_le_bytes(e[16..20].try_into().unwrap()),
        )
    };
    let mut out = zip[..eocd].to_vec();
    let eocd64_at = out.len() as u64;
    out.extend_from_slice(b"PK\x06\x06");
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&[45, 0, 45, 0]); // versions
    out.extend_from_slice(&[0; 8]); // disk numbers
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&u64::from(cd_size).to_le_bytes());
    out.extend_from_slice(&u64::from(cd_offset).to_le_bytes());
    out.extend_from_slice(b"PK\x06\x07");
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&eocd64_at.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&zip[eocd..]);
    claiming(out, u16::MAX)
}

#[test]
fn entry_count_is_checked_from_the_end_record_before_parsing() {
    let zip = || with_classes(Zip::new(), "", &[("a", 2), ("b", 2)], 0).bytes();
    // The claim alone decides: parsing 60000 central headers would fail on the fifth (not a zip).
    let lim = Limits {
        max_entries: 50_000,
        ..Limits::default()
    };
    let err = refused(&claiming(zip(), 60_000), &lim, "too_many_entries");
    assert_eq!(
        err.to_string(),
        "the zip has 60000 entries, more than the limit of 50000; upload fewer files"
    );
    refused(
        &claiming_zip64(zip(), 3_000_000),
        &Limits::default(),
        "too_many_entries",
    );
    // Within the limit, the same claims are merely a broken zip.
    refused(&claiming(zip(), 40_000), &lim, "not_a_zip");
    refused(&claiming_zip64(zip(), 100), &Limits::default(), "not_a_zip");
    // The zip64 form of an honest count is read as such.
    let (_p, m) = ok(&claiming_zip64(zip(), 4), 0);
    assert_eq!(m.classes.len(), 2);
    // A zip64 locator pointing at nothing.
    let mut bad = claiming_zip64(zip(), 4);
    let locator = bad.len() - 22 - 20;
    set_u32(&mut bad[locator..], 8, 3);
    let err = refused(&bad, &Limits::default(), "not_a_zip");
    assert!(err.to_string().contains("zip64 end record"), "{err}");
}

#[test]
fn a_cancelled_ingest_stops_and_leaves_nothing_behind() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tanren_dataset::ingest_zip_cancellable;
    let zip = with_classes(Zip::new(), "", &[("a", 600), ("b", 600)], 7).bytes();
    let (_zip_dir, zip_path) = write_zip(&zip);

    // Cancelled before it starts.
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("ds");
    let err =
        ingest_zip_cancellable(&zip_path, &out, &Limits::default(), 0, &AtomicBool::new(true)).unwrap_err();
    assert_eq!(err.code(), "cancelled", "{err}");
    assert!(listing(parent.path()).is_empty());

    // Cancelled while it runs: as soon as the first image is extracted into the staging dir (1,200
    // images still to extract and decode after that).
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("ds");
    let cancel = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !cancel.load(Ordering::Relaxed) {
                if listing(parent.path()).iter().any(|p| p.is_file()) {
                    cancel.store(true, Ordering::Relaxed);
                }
                assert!(started.elapsed().as_secs() < 60, "no staging file appeared");
            }
        });
        let r = ingest_zip_cancellable(&zip_path, &out, &Limits::default(), 0, &cancel);
        cancel.store(true, Ordering::Relaxed); // ends the watcher if the ingest won the race
        r
    });
    let err = result.expect_err("cancelled mid-way");
    assert_eq!(err.code(), "cancelled", "{err}");
    assert!(err.is_client_error());
    assert!(!out.exists());
    assert_eq!(
        listing(parent.path()),
        Vec::<std::path::PathBuf>::new(),
        "left files behind"
    );
    // The same zip without a cancel goes through.
    let (_p, m) = ok(&zip, 0);
    assert_eq!(m.train.len() + m.test.len(), 1200);
}

#[test]
fn statistics_are_recorded_at_ingest_and_recomputed_for_old_manifests() {
    use image::{DynamicImage, GrayImage, ImageFormat, Luma};
    let grey = |seed: u8, w: u32, h: u32| {
        let img = GrayImage::from_fn(w, h, |x, y| Luma([seed ^ (x as u8) ^ (y as u8)]));
        encode(&DynamicImage::ImageLuma8(img), ImageFormat::Png)
    };
    let mut zip = Zip::new();
    // Class `a`: 6 grey 28x28; class `b`: 3 colour 40x20 (one class twice the other: imbalance 2).
    for i in 0..6u8 {
        zip = zip.file(&format!("a/{i}.png"), &grey(i, 28, 28));
    }
    for i in 0..3u32 {
        zip = zip.file(
            &format!("b/{i}.png"),
            &encode(&image(i, 40, 20).into(), ImageFormat::Png),
        );
    }
    let (parent, m) = ok(&zip.bytes(), 42);
    let s = m.stats.clone().expect("ingest records statistics");
    assert_eq!(s.images, 9);
    assert_eq!((s.width.min, s.width.median, s.width.max), (28, 28, 40));
    assert_eq!((s.height.min, s.height.max), (20, 28));
    assert_eq!(s.short_side.min, 20);
    assert_eq!((s.greyscale_images, s.colour_images), (6, 3));
    assert_eq!(s.colour_mode, "mixed");
    assert_eq!(s.per_class, vec![6, 3]);
    assert_eq!(s.train_per_class.iter().sum::<usize>(), m.train.len());
    assert_eq!(s.imbalance, 2.0);

    // A manifest from before statistics existed still loads, and they are computed from the files.
    let dir = parent.path().join("ds");
    let path = dir.join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    json.as_object_mut().expect("object").remove("stats");
    std::fs::write(&path, serde_json::to_vec(&json).expect("json")).expect("write");
    let old = load_manifest(&dir).expect("old manifest loads");
    assert!(old.stats.is_none());
    let lazy = tanren_dataset::stats::load_or_compute(&dir, &old).expect("computed");
    assert_eq!(lazy, s);
    assert!(
        dir.join(tanren_dataset::stats::STATS_FILE).exists(),
        "cached for next time"
    );
}
