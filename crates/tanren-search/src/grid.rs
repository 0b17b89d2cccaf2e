//! Grid search: exact size of a (possibly conditional) discrete space and an index→config map.
//!
//! The grid is never materialised: configuration `i` is decoded on demand, so even a large grid
//! costs no memory, and the next unvisited point can be recomputed from the trial records alone
//! (restarts need no stored cursor).

use crate::rng::{purpose, Rng};
use crate::space::{Distribution, ParamValue, Params, Space};
use std::collections::HashSet;

/// Above this many configurations a grid study is refused: it could never be finished.
pub const GRID_LIMIT: u128 = 1_000_000;

/// Int parents with more values than this are not enumerated when counting sub-spaces.
const MAX_ENUMERATED_PARENT: i64 = 1_000_000;

pub(crate) struct GridShape<'a> {
    space: &'a Space,
    /// Direct conditional children of each parameter.
    children: Vec<Vec<usize>>,
    /// Number of configurations of the subtree rooted at each parameter (itself + descendants).
    counts: Vec<u128>,
    roots: Vec<usize>,
}

fn n_values(dist: &Distribution) -> Option<u128> {
    match dist {
        Distribution::Float { .. } => None,
        Distribution::Int { low, high, step, .. } => Some(((high - low) / step.unwrap_or(1)) as u128 + 1),
        Distribution::Categorical { choices } => Some(choices.len() as u128),
    }
}

fn value_at(dist: &Distribution, k: u128) -> ParamValue {
    match dist {
        Distribution::Int { low, step, .. } => ParamValue::Int(low + k as i64 * step.unwrap_or(1)),
        Distribution::Categorical { choices } => ParamValue::Cat(choices[k as usize].clone()),
        Distribution::Float { .. } => unreachable!("grid shapes have no float parameters"),
    }
}

