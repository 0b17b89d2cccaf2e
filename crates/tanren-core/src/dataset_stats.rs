//! What a dataset looks like, as the advisor and the warnings about bounds read it: image sizes,
//! colour, classes and their balance. `tanren-dataset` measures the images; this is the summary.

use serde::{Deserialize, Serialize};

/// Minimum, median and maximum of one quantity over all images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub min: u32,
    pub median: u32,
    pub max: u32,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &mut [u32]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        Some(Spread {
            min: values[0],
            median: values[values.len() / 2],
            max: values[values.len() - 1],
        })
    }
}

/// Statistics of the usable images of a dataset (train and test together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    pub images: usize,
    pub width: Spread,
    pub height: Spread,
    /// The smaller side of each image: what a square resize keeps of the detail.
    pub short_side: Spread,
    /// Images whose pixels carry colour (an RGB image with equal channels everywhere counts as grey).
    pub colour_images: usize,
    pub greyscale_images: usize,
    /// `colour`, `greyscale` or `mixed` (neither is at least 95% of the images).
    pub colour_mode: String,
    pub classes: usize,
    /// Images per class (train + test), by class index.
    pub per_class: Vec<usize>,
    /// Training images per class, by class index.
    pub train_per_class: Vec<usize>,
    /// Largest class divided by smallest class (1.0 is perfectly balanced; an empty class counts as 1).
    pub imbalance: f64,
}

/// What one decoded image contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub colour: bool,
}

impl DatasetStats {
    /// `infos` and `labels` are parallel: one entry per usable image.
    pub fn from_images(
        infos: &[ImageInfo],
        labels: &[usize],
        train_labels: &[usize],
        classes: usize,
    ) -> DatasetStats {
        let mut w: Vec<u32> = infos.iter().map(|i| i.width).collect();
        let mut h: Vec<u32> = infos.iter().map(|i| i.height).collect();
        let mut s: Vec<u32> = infos.iter().map(|i| i.width.min(i.height)).collect();
        let zero = Spread {
            min: 0,
            median: 0,
            max: 0,
        };
        let colour_images = infos.iter().filter(|i| i.colour).count();
        let greyscale_images = infos.len() - colour_images;
        let n = infos.len().max(1) as f64;
        let colour_mode = if colour_images as f64 >= 0.95 * n {
            "colour"
        } else if greyscale_images as f64 >= 0.95 * n {
            "greyscale"
        } else {
            "mixed"
        };
        let count = |ls: &[usize]| {
            let mut c = vec![0usize; classes];
            ls.iter().filter(|&&l| l < classes).for_each(|&l| c[l] += 1);
            c
        };
        let per_class = count(labels);
        let (lo, hi) = (
            per_class.iter().copied().min().unwrap_or(0),
            per_class.iter().copied().max().unwrap_or(0),
        );
        DatasetStats {
            images: infos.len(),
            width: Spread::of(&mut w).unwrap_or(zero),
            height: Spread::of(&mut h).unwrap_or(zero),
            short_side: Spread::of(&mut s).unwrap_or(zero),
            colour_images,
            greyscale_images,
            colour_mode: colour_mode.into(),
            classes,
            per_class,
            train_per_class: count(train_labels),
            imbalance: hi as f64 / lo.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_balance() {
        let info = |width, height, colour| ImageInfo {
            width,
            height,
            colour,
        };
        let infos = [info(28, 28, false), info(32, 20, false), info(64, 30, true)];
        let s = DatasetStats::from_images(&infos, &[0, 0, 1], &[0, 1], 2);
        assert_eq!(
            s.width,
            Spread {
                min: 28,
                median: 32,
                max: 64
            }
        );
        assert_eq!(
            s.short_side,
            Spread {
                min: 20,
                median: 28,
                max: 30
            }
        );
        assert_eq!((s.colour_images, s.greyscale_images), (1, 2));
        assert_eq!(s.colour_mode, "mixed");
        assert_eq!(s.per_class, vec![2, 1]);
        assert_eq!(s.train_per_class, vec![1, 1]);
        assert_eq!(s.imbalance, 2.0);
    }
}
