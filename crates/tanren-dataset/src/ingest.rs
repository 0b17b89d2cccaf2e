//! Safe zip ingest: check everything about an upload, then publish it as a dataset directory.
//!
//! Order matters for safety and for cheap refusals: (0) the entry count the end-of-central-directory
//! record declares, read from the file's tail before the central directory is parsed into memory;
//! (1) central-directory metadata of every entry (paths, symlinks, encryption, declared sizes and
//! ratios) before decompressing a byte; (2) layout and classes from names alone; (3) each candidate
//! image decompressed with its bytes counted (a lying header cannot beat the limits) and its
//! header's dimensions checked before any decode; (4) full decodes in parallel. All output goes to a
//! temp dir beside `out_dir`, renamed into place at the very end, so a refusal (or a crash) never
//! leaves a half-written dataset where readers look.

use std::fs::{self, File};
use std::io::{BufReader, Cursor, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use image::{ImageFormat, ImageReader};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use zip::{CompressionMethod, ZipArchive};

use crate::eocd::{self, Declared};
use crate::layout::{self, Candidate, Entry, Side};
use crate::manifest::{self, ClassInfo, Layout, Manifest, Sample, Skipped};
use crate::split::stratified_split;
use crate::stats::{DatasetStats, ImageInfo};
use crate::IngestError;

/// Entries smaller than this are never refused for their compression ratio: small files of one
/// colour legitimately compress far, and cannot do damage.
const RATIO_MIN_BYTES: u64 = 1 << 20;
/// Share of each class held out as test for `Layout::ClassFolders`.
const TEST_FRACTION: f64 = 0.2;

/// Resource limits for one upload. Defaults suit a single-machine deployment.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_entries: usize,
    /// Applies to the sum of declared sizes and, separately, to the bytes actually decompressed.
    pub max_total_uncompressed: u64,
    pub max_entry_bytes: u64,
    /// Uncompressed/compressed, checked for entries above 1 MiB.
    pub max_ratio: u64,
    /// width*height as declared by the image header, checked before decoding.
    pub max_image_pixels: u64,
    pub max_dimension: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 200_000,
            max_total_uncompressed: 8 << 30,
            max_entry_bytes: 64 << 20,
            max_ratio: 200,
            max_image_pixels: 40_000_000,
            max_dimension: 16384,
        }
    }
}

/// Validate and extract an uploaded zip into `out_dir`, which must not exist.
///
/// Work happens in a temp dir beside `out_dir` (same parent, so the final rename is atomic) and on any
/// error nothing is left behind. Output file names are chosen here (`train/<class index>/<n>.<ext>`),
/// never taken from the zip.
pub fn ingest_zip(
    zip_path: &Path,
    out_dir: &Path,
    limits: &Limits,
    split_seed: u64,
) -> Result<Manifest, IngestError> {
    ingest_zip_cancellable(zip_path, out_dir, limits, split_seed, &AtomicBool::new(false))
}

