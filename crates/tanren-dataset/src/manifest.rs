//! The manifest: the one description of an ingested dataset (`<dataset_dir>/manifest.json`).
//! Everything downstream (API responses, splits, the decode cache, `model.json` class names) reads
//! classes and samples from here rather than rescanning the directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::IngestError;

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Hex sha256 of the uploaded zip's bytes: the dataset's identity (cache keys, worker fetches).
    pub sha256: String,
    pub layout: Layout,
    /// Alphabetical by name in byte order (like torchvision's ImageFolder); `index` = position.
    pub classes: Vec<ClassInfo>,
    /// Sorted by (label, path).
    pub train: Vec<Sample>,
    /// Sorted by (label, path).
    pub test: Vec<Sample>,
    /// Zip entries that were ignored, and why.
    pub skipped: Vec<Skipped>,
    /// Seed of the 80/20 split (only meaningful for `Layout::ClassFolders`, recorded always).
    pub split_seed: u64,
    /// Image sizes, colour and class balance; absent in manifests written before they existed (see
    /// `stats::load_or_compute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::stats::DatasetStats>,
}

/// How the zip was laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `train/<class>/*` and `test/<class>/*`, optionally inside up to 4 wrapper folders.
    TrainTest,
    /// Only `<class>/*` folders (optionally inside up to 4 wrapper folders); split 80/20 stratified.
    ClassFolders,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub index: usize,
    /// The folder name as it appeared in the zip, in Unicode NFC (composed) form, which is the
    /// zip's own spelling unless the zip used decomposed (NFD) names, as macOS tools can.
    pub name: String,
    pub train: usize,
    pub test: usize,
    /// The zip's spellings of this class's folder when it had more than one that differ only by
    /// Unicode normalisation (`café` as U+00E9 and as `e` + U+0301): their images were merged into
    /// this one class. Empty (and absent from JSON) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_spellings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Relative to the dataset directory, e.g. `train/0/000012.png`; chosen by ingest, never by the zip.
    pub path: String,
    pub label: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The entry's name inside the zip.
    pub path: String,
    pub reason: String,
}

impl Manifest {
    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    pub fn samples(&self, split: crate::Split) -> &[Sample] {
        match split {
            crate::Split::Train => &self.train,
            crate::Split::Test => &self.test,
        }
    }
}

/// Read `dataset_dir/manifest.json` written by `ingest_zip`.
pub fn load_manifest(dataset_dir: &Path) -> Result<Manifest, IngestError> {
    let path = dataset_dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| IngestError::BadManifest {
        path,
        reason: e.to_string(),
    })
}

/// Write the manifest durably (the caller renames the directory into place afterwards).
pub(crate) fn write_manifest(dataset_dir: &Path, manifest: &Manifest) -> Result<(), IngestError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    let file = std::fs::File::create(dataset_dir.join(MANIFEST_FILE))?;
    std::io::Write::write_all(&mut &file, &json)?;
    file.sync_all()?;
    Ok(())
}
