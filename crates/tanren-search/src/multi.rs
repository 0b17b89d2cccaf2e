//! Multi-objective helpers: dominance, non-dominated sorting, crowding distance.
//!
//! Everything works on "losses" (each objective mapped so smaller is better), so directions are
//! handled once, in [`losses`].

use crate::config::Direction;
use crate::study::TrialRecord;

/// A complete trial's values as losses (smaller is better; NaN counts as worst).
pub(crate) fn losses(directions: &[Direction], t: &TrialRecord) -> Vec<f64> {
    let values = t.values.as_deref().unwrap_or(&[]);
    directions.iter().zip(values).map(|(d, &v)| d.loss(v)).collect()
}

/// `a` dominates `b`: no worse everywhere and better somewhere.
pub(crate) fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// Indices of the non-dominated points, ascending.
pub(crate) fn first_front(points: &[Vec<f64>]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| !points.iter().any(|q| dominates(q, &points[i])))
        .collect()
}

/// Non-dominated rank of every point (0 = Pareto front), by repeatedly peeling fronts.
/// Stops early once at least `enough` points are ranked; the rest get `usize::MAX`.
pub(crate) fn ranks(points: &[Vec<f64>], enough: usize) -> Vec<usize> {
    let n = points.len();
    let mut rank = vec![usize::MAX; n];
    // Domination counts and dominated lists: Deb's fast non-dominated sort, O(m n^2).
    let mut dominated_by_count = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in (i + 1)..n {
            if dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by_count[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominates_list[j].push(i);
                dominated_by_count[i] += 1;
            }
        }
    }
    let mut front: Vec<usize> = (0..n).filter(|&i| dominated_by_count[i] == 0).collect();
    let mut r = 0;
    let mut ranked = 0;
    while !front.is_empty() && ranked < enough.max(1) {
        let mut next = Vec::new();
        for &i in &front {
            rank[i] = r;
            ranked += 1;
            for &j in &dominates_list[i] {
                dominated_by_count[j] -= 1;
                if dominated_by_count[j] == 0 {
                    next.push(j);
                }
            }
        }
        front = next;
        r += 1;
    }
    rank
}

/// Crowding distance of each point within one front (boundary points get infinity), used to
/// prefer spread-out points when a front must be cut.
pub(crate) fn crowding(points: &[&[f64]]) -> Vec<f64> {
    let n = points.len();
    let mut dist = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let m = points[0].len();
    #[allow(clippy::needless_range_loop)] // `k` indexes the objective inside every point
    for k in 0..m {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| points[a][k].total_cmp(&points[b][k]));
        let (lo, hi) = (points[idx[0]][k], points[idx[n - 1]][k]);
        dist[idx[0]] = f64::INFINITY;
        dist[idx[n - 1]] = f64::INFINITY;
        let span = hi - lo;
        if span > 0.0 && span.is_finite() {
            for w in 1..n - 1 {
                dist[idx[w]] += (points[idx[w + 1]][k] - points[idx[w - 1]][k]) / span;
            }
        }
    }
    dist
}

/// Order of points from best to worst: by rank, then by crowding distance (larger first), then
/// by index for determinism.
pub(crate) fn elite_order(points: &[Vec<f64>], enough: usize) -> Vec<usize> {
    let rank = ranks(points, enough);
    let mut crowd = vec![0.0; points.len()];
    let max_rank = rank.iter().filter(|&&r| r != usize::MAX).max().copied();
    for r in 0..=max_rank.unwrap_or(0) {
        let members: Vec<usize> = (0..points.len()).filter(|&i| rank[i] == r).collect();
        let pts: Vec<&[f64]> = members.iter().map(|&i| points[i].as_slice()).collect();
        for (&i, c) in members.iter().zip(crowding(&pts)) {
            crowd[i] = c;
        }
    }
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        rank[a]
            .cmp(&rank[b])
            .then(crowd[b].total_cmp(&crowd[a]))
            .then(a.cmp(&b))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_and_ranks() {
        let pts = vec![
            vec![1.0, 4.0],
            vec![2.0, 2.0],
            vec![4.0, 1.0],
            vec![3.0, 3.0],
            vec![5.0, 5.0],
        ];
        assert_eq!(first_front(&pts), vec![0, 1, 2]);
        assert_eq!(ranks(&pts, usize::MAX), vec![0, 0, 0, 1, 2]);
        let order = elite_order(&pts, usize::MAX);
        assert_eq!(&order[3..], &[3, 4]);
        // The middle point of the first front is the most crowded, so it comes last among them.
        assert_eq!(order[2], 1);
    }
}