/// [`ingest_zip`] that stops with [`IngestError::Cancelled`] soon after `cancel` is set (checked
/// between entries, during the parallel decode, and before the final rename), leaving nothing behind:
/// the staging directory goes with the error and `out_dir` is never created.
pub fn ingest_zip_cancellable(
    zip_path: &Path,
    out_dir: &Path,
    limits: &Limits,
    split_seed: u64,
    cancel: &AtomicBool,
) -> Result<Manifest, IngestError> {
    let cancelled = || cancel.load(Ordering::Relaxed);
    if cancelled() {
        return Err(IngestError::Cancelled);
    }
    if out_dir.symlink_metadata().is_ok() {
        return Err(IngestError::OutputExists(out_dir.to_owned()));
    }
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut file = File::open(zip_path)?;
    // Before the zip crate reads the central directory into memory (one record per declared entry),
    // and before hashing: the cheapest refusal comes first.
    match eocd::declared_entries(&mut file)? {
        Declared::Entries(n) if n > limits.max_entries as u64 => {
            return Err(IngestError::TooManyEntries {
                count: usize::try_from(n).unwrap_or(usize::MAX),
                limit: limits.max_entries,
            })
        }
        Declared::BadZip64(why) => return Err(IngestError::NotAZip(why)),
        Declared::Entries(_) | Declared::NoEndRecord => {}
    }
    let sha256 = sha256_file(zip_path)?;
    // The file opened, so a failure to parse it is the upload's fault (truncated, not a zip), except
    // for genuine read errors of the disk.
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|e| match e {
        zip::result::ZipError::Io(io)
            if !matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) =>
        {
            IngestError::Io(io)
        }
        other => IngestError::NotAZip(other.to_string()),
    })?;
    // Still checked: the zip crate can settle on an earlier end record than the one checked above
    // (it searches backwards past one it cannot use); each entry it parsed took 46 bytes of the file.
    if archive.len() > limits.max_entries {
        return Err(IngestError::TooManyEntries {
            count: archive.len(),
            limit: limits.max_entries,
        });
    }
    let (entries, compressed) = scan(&mut archive, limits)?;
    let plan = layout::plan(&entries)?;
    let mut skipped = plan.skipped;

    let tmp = tempfile::Builder::new()
        .prefix(".tanren-ingest-")
        .tempdir_in(&parent)?;
    let raw_dir = tmp.path().join("raw");
    fs::create_dir(&raw_dir)?;
    let mut extracted = Vec::with_capacity(plan.candidates.len());
    let mut total = 0u64;
    for (seq, cand) in plan.candidates.into_iter().enumerate() {
        if cancelled() {
            return Err(IngestError::Cancelled);
        }
        let bytes = read_entry(&mut archive, &cand, compressed[cand.index], limits, &mut total)?;
        match check_header(&bytes, &cand.name, limits)? {
            Ok(format) => {
                let ext = format.extensions_str().first().copied().unwrap_or("img");
                let path = raw_dir.join(format!("{seq}.{ext}"));
                fs::write(&path, &bytes)?;
                extracted.push((cand, path, ext));
            }
            Err(reason) => skipped.push(Skipped {
                path: cand.name,
                reason,
            }),
        }
    }

    // Full decode in parallel: the only way to know a file is usable is to decode all of it.
    let verdicts: Vec<Result<ImageInfo, String>> = extracted
        .par_iter()
        .map(|(_, path, _)| match cancelled() {
            true => Err("not looked at: cancelled".into()), // the whole ingest is refused below
            false => decode_check(path, limits),
        })
        .collect();
    if cancelled() {
        return Err(IngestError::Cancelled);
    }
    let mut usable = Vec::with_capacity(extracted.len());
    let mut infos = Vec::with_capacity(extracted.len());
    for ((cand, path, ext), verdict) in extracted.into_iter().zip(verdicts) {
        match verdict {
            Ok(info) => {
                usable.push((cand, path, ext));
                infos.push(info);
            }
            Err(reason) => {
                fs::remove_file(&path)?;
                skipped.push(Skipped {
                    path: cand.name,
                    reason: format!("not a decodable image: {reason}"),
                });
            }
        }
    }

    // Sides: given by the zip, or a seeded stratified split of each class.
    let sides: Vec<Side> = match plan.layout {
        Layout::TrainTest => usable
            .iter()
            .map(|(c, _, _)| c.side.unwrap_or(Side::Train))
            .collect(),
        Layout::ClassFolders => {
            let labels: Vec<usize> = usable.iter().map(|(c, _, _)| c.class).collect();
            let (_, test) = stratified_split(&labels, TEST_FRACTION, split_seed);
            let mut sides = vec![Side::Train; labels.len()];
            test.into_iter().for_each(|i| sides[i] = Side::Test);
            sides
        }
    };

    let mut classes: Vec<ClassInfo> = plan
        .classes
        .into_iter()
        .zip(plan.merged)
        .enumerate()
        .map(|(index, (name, merged_spellings))| ClassInfo {
            index,
            name,
            train: 0,
            test: 0,
            merged_spellings,
        })
        .collect();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let all_labels: Vec<usize> = usable.iter().map(|(c, _, _)| c.class).collect();
    let train_labels: Vec<usize> = usable
        .iter()
        .zip(&sides)
        .filter(|(_, s)| matches!(s, Side::Train))
        .map(|((c, _, _), _)| c.class)
        .collect();
    let stats = DatasetStats::from_images(&infos, &all_labels, &train_labels, classes.len());
    // `usable` is sorted by (side, class, zip name) for TrainTest and (class, zip name) otherwise;
    // numbering per (side, class) in that order keeps the output names sorted the same way.
    for ((cand, path, ext), side) in usable.into_iter().zip(sides) {
        let (dir, count, list) = match side {
            Side::Train => ("train", &mut classes[cand.class].train, &mut train),
            Side::Test => ("test", &mut classes[cand.class].test, &mut test),
        };
        let rel = format!("{dir}/{}/{:06}.{ext}", cand.class, *count);
        *count += 1;
        let dest = tmp.path().join(&rel);
        if *count == 1 {
            fs::create_dir_all(dest.parent().expect("has a parent"))?;
        }
        fs::rename(&path, &dest)?;
        list.push(Sample {
            path: rel,
            label: cand.class,
        });
    }
    fs::remove_dir(&raw_dir)?;
    for c in &classes {
        for (split, n) in [("train", c.train), ("test", c.test)] {
            if n == 0 {
                return Err(IngestError::EmptyClass {
                    class: c.name.clone(),
                    split: split.into(),
                });
            }
        }
    }
    train.sort_by(|a, b| (a.label, &a.path).cmp(&(b.label, &b.path)));
    test.sort_by(|a, b| (a.label, &a.path).cmp(&(b.label, &b.path)));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));

    let manifest = Manifest {
        sha256,
        layout: plan.layout,
        classes,
        train,
        test,
        skipped,
        split_seed,
        stats: Some(stats),
    };
    manifest::write_manifest(tmp.path(), &manifest)?;
    // tempfile creates the staging dir 0700; a dataset dir is as readable as any other output.
    #[cfg(unix)]
    fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    if cancelled() {
        return Err(IngestError::Cancelled);
    }
    let staged = tmp.keep();
    if let Err(e) = fs::rename(&staged, out_dir) {
        let _ = fs::remove_dir_all(&staged);
        return Err(if out_dir.exists() {
            IngestError::OutputExists(out_dir.to_owned())
        } else {
            e.into()
        });
    }
    Ok(manifest)
}