impl<'a> GridShape<'a> {
    pub(crate) fn new(space: &'a Space) -> Option<GridShape<'a>> {
        let defs = space.params();
        let mut children = vec![Vec::new(); defs.len()];
        let mut roots = Vec::new();
        for (i, def) in defs.iter().enumerate() {
            n_values(&def.distribution)?;
            match &def.condition {
                Some(c) => children[space.index_of(&c.parent)?].push(i),
                None => roots.push(i),
            }
        }
        let mut shape = GridShape {
            space,
            children,
            counts: vec![0; defs.len()],
            roots,
        };
        // Children are defined after their parents, so filling from the back sees every child's
        // count before its parent needs it.
        for i in (0..defs.len()).rev() {
            shape.counts[i] = shape.count_param(i);
        }
        Some(shape)
    }

    fn count_param(&self, p: usize) -> u128 {
        let dist = &self.space.params()[p].distribution;
        let n = n_values(dist).unwrap_or(0);
        if self.children[p].is_empty() {
            return n;
        }
        if n > MAX_ENUMERATED_PARENT as u128 {
            return u128::MAX;
        }
        (0..n).fold(0u128, |acc, k| {
            acc.saturating_add(self.weight(p, &value_at(dist, k)))
        })
    }

    /// Configurations of `p`'s children when `p` takes `value`.
    fn weight(&self, p: usize, value: &ParamValue) -> u128 {
        self.children[p].iter().fold(1u128, |acc, &c| {
            let cond = self.space.params()[c]
                .condition
                .as_ref()
                .expect("child has condition");
            if cond.holds(value) {
                acc.saturating_mul(self.counts[c])
            } else {
                acc
            }
        })
    }

    pub(crate) fn size(&self) -> u128 {
        self.roots
            .iter()
            .fold(1u128, |acc, &r| acc.saturating_mul(self.counts[r]))
    }

    /// Configuration number `index` (< `size()`).
    pub(crate) fn decode(&self, index: u128) -> Params {
        let mut out = Params::new();
        self.decode_list(&self.roots.clone(), index, &mut out);
        out
    }

    fn decode_list(&self, list: &[usize], mut index: u128, out: &mut Params) {
        for &p in list {
            let radix = self.counts[p];
            self.decode_param(p, index % radix, out);
            index /= radix;
        }
    }

    fn decode_param(&self, p: usize, mut j: u128, out: &mut Params) {
        let def = &self.space.params()[p];
        if self.children[p].is_empty() {
            out.insert(def.name.clone(), value_at(&def.distribution, j));
            return;
        }
        let n = n_values(&def.distribution).unwrap_or(0);
        for k in 0..n {
            let value = value_at(&def.distribution, k);
            let w = self.weight(p, &value);
            if j < w {
                let active: Vec<usize> = self.children[p]
                    .iter()
                    .copied()
                    .filter(|&c| {
                        self.space.params()[c]
                            .condition
                            .as_ref()
                            .is_some_and(|cd| cd.holds(&value))
                    })
                    .collect();
                out.insert(def.name.clone(), value);
                self.decode_list(&active, j, out);
                return;
            }
            j -= w;
        }
        unreachable!("grid index within the subtree's count");
    }
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Canonical key of a configuration, for the visited set.
pub(crate) fn key(params: &Params) -> String {
    serde_json::to_string(params).unwrap_or_default()
}

/// The grid point to serve next: walks a seeded affine permutation of the grid (so a partially
/// run grid covers the space evenly rather than varying the first parameter only) and returns the
/// first configuration no trial has used yet, or `None` when the grid is exhausted.
///
/// `cursor` is only a speed-up: every position before it is known to be visited. Starting from 0
/// (as after a restart) gives the same answer, just more slowly.
pub(crate) fn next_point(
    space: &Space,
    seed: u64,
    visited: &HashSet<String>,
    cursor: &mut u128,
) -> Option<Params> {
    let shape = GridShape::new(space)?;
    let n = shape.size();
    if n == 0 {
        return None;
    }
    let mut rng = Rng::for_trial(seed, 0, purpose::GRID);
    let mut a = 1 + (rng.next_u64() as u128) % n.max(1);
    while gcd(a % n, n) != 1 {
        a += 1;
    }
    let b = rng.next_u64() as u128 % n;
    while *cursor < n {
        let p = shape.decode((a % n * *cursor + b) % n);
        if !visited.contains(&key(&p)) {
            return Some(p);
        }
        *cursor += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Condition, ParamDef};

    fn cat(name: &str, choices: &[&str], condition: Option<Condition>) -> ParamDef {
        ParamDef {
            name: name.into(),
            distribution: Distribution::Categorical {
                choices: choices.iter().map(|s| s.to_string()).collect(),
            },
            condition,
        }
    }

    #[test]
    fn conditional_grid_size_and_full_enumeration() {
        let space = Space::new(vec![
            cat("opt", &["sgd", "adam"], None),
            cat(
                "momentum",
                &["0.0", "0.9", "0.99"],
                Some(Condition {
                    parent: "opt".into(),
                    values: vec!["sgd".into()],
                    min: None,
                    max: None,
                }),
            ),
            ParamDef {
                name: "blocks".into(),
                distribution: Distribution::Int {
                    low: 1,
                    high: 3,
                    log: false,
                    step: None,
                },
                condition: None,
            },
            cat(
                "third",
                &["a", "b"],
                Some(Condition {
                    parent: "blocks".into(),
                    values: vec![],
                    min: Some(3),
                    max: None,
                }),
            ),
        ])
        .unwrap();
        // opt: sgd→3 + adam→1 = 4; blocks: 1 + 1 + 2 = 4; total 16.
        assert_eq!(space.grid_size(), Some(16));
        let shape = GridShape::new(&space).unwrap();
        let all: HashSet<String> = (0..16).map(|i| key(&shape.decode(i))).collect();
        assert_eq!(all.len(), 16);
        for i in 0..16 {
            space.validate_params(&shape.decode(i)).unwrap();
        }
        let mut visited = HashSet::new();
        let mut cursor = 0;
        while let Some(p) = next_point(&space, 5, &visited, &mut cursor) {
            visited.insert(key(&p));
        }
        assert_eq!(visited, all);
    }
}
