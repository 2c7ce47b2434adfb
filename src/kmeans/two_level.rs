//! Two-level k-means for large nlist, as faiss's `two_level_clustering` does it: √k coarse
//! centroids first, then k-means inside each coarse cell with the cell's share of the k
//! centroids (proportional to its size). One iteration costs about n · 2√k distance
//! computations instead of n · k, which is what makes 2^20 lists trainable on a few cores.
//! Cells are trained in parallel, each with its own seed, so the result does not depend on the
//! number of threads.
//!
//! Centroids trained cell by cell never see the points just across a cell's border, which
//! leaves them a few percent worse than flat k-means (and the HNSW over them harder to probe).
//! A few refinement iterations fix that at a fraction of a flat iteration's cost: each point is
//! assigned to its nearest centroid among the centroids of its `REFINE_CELLS` nearest coarse
//! cells, and every centroid moves to the mean of its points.

use rayon::prelude::*;

use super::{assign_l2, gather, recenter, rows_for, train, with_f32, Element, KMeansError, KMeansParams};
use crate::distance;

/// Coarse cells searched for each point in a refinement iteration.
const REFINE_CELLS: usize = 8;

/// Parameters of the two-level trainer: the k-means parameters of both levels, how many
/// coarse cells to use (default √k), and the refinement iterations over all centroids.
#[derive(Clone, Debug)]
pub struct TwoLevelParams {
    pub kmeans: KMeansParams,
    /// Coarse cells; 0 = round(√k).
    pub coarse: usize,
    pub refine_iters: usize,
}

impl Default for TwoLevelParams {
    fn default() -> Self {
        TwoLevelParams { kmeans: KMeansParams::default(), coarse: 0, refine_iters: 2 }
    }
}

/// Trains `k` centroids on `x` (n × d) in two levels; returns k × d centroids, grouped by
/// coarse cell. `on_step(done, steps)` is called as each cell, then each refinement iteration,
/// finishes (steps = cells + refinement iterations), for progress.
pub fn train_two_level<T: Element>(
    x: &[T],
    d: usize,
    k: usize,
    params: &TwoLevelParams,
    on_cell: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<f32>, KMeansError> {
    let n = rows_for(x.len(), d, k)?;
    let k1 = if params.coarse > 0 { params.coarse } else { (k as f64).sqrt().round() as usize }.clamp(1, k);
    let km = &params.kmeans;
    let coarse = train(x, d, k1, km)?;
    let mut assign = vec![(0u32, 0f32); n];
    assign_l2(x, d, &coarse, &mut assign);

    // Rows grouped by cell (a counting sort keeps each cell's rows in input order).
    let mut starts = vec![0usize; k1 + 1];
    for &(c, _) in &assign {
        starts[c as usize + 1] += 1;
    }
    for c in 0..k1 {
        starts[c + 1] += starts[c];
    }
    let mut order = vec![0usize; n];
    let mut next = starts.clone();
    for (i, &(c, _)) in assign.iter().enumerate() {
        order[next[c as usize]] = i;
        next[c as usize] += 1;
    }
    drop(assign);
    let sizes: Vec<usize> = (0..k1).map(|c| starts[c + 1] - starts[c]).collect();
    let shares = shares(&sizes, k);

    let done = std::sync::atomic::AtomicUsize::new(0);
    let parts: Vec<Result<Vec<f32>, KMeansError>> = (0..k1)
        .into_par_iter()
        .map(|c| {
            let share = shares[c];
            let out = if share == 0 {
                Ok(Vec::new())
            } else {
                let rows = gather(x, d, &order[starts[c]..starts[c + 1]]);
                let p =
                    KMeansParams { seed: km.seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15), ..km.clone() };
                train(&rows, d, share, &p)
            };
            on_cell(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, k1 + params.refine_iters);
            out
        })
        .collect();
    let mut centroids = Vec::with_capacity(k * d);
    let mut cell_start = vec![0usize; k1 + 1];
    for (c, p) in parts.into_iter().enumerate() {
        centroids.extend_from_slice(&p?);
        cell_start[c + 1] = centroids.len() / d;
    }
    debug_assert_eq!(centroids.len(), k * d);
    drop(order);
    for i in 0..params.refine_iters {
        refine(x, d, &coarse, &cell_start, &mut centroids, km.spherical);
        on_cell(k1 + i + 1, k1 + params.refine_iters);
    }
    Ok(centroids)
}

