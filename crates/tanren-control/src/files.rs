//! Where the control plane keeps files, one place: `<data>/uploads` (in-flight uploads),
//! `<data>/datasets/<sha256>.zip` (the upload, served to workers) and `<data>/datasets/<sha256>/`
//! (validated extraction + manifest), `<data>/models/<trial_id>/model.safetensors`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    pub fn new(root: &Path) -> std::io::Result<Files> {
        for d in ["uploads", "datasets", "models"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(Files {
            root: root.to_path_buf(),
        })
    }

    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn dataset_zip(&self, sha: &str) -> PathBuf {
        self.root.join("datasets").join(format!("{sha}.zip"))
    }

    pub fn dataset_dir(&self, sha: &str) -> PathBuf {
        self.root.join("datasets").join(sha)
    }

    pub fn model_dir(&self, trial_id: i64) -> PathBuf {
        self.root.join("models").join(trial_id.to_string())
    }

    pub fn weights(&self, trial_id: i64) -> PathBuf {
        self.model_dir(trial_id).join("model.safetensors")
    }
}
