//! What a dataset looks like, for the advisor and for warnings about bounds: image sizes, colour,
//! classes and their balance. Computed at ingest from the images ingest decodes anyway, and stored in
//! the manifest; datasets ingested before this existed get it computed on first use and cached in
//! `stats.json` beside their manifest.

use std::path::Path;

use image::{DynamicImage, ImageReader};
use rayon::prelude::*;
pub use tanren_core::dataset_stats::{DatasetStats, ImageInfo, Spread};

use crate::manifest::Manifest;
use crate::IngestError;

/// File holding the statistics of a dataset whose manifest predates them.
pub const STATS_FILE: &str = "stats.json";

/// Size and colour of one decoded image.
pub fn image_info(img: &DynamicImage) -> ImageInfo {
    let colour = match img {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => false,
        // Greyscale saved as RGB (common for JPEGs): colour only if some pixel has distinct
        // channels (a few units of tolerance for JPEG's chroma noise).
        other => other
            .to_rgb8()
            .pixels()
            .any(|p| p[0].abs_diff(p[1]) > 8 || p[1].abs_diff(p[2]) > 8),
    };
    ImageInfo {
        width: img.width(),
        height: img.height(),
        colour,
    }
}

/// Decode every image of an ingested dataset (in parallel) and summarise it.
pub fn compute(dataset_dir: &Path, manifest: &Manifest) -> Result<DatasetStats, IngestError> {
    let samples: Vec<_> = manifest.train.iter().chain(&manifest.test).collect();
    let infos = samples
        .par_iter()
        .map(|s| {
            let path = dataset_dir.join(&s.path);
            let img = ImageReader::open(&path)?
                .with_guessed_format()?
                .decode()
                .map_err(|e| IngestError::Decode {
                    path: s.path.clone(),
                    reason: e.to_string(),
                })?;
            Ok(image_info(&img))
        })
        .collect::<Result<Vec<_>, IngestError>>()?;
    let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
    let train: Vec<usize> = manifest.train.iter().map(|s| s.label).collect();
    Ok(DatasetStats::from_images(
        &infos,
        &labels,
        &train,
        manifest.classes.len(),
    ))
}

/// The statistics of an ingested dataset: from its manifest, else from `stats.json`, else computed
/// now (decoding every image once) and written to `stats.json` for next time.
pub fn load_or_compute(dataset_dir: &Path, manifest: &Manifest) -> Result<DatasetStats, IngestError> {
    if let Some(s) = &manifest.stats {
        return Ok(s.clone());
    }
    let path = dataset_dir.join(STATS_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(s) = serde_json::from_slice(&bytes) {
            return Ok(s);
        }
    }
    let stats = compute(dataset_dir, manifest)?;
    // Written beside, then renamed: a reader never sees half a file. A failure to cache is not fatal.
    let tmp = dataset_dir.join(format!(".{STATS_FILE}.{}", std::process::id()));
    if let Ok(json) = serde_json::to_vec_pretty(&stats) {
        if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_stored_as_rgb_is_grey() {
        let grey = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9])));
        assert!(!image_info(&grey).colour);
        let mut red = image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]));
        red.put_pixel(1, 1, image::Rgb([200, 10, 10]));
        assert!(image_info(&DynamicImage::ImageRgb8(red)).colour);
    }
}