fn sha256_file(path: &Path) -> Result<String, IngestError> {
    let mut hasher = Sha256::new();
    std::io::copy(
        &mut BufReader::with_capacity(1 << 20, File::open(path)?),
        &mut hasher,
    )?;
    Ok(hex::encode(hasher.finalize()))
}

/// Central-directory checks of every entry, before anything is decompressed. Returns the entries for
/// layout planning and each entry's compressed size (indexed like the archive).
fn scan<R: Read + std::io::Seek>(
    archive: &mut ZipArchive<R>,
    limits: &Limits,
) -> Result<(Vec<Entry>, Vec<u64>), IngestError> {
    let mut entries = Vec::with_capacity(archive.len());
    let mut compressed = Vec::with_capacity(archive.len());
    let mut declared_total = 0u64;
    for index in 0..archive.len() {
        let name = archive.name_for_index(index).unwrap_or_default().to_owned();
        let f = archive
            .by_index_raw(index)
            .map_err(|e| IngestError::CorruptEntry {
                entry: name.clone(),
                reason: e.to_string(),
            })?;
        let comps = layout::safe_components(&name).ok_or(IngestError::UnsafePath { entry: name.clone() })?;
        // S_IFLNK in the file-type bits; zip's own is_symlink() would also match sockets.
        if f.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(IngestError::Symlink { entry: name });
        }
        if f.encrypted() {
            return Err(IngestError::Encrypted { entry: name });
        }
        if !matches!(
            f.compression(),
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(IngestError::UnsupportedCompression {
                entry: name,
                method: f.compression().to_string(),
            });
        }
        let (size, csize) = (f.size(), f.compressed_size());
        if size >= RATIO_MIN_BYTES && size / csize.max(1) > limits.max_ratio {
            return Err(IngestError::SuspiciousRatio {
                entry: name,
                ratio: size / csize.max(1),
                limit: limits.max_ratio,
            });
        }
        if size > limits.max_entry_bytes {
            return Err(IngestError::EntryTooLarge {
                entry: name,
                size,
                limit: limits.max_entry_bytes,
            });
        }
        declared_total = declared_total.saturating_add(size);
        if declared_total > limits.max_total_uncompressed {
            return Err(IngestError::TooLargeUncompressed {
                limit: limits.max_total_uncompressed,
            });
        }
        let is_dir = f.is_dir();
        entries.push(Entry {
            index,
            name,
            comps,
            is_dir,
        });
        compressed.push(csize);
    }
    Ok((entries, compressed))
}

