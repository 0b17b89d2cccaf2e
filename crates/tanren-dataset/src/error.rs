//! The one error type of this crate. Every variant caused by the upload's content is a "client error"
//! (the HTTP layer maps it to a 4xx with `code()` and the message); the rest are the server's problem.
//! Messages name the offending entry and say what to do, because they are shown to the person uploading.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the upload is not a readable zip archive ({0}); upload a .zip file")]
    NotAZip(String),
    #[error("zip entry `{entry}` could not be read ({reason}); re-create the zip and upload it again")]
    CorruptEntry { entry: String, reason: String },
    #[error("zip entry `{entry}` uses an unsupported compression method ({method}); re-create the zip with the standard 'deflate' or 'store' method")]
    UnsupportedCompression { entry: String, method: String },
    #[error("zip entry `{entry}` is encrypted; upload a zip without a password")]
    Encrypted { entry: String },
    #[error("zip entry `{entry}` has an unsafe path (absolute, drive letter, backslash, control character or `..`); re-create the zip from a folder with plain relative paths")]
    UnsafePath { entry: String },
    #[error("zip entry `{entry}` is a symbolic link; replace links with the files themselves")]
    Symlink { entry: String },
    #[error("the zip has {count} entries, more than the limit of {limit}; upload fewer files")]
    TooManyEntries { count: usize, limit: usize },
    #[error("zip entry `{entry}` is {size} bytes uncompressed (or more), past the limit of {limit} bytes per file; shrink that file")]
    EntryTooLarge { entry: String, size: u64, limit: u64 },
    #[error("the zip expands to more than {limit} bytes; upload a smaller dataset")]
    TooLargeUncompressed { limit: u64 },
    #[error("zip entry `{entry}` expands {ratio}x (limit {limit}x), which looks like a zip bomb; store such files in a compressed image format (PNG/JPEG)")]
    SuspiciousRatio { entry: String, ratio: u64, limit: u64 },
    #[error("image `{entry}` declares {width}x{height} pixels, past the limit of {max_pixels} pixels and {max_dimension} per side; downscale it")]
    ImageTooLarge {
        entry: String,
        width: u32,
        height: u32,
        max_pixels: u64,
        max_dimension: u32,
    },
    #[error(
        "the upload was cancelled before its ingest finished (the client went away); nothing was stored"
    )]
    Cancelled,
    #[error("unrecognised layout: {0}")]
    UnknownLayout(String),
    #[error("found {} class folder(s) with images {at}{}, need at least 2; put each class's images in its own folder", found.len(), named(found))]
    TooFewClasses {
        /// The class folders found (canonical names).
        found: Vec<String>,
        /// Where they were looked for: "at the zip's top level" or "in `outer/inner/`".
        at: String,
    },
    #[error("train and test have different classes (only in train: {only_train:?}; only in test: {only_test:?}); give both splits the same class folders")]
    ClassMismatch {
        only_train: Vec<String>,
        only_test: Vec<String>,
    },
    #[error("class `{class}` has no usable images in the {split} split; add images (a class needs at least 2 images to be split 80/20)")]
    EmptyClass { class: String, split: String },
    #[error("invalid parameter: {0}")]
    BadParameter(String),
    #[error("output directory {0} already exists")]
    OutputExists(PathBuf),
    #[error("manifest {path} is unreadable: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("dataset file `{path}` could not be decoded although ingest accepted it: {reason}")]
    Decode { path: String, reason: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// ` (`a`, `b`)` for a non-empty list of names, "" otherwise.
fn named(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!(" ({})", quoted.join(", "))
}

impl IngestError {
    /// True when the upload (or the caller's request) is at fault, i.e. a 4xx; false for server faults.
    /// Exhaustive on purpose: a new variant must be classified here.
    pub fn is_client_error(&self) -> bool {
        use IngestError::*;
        match self {
            NotAZip(_)
            | CorruptEntry { .. }
            | UnsupportedCompression { .. }
            | Encrypted { .. }
            | UnsafePath { .. }
            | Symlink { .. }
            | TooManyEntries { .. }
            | EntryTooLarge { .. }
            | TooLargeUncompressed { .. }
            | SuspiciousRatio { .. }
            | ImageTooLarge { .. }
            | UnknownLayout(_)
            | TooFewClasses { .. }
            | ClassMismatch { .. }
            | EmptyClass { .. }
            | BadParameter(_)
            | Cancelled => true,
            OutputExists(_) | BadManifest { .. } | Decode { .. } | Io(_) => false,
        }
    }

    /// Stable snake_case code for API clients; never change an existing one.
    pub fn code(&self) -> &'static str {
        use IngestError::*;
        match self {
            NotAZip(_) => "not_a_zip",
            CorruptEntry { .. } => "corrupt_entry",
            UnsupportedCompression { .. } => "unsupported_compression",
            Encrypted { .. } => "encrypted",
            UnsafePath { .. } => "unsafe_path",
            Symlink { .. } => "symlink",
            TooManyEntries { .. } => "too_many_entries",
            EntryTooLarge { .. } => "entry_too_large",
            TooLargeUncompressed { .. } => "too_large_uncompressed",
            SuspiciousRatio { .. } => "suspicious_ratio",
            ImageTooLarge { .. } => "image_too_large",
            UnknownLayout(_) => "unknown_layout",
            TooFewClasses { .. } => "too_few_classes",
            ClassMismatch { .. } => "class_mismatch",
            EmptyClass { .. } => "empty_class",
            BadParameter(_) => "bad_parameter",
            Cancelled => "cancelled",
            OutputExists(_) => "output_exists",
            BadManifest { .. } => "bad_manifest",
            Decode { .. } => "decode",
            Io(_) => "io",
        }
    }
}
