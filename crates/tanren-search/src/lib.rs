//! tanren-search: search spaces, samplers (random, grid, TPE, NSGA-II) and pruners (median,
//! ASHA, Hyperband) behind an ask/tell [`Study`], and parameter importance (PED-ANOVA) over a
//! study's trials.
//!
//! Architecture invariant: this crate does no IO and has no async or GPU dependencies. Given a
//! [`StudyConfig`] (which includes the seed) and the trial records, every suggestion and every
//! pruning decision is determined, so a study restored from storage behaves as if it had never
//! stopped.

mod config;
mod fanova;
mod grid;
pub mod importance;
mod multi;
mod nsga2;
mod pruner;
mod qmc;
mod random;
mod rng;
mod sampler;
pub mod space;
pub mod study;
mod tpe;

pub use grid::GRID_LIMIT;
pub use space::*;
pub use study::*;
