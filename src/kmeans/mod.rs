//! Lloyd's k-means as faiss's `Clustering` runs it for IVF training: random initial centroids
//! from a seeded permutation (no k-means++: nlist passes over the data are unaffordable at 65,536
//! lists), at most `max_points_per_centroid` training points per centroid (sampled down beyond),
//! empty clusters re-seeded by splitting a large one, and spherical k-means (centroids
//! re-normalised each iteration) for inner-product indexes.
//!
//! Assignment is always squared L2, as faiss's HNSW-quantizer training does (it clusters with a
//! flat L2 index); on normalised data and normalised centroids that is the same argmin as IP.

mod two_level;

pub use two_level::{train_two_level, TwoLevelParams};

use rayon::prelude::*;

use crate::distance;
use crate::rng::Rng;

/// An element type training rows may be kept in: the input's own (a uint8 sample stays uint8,
/// a quarter of the memory of float32), widened to f32 a block at a time where arithmetic
/// needs it.
pub trait Element: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    /// The slice itself when it already is f32 (no copy needed).
    fn as_f32(x: &[Self]) -> Option<&[f32]>;
}

impl Element for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    fn as_f32(x: &[Self]) -> Option<&[f32]> {
        Some(x)
    }
}

impl Element for u8 {
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
}

impl Element for i8 {
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
}

/// Calls `f` with `rows` as f32: the slice itself, or a widened copy in `scratch`.
pub fn with_f32<T: Element, R>(rows: &[T], scratch: &mut Vec<f32>, f: impl FnOnce(&[f32]) -> R) -> R {
    match T::as_f32(rows) {
        Some(x) => f(x),
        None => {
            scratch.clear();
            scratch.extend(rows.iter().map(|v| v.to_f32()));
            f(scratch)
        }
    }
}

/// Parameters, named and defaulted as in faiss's `ClusteringParameters`.
#[derive(Clone, Debug)]
pub struct KMeansParams {
    pub niter: usize,
    pub max_points_per_centroid: usize,
    pub spherical: bool,
    pub seed: u64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams { niter: 10, max_points_per_centroid: 256, spherical: false, seed: 1234 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KMeansError {
    #[error("k-means needs at least as many training points as clusters: {n} points for {k} clusters")]
    TooFewPoints { n: usize, k: usize },
    #[error("k-means needs k > 0 and dimension > 0 (got k = {k}, d = {d})")]
    Empty { k: usize, d: usize },
}

/// Trains `k` centroids on `x` (n × d, row-major). Returns k × d centroids.
pub fn train<T: Element>(x: &[T], d: usize, k: usize, params: &KMeansParams) -> Result<Vec<f32>, KMeansError> {
    train_with(x, d, k, params, &|_| {})
}

/// [`train`], calling `on_iter(i)` after iteration `i` (for progress reporting).
pub fn train_with<T: Element>(
    x: &[T],
    d: usize,
    k: usize,
    params: &KMeansParams,
    on_iter: &(dyn Fn(usize) + Sync),
) -> Result<Vec<f32>, KMeansError> {
    let n = rows_for(x.len(), d, k)?;
    let mut rng = Rng::new(params.seed);
    let cap = k.saturating_mul(params.max_points_per_centroid.max(1));
    let sampled;
    let x: &[T] = if n > cap {
        sampled = gather(x, d, &rng.sample_indices(n, cap));
        &sampled
    } else {
        x
    };
    let n = x.len() / d;
    let mut centroids: Vec<f32> =
        gather(x, d, &rng.permutation_prefix(n, k)).into_iter().map(Element::to_f32).collect();
    if params.spherical {
        centroids.chunks_exact_mut(d).for_each(distance::normalize);
    }
    let mut assign = vec![(0u32, 0f32); n];
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0usize; k];
    for iter in 0..params.niter {
        assign_l2(x, d, &centroids, &mut assign);
        recenter(x, d, assign.iter().map(|a| a.0), &mut centroids, &mut sums, &mut counts);
        split_empty_clusters(&mut centroids, &mut counts, d, n, &mut rng);
        if params.spherical {
            centroids.chunks_exact_mut(d).for_each(distance::normalize);
        }
        on_iter(iter);
    }
    Ok(centroids)
}

/// The number of rows of an n × d slice of `len` values, checked to be enough for `k`
/// clusters.
pub(crate) fn rows_for(len: usize, d: usize, k: usize) -> Result<usize, KMeansError> {
    if k == 0 || d == 0 {
        return Err(KMeansError::Empty { k, d });
    }
    let n = len / d;
    if n < k {
        return Err(KMeansError::TooFewPoints { n, k });
    }
    Ok(n)
}

/// Moves every centroid to the mean of the rows assigned to it (`assign` gives each row's
/// centroid; `u32::MAX` leaves a row out); a centroid with no row stays where it is. `sums`
/// and `counts` are scratch (k × d and k); `counts` is left holding each centroid's rows.
pub(crate) fn recenter<T: Element>(
    x: &[T],
    d: usize,
    assign: impl Iterator<Item = u32>,
    centroids: &mut [f32],
    sums: &mut [f64],
    counts: &mut [usize],
) {
    sums.iter_mut().for_each(|s| *s = 0.0);
    counts.iter_mut().for_each(|c| *c = 0);
    for (row, c) in x.chunks_exact(d).zip(assign) {
        if c == u32::MAX {
            continue;
        }
        counts[c as usize] += 1;
        for (s, &v) in sums[c as usize * d..(c as usize + 1) * d].iter_mut().zip(row) {
            *s += v.to_f32() as f64;
        }
    }
    for (c, &count) in counts.iter().enumerate() {
        if count > 0 {
            let inv = 1.0 / count as f64;
            for j in 0..d {
                centroids[c * d + j] = (sums[c * d + j] * inv) as f32;
            }
        }
    }
}

/// Nearest centroid (squared L2) for every row of `x`, in parallel.
pub fn assign_l2<T: Element>(x: &[T], d: usize, centroids: &[f32], out: &mut [(u32, f32)]) {
    let table = distance::NearestL2::new(centroids, d);
    const BLOCK: usize = 64;
    out.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK * d))
        .for_each_init(Vec::new, |scratch, (o, xs)| with_f32(xs, scratch, |xs| table.search(xs, o)));
}