/// Decompress one entry, counting the bytes as they come: the declared size is only a claim.
/// Stops one chunk past whichever limit is hit first.
fn read_entry<R: Read + std::io::Seek>(
    archive: &mut ZipArchive<R>,
    cand: &Candidate,
    compressed: u64,
    limits: &Limits,
    total: &mut u64,
) -> Result<Vec<u8>, IngestError> {
    let corrupt = |e: &dyn std::fmt::Display| IngestError::CorruptEntry {
        entry: cand.name.clone(),
        reason: e.to_string(),
    };
    let mut file = archive.by_index(cand.index).map_err(|e| corrupt(&e))?;
    let mut out = Vec::with_capacity(file.size().min(limits.max_entry_bytes) as usize);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(&e)),
        };
        out.extend_from_slice(&chunk[..n]);
        *total += n as u64;
        let len = out.len() as u64;
        if len >= RATIO_MIN_BYTES && len / compressed.max(1) > limits.max_ratio {
            let ratio = len / compressed.max(1);
            return Err(IngestError::SuspiciousRatio {
                entry: cand.name.clone(),
                ratio,
                limit: limits.max_ratio,
            });
        }
        if len > limits.max_entry_bytes {
            return Err(IngestError::EntryTooLarge {
                entry: cand.name.clone(),
                size: len,
                limit: limits.max_entry_bytes,
            });
        }
        if *total > limits.max_total_uncompressed {
            return Err(IngestError::TooLargeUncompressed {
                limit: limits.max_total_uncompressed,
            });
        }
    }
    Ok(out)
}

/// Read only the image header. Outer error: refuse the upload (absurd dimensions); inner error: skip
/// this file with the reason (not an image we can read).
fn check_header(
    bytes: &[u8],
    entry: &str,
    limits: &Limits,
) -> Result<Result<ImageFormat, String>, IngestError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    // Header parsing allocates nothing sized by the dimensions; without this some decoders would
    // fail on the image crate's default allocation limit and the file would merely be skipped.
    reader.no_limits();
    let Some(format) = reader.format() else {
        return Ok(Err(
            "not a recognised image format (PNG, JPEG, BMP, GIF or WebP)".into()
        ));
    };
    let (width, height) = match reader.into_dimensions() {
        Ok(d) => d,
        Err(e) => return Ok(Err(format!("not a decodable image: {e}"))),
    };
    if u64::from(width) * u64::from(height) > limits.max_image_pixels
        || width > limits.max_dimension
        || height > limits.max_dimension
    {
        return Err(IngestError::ImageTooLarge {
            entry: entry.to_owned(),
            width,
            height,
            max_pixels: limits.max_image_pixels,
            max_dimension: limits.max_dimension,
        });
    }
    Ok(Ok(format))
}

/// Decode the whole image once (then drop it, keeping its size and whether it has colour) under the same dimension limits, in case a decoder
/// meets a frame larger than the header said.
fn decode_check(path: &Path, limits: &Limits) -> Result<ImageInfo, String> {
    let mut reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_dimension);
    l.max_image_height = Some(limits.max_dimension);
    reader.limits(l);
    reader
        .decode()
        .map(|img| crate::stats::image_info(&img))
        .map_err(|e| e.to_string())
}
