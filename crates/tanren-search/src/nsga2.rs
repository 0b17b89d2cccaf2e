//! NSGA-II sampler for multi-objective studies (works with one objective as a plain GA).
//!
//! Generations are defined by trial number (`number / population_size`) rather than by
//! completion order, so the sampler needs no stored state: the parents of generation `g` are
//! the elite (non-dominated rank, then crowding distance) of all complete trials numbered
//! before `g * population_size`. Children come from binary tournaments, uniform crossover and
//! per-parameter mutation, as in Optuna's `NSGAIISampler` defaults.

use crate::config::{SamplerConfig, StudyConfig};
use crate::multi;
use crate::random::{sample_params, sample_value};
use crate::rng::Rng;
use crate::space::Params;
use crate::study::{TrialRecord, TrialStatus};

pub(crate) fn suggest(config: &StudyConfig, trials: &[TrialRecord], number: u64, rng: &mut Rng) -> Params {
    let SamplerConfig::Nsga2 {
        population_size,
        mutation_prob,
        crossover_prob,
        swapping_prob,
    } = config.sampler
    else {
        unreachable!("nsga2::suggest called for another sampler")
    };
    let generation = number / population_size as u64;
    let boundary = generation * population_size as u64;
    let pool: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.number < boundary && t.status == TrialStatus::Complete && t.values.is_some())
        .collect();
    if pool.len() < 2 {
        return sample_params(&config.space, rng);
    }
    let points: Vec<Vec<f64>> = pool
        .iter()
        .map(|t| multi::losses(&config.directions, t))
        .collect();
    let order = multi::elite_order(&points, population_size);
    let parents: Vec<&TrialRecord> = order.iter().take(population_size).map(|&i| pool[i]).collect();

    // Binary tournament: parents are already in elite order, so the lower index wins.
    let mut tournament = || {
        let a = rng.below(parents.len() as u64) as usize;
        let b = rng.below(parents.len() as u64) as usize;
        a.min(b)
    };
    let p1 = parents[tournament()];
    let p2 = parents[tournament()];
    let n_params = config.space.params().len().max(1);
    let mutation = mutation_prob.unwrap_or(1.0 / n_params as f64);
    let crossover = rng.f64() < crossover_prob;

    let mut child = Params::new();
    for def in config.space.params() {
        if !config.space.is_active(def, &child) {
            continue;
        }
        let from_second = crossover && rng.f64() < swapping_prob;
        let (first, second) = if from_second { (p2, p1) } else { (p1, p2) };
        let inherited = first
            .params
            .get(&def.name)
            .or_else(|| second.params.get(&def.name));
        let value = match inherited {
            Some(v) if rng.f64() >= mutation => v.clone(),
            // Mutated, or the parameter was inactive in both parents (a new branch was taken).
            _ => sample_value(&def.distribution, rng),
        };
        child.insert(def.name.clone(), value);
    }
    child
}