/// One Lloyd iteration over all centroids with the assignment restricted to the centroids of
/// each point's nearest coarse cells. Points are grouped by the cells they probe, and each
/// cell's centroids searched as one tiled table over all its points at once, so a point costs
/// √k coarse distances plus `REFINE_CELLS` cells' worth of the k-means kernel.
fn refine<T: Element>(x: &[T], d: usize, coarse: &[f32], cell_start: &[usize], centroids: &mut [f32], spherical: bool) {
    let n = x.len() / d;
    let k = centroids.len() / d;
    let k1 = coarse.len() / d;
    let probe = REFINE_CELLS.min(k1);
    // Each point's `probe` nearest coarse cells.
    let probes: Vec<u32> = x
        .par_chunks(256 * d)
        .flat_map_iter(|rows| {
            let mut scratch = Vec::new();
            let mut cells: Vec<(f32, u32)> = Vec::with_capacity(k1);
            with_f32(rows, &mut scratch, |rows| {
                let mut out = Vec::with_capacity(rows.len() / d * probe);
                for r in rows.chunks_exact(d) {
                    cells.clear();
                    cells.extend(coarse.chunks_exact(d).enumerate().map(|(c, v)| (distance::l2_sqr(r, v), c as u32)));
                    cells.select_nth_unstable_by(probe - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    out.extend(cells[..probe].iter().map(|c| c.1));
                }
                out
            })
        })
        .collect();
    // Points by probed cell (a counting sort).
    let mut start = vec![0usize; k1 + 1];
    for &c in &probes {
        start[c as usize + 1] += 1;
    }
    for c in 0..k1 {
        start[c + 1] += start[c];
    }
    let mut members = vec![0u32; probes.len()];
    let mut next = start.clone();
    for (i, &c) in probes.iter().enumerate() {
        members[next[c as usize]] = (i / probe) as u32;
        next[c as usize] += 1;
    }
    drop(probes);
    // Each cell's nearest centroid for each of its points.
    let found: Vec<Vec<(u32, f32)>> = (0..k1)
        .into_par_iter()
        .map(|c| {
            let pts = &members[start[c]..start[c + 1]];
            let cents = &centroids[cell_start[c] * d..cell_start[c + 1] * d];
            let mut out = vec![(0u32, f32::INFINITY); pts.len()];
            if cents.is_empty() {
                return out;
            }
            let table = distance::NearestL2::new(cents, d);
            let mut rows = Vec::with_capacity(64 * d);
            let mut scratch = Vec::new();
            for (chunk, o) in pts.chunks(64).zip(out.chunks_mut(64)) {
                rows.clear();
                for &p in chunk {
                    with_f32(&x[p as usize * d..(p as usize + 1) * d], &mut scratch, |r| rows.extend_from_slice(r));
                }
                table.search(&rows, o);
                for v in o.iter_mut() {
                    v.0 += cell_start[c] as u32;
                }
            }
            out
        })
        .collect();
    let mut best = vec![(u32::MAX, f32::INFINITY); n];
    for (c, f) in found.iter().enumerate() {
        for (&p, &(j, dist)) in members[start[c]..start[c + 1]].iter().zip(f) {
            let b = &mut best[p as usize];
            if dist < b.1 || (dist == b.1 && j < b.0) {
                *b = (j, dist);
            }
        }
    }
    // A point whose probed cells hold no centroid (possible only for tiny cells) keeps
    // u32::MAX and stays out.
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0usize; k];
    recenter(x, d, best.into_iter().map(|b| b.0), centroids, &mut sums, &mut counts);
    if spherical {
        centroids.chunks_exact_mut(d).for_each(distance::normalize);
    }
}