/// faiss's remedy for an empty cluster: copy a cluster chosen with probability proportional to
/// its size, nudge the two copies apart by a relative ε in opposite directions, split its count.
fn split_empty_clusters(centroids: &mut [f32], counts: &mut [usize], d: usize, n: usize, rng: &mut Rng) {
    const EPS: f32 = 1.0 / 1024.0;
    let k = counts.len();
    if n <= k {
        return;
    }
    for ci in 0..k {
        if counts[ci] != 0 {
            continue;
        }
        let mut cj = 0;
        loop {
            let p = (counts[cj] as f64 - 1.0) / (n - k) as f64;
            if rng.next_f64() < p {
                break;
            }
            cj = (cj + 1) % k;
        }
        let src: Vec<f32> = centroids[cj * d..(cj + 1) * d].to_vec();
        centroids[ci * d..(ci + 1) * d].copy_from_slice(&src);
        for j in 0..d {
            let (up, down) = if j % 2 == 0 { (ci, cj) } else { (cj, ci) };
            centroids[up * d + j] *= 1.0 + EPS;
            centroids[down * d + j] *= 1.0 - EPS;
        }
        counts[ci] = counts[cj] / 2;
        counts[cj] -= counts[ci];
    }
}

/// Rows `idx` of `x` (n × d), in that order.
pub fn gather<T: Copy>(x: &[T], d: usize, idx: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        out.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four tight blobs at known corners: k-means with k = 4 must find the four centres.
    #[test]
    fn finds_separated_blobs() {
        let mut r = Rng::new(3);
        let centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let mut x = Vec::new();
        for i in 0..400 {
            let c = centres[i % 4];
            x.push(c[0] + 0.1 * r.normal() as f32);
            x.push(c[1] + 0.1 * r.normal() as f32);
        }
        let mut best = f32::INFINITY;
        for seed in 0..5 {
            let cents = train(&x, 2, 4, &KMeansParams { seed, ..Default::default() }).unwrap();
            let err: f32 = centres
                .iter()
                .map(|c| cents.chunks_exact(2).map(|g| distance::l2_sqr(c, g)).fold(f32::INFINITY, f32::min))
                .sum();
            best = best.min(err);
        }
        assert!(best < 0.01, "centres not recovered: {best}");
    }

    #[test]
    fn empty_clusters_are_reseeded() {
        // 8 distinct points, 8 clusters, but all initial picks could collide on duplicates:
        // with many duplicates some clusters empty out and must be split, never left at NaN.
        let mut x = vec![0f32; 2 * 64];
        x[0] = 5.0;
        let c = train(&x, 2, 8, &KMeansParams::default()).unwrap();
        assert!(c.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn too_few_points_is_an_error() {
        let x = vec![0f32; 6];
        assert_eq!(train(&x, 2, 4, &KMeansParams::default()), Err(KMeansError::TooFewPoints { n: 3, k: 4 }));
    }

    #[test]
    fn spherical_centroids_are_unit_length() {
        let mut r = Rng::new(9);
        let x: Vec<f32> = (0..300 * 8).map(|_| r.normal() as f32).collect();
        let c = train(&x, 8, 5, &KMeansParams { spherical: true, ..Default::default() }).unwrap();
        for row in c.chunks_exact(8) {
            assert!((distance::inner_product(row, row) - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn seeded_training_is_deterministic() {
        let mut r = Rng::new(4);
        let x: Vec<f32> = (0..2000 * 4).map(|_| r.normal() as f32).collect();
        let p = KMeansParams { seed: 11, ..Default::default() };
        assert_eq!(train(&x, 4, 16, &p).unwrap(), train(&x, 4, 16, &p).unwrap());
    }
}
