//! tanren-dataset: turns an uploaded zip of image folders into a checked dataset directory, and
//! decodes that dataset once into packed uint8 tensors for training. No torch, no async: the control
//! plane calls `ingest_zip` from `spawn_blocking`, the worker calls `cache::load_or_build`.
//!
//! Architecture invariant: nothing a zip says (entry names, declared sizes) decides where a file is
//! written or how much is read; the dataset directory appears only once everything has been checked.

pub mod cache;
mod eocd;
mod error;
pub mod ingest;
mod layout;
pub mod manifest;
pub mod split;
pub mod stats;

pub use cache::{decode_resize, load_or_build, CacheStatus, Packed, Split};
pub use error::IngestError;
pub use ingest::{ingest_zip, ingest_zip_cancellable, Limits};
pub use manifest::{load_manifest, ClassInfo, Layout, Manifest, Sample, Skipped};
pub use split::stratified_split;
pub use stats::{DatasetStats, ImageInfo};