/// Splits `k` centroids over cells in proportion to their sizes (largest remainder, ties to
/// the lower cell), never giving a cell more centroids than it has points. Needs Σ sizes ≥ k.
fn shares(sizes: &[usize], k: usize) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    let mut out: Vec<usize> = sizes.iter().map(|&s| ((k as u128 * s as u128) / n as u128) as usize).collect();
    let mut left = k - out.iter().sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..sizes.len()).collect();
    by_remainder.sort_by_key(|&c| std::cmp::Reverse((k as u128 * sizes[c] as u128) % n as u128));
    for &c in by_remainder.iter().cycle().take(by_remainder.len() * 2) {
        if left == 0 {
            break;
        }
        if out[c] < sizes[c] {
            out[c] += 1;
            left -= 1;
        }
    }
    // Any still left (cells saturated by the rounding above) go to the cells with room.
    for c in 0..sizes.len() {
        let room = sizes[c] - out[c];
        let add = room.min(left);
        out[c] += add;
        left -= add;
    }
    debug_assert_eq!(left, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn shares_are_proportional_bounded_and_sum_to_k() {
        let sizes = [100, 1, 0, 50, 7];
        for k in [1, 5, 20, 100, 158] {
            let s = shares(&sizes, k);
            assert_eq!(s.iter().sum::<usize>(), k, "{k}");
            assert!(s.iter().zip(&sizes).all(|(a, b)| a <= b), "{s:?}");
        }
        assert_eq!(shares(&sizes, 158), sizes.to_vec());
    }

    /// Within a few percent of flat k-means' objective (mean squared distance to the nearest
    /// centroid), deterministic, and shaped k × d.
    #[test]
    fn two_level_is_close_to_flat_and_deterministic() {
        let (n, d, k) = (20_000, 8, 256);
        let mut r = Rng::new(5);
        let centres: Vec<f32> = (0..64 * d).map(|_| 10.0 * r.normal() as f32).collect();
        let x: Vec<f32> = (0..n)
            .flat_map(|i| (0..d).map(|j| centres[(i % 64) * d + j] + r.normal() as f32).collect::<Vec<_>>())
            .collect();
        let km = KMeansParams { seed: 3, ..Default::default() };
        let p = TwoLevelParams { kmeans: km.clone(), ..Default::default() };
        let two = train_two_level(&x, d, k, &p, &|_, _| {}).unwrap();
        assert_eq!(two.len(), k * d);
        assert_eq!(two, train_two_level(&x, d, k, &p, &|_, _| {}).unwrap());
        let flat = train(&x, d, k, &km).unwrap();
        let mse = |c: &[f32]| {
            let mut a = vec![(0u32, 0f32); n];
            assign_l2(&x, d, c, &mut a);
            a.iter().map(|v| v.1 as f64).sum::<f64>() / n as f64
        };
        let (e2, e1) = (mse(&two), mse(&flat));
        assert!(e2 < e1 * 1.10, "two-level mse {e2} vs flat {e1}");
    }

    #[test]
    fn uint8_rows_train_like_their_float_copy() {
        let mut r = Rng::new(8);
        let x: Vec<u8> = (0..4000 * 4).map(|_| r.below(256) as u8).collect();
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let p = TwoLevelParams { kmeans: KMeansParams { seed: 2, ..Default::default() }, ..Default::default() };
        assert_eq!(
            train_two_level(&x, 4, 64, &p, &|_, _| {}).unwrap(),
            train_two_level(&xf, 4, 64, &p, &|_, _| {}).unwrap()
        );
    }
}
