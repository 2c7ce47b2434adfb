//! The coarse quantizer of an IVF index: nlist centroids from exact k-means plus an HNSW graph
//! over them (faiss's `IVF…_HNSW…`). It answers two questions: which list a vector belongs to
//! (`assign`, an HNSW search with k = 1) and which `nprobe` lists a query should visit (`probe`,
//! an HNSW search with ef = max(efSearch, nprobe)). It does not know where lists live.

use rayon::prelude::*;

use crate::distance::Metric;
use crate::hnsw::{Hnsw, HnswParams, Points, VisitedSet};
use crate::kmeans::{self, KMeansError, KMeansParams};
use crate::topk::Neighbor;

#[derive(Clone, Debug)]
pub struct CoarseQuantizer {
    pub d: usize,
    /// Kernel metric (L2 or inner product; cosine arrives here as inner product).
    pub metric: Metric,
    /// nlist × d.
    pub centroids: Vec<f32>,
    pub hnsw: Hnsw,
}

/// Training parameters of the coarse quantizer.
#[derive(Clone, Debug)]
pub struct CoarseParams {
    pub nlist: usize,
    pub niter: usize,
    pub hnsw: HnswParams,
    pub seed: u64,
}

impl CoarseQuantizer {
    /// k-means on `sample` (n × d), then the HNSW graph over the centroids. Spherical k-means
    /// for inner product, as faiss's factory sets it up.
    pub fn train(sample: &[f32], d: usize, metric: Metric, p: &CoarseParams) -> Result<Self, KMeansError> {
        let metric = metric.kernel();
        let km = KMeansParams {
            niter: p.niter,
            max_points_per_centroid: 256,
            spherical: metric == Metric::InnerProduct,
            seed: p.seed,
        };
        let centroids = kmeans::train(sample, d, p.nlist, &km)?;
        let hnsw = Hnsw::build(&Points { data: &centroids, d, metric }, &p.hnsw);
        Ok(CoarseQuantizer { d, metric, centroids, hnsw })
    }

    pub fn nlist(&self) -> usize {
        self.centroids.len() / self.d
    }

    pub fn centroid(&self, list: usize) -> &[f32] {
        &self.centroids[list * self.d..(list + 1) * self.d]
    }

    /// A visited set sized for this graph; one per thread.
    pub fn visited_set(&self) -> VisitedSet {
        VisitedSet::new(self.nlist())
    }

    /// The `nprobe` closest lists to `q`, closest first (`id` = list number), by an HNSW
    /// search of width `ef_search` (for nprobe > ef_search, see [`Hnsw::search`]).
    pub fn probe(&self, q: &[f32], nprobe: usize, ef_search: usize, visited: &mut VisitedSet) -> Vec<Neighbor> {
        let points = Points { data: &self.centroids, d: self.d, metric: self.metric };
        self.hnsw.search(points, q, nprobe, ef_search, visited)
    }

    /// The list of every row of `x` (n × d), in parallel.
    pub fn assign_batch(&self, x: &[f32], ef_search: usize) -> Vec<u32> {
        let d = self.d;
        let mut out = vec![0u32; x.len() / d];
        // One visited set per worker, not per block: at 2^20 lists a set is 1 MiB to clear.
        out.par_chunks_mut(256).zip(x.par_chunks(d * 256)).for_each_init(
            || self.visited_set(),
            |visited, (o, block)| {
                for (slot, v) in o.iter_mut().zip(block.chunks_exact(d)) {
                    *slot = self.probe(v, 1, ef_search, visited).first().map_or(0, |n| n.id as u32);
                }
            },
        );
        out
    }

    /// `out = x − centroid(list)`.
    pub fn residual(&self, x: &[f32], list: usize, out: &mut [f32]) {
        for ((o, a), c) in out.iter_mut().zip(x).zip(self.centroid(list)) {
            *o = a - c;
        }
    }

    /// Replaces each row of `x` (n × d) by its residual against its list in `lists`, in place
    /// and in parallel (the builder's chunks are large; a second buffer would double them).
    pub fn to_residuals(&self, x: &mut [f32], lists: &[u32]) {
        x.par_chunks_mut(self.d).zip(lists.par_iter()).for_each(|(row, &l)| {
            row.iter_mut().zip(self.centroid(l as usize)).for_each(|(v, c)| *v -= c);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn hnsw_assignment_matches_exact_nearest_centroid_mostly() {
        let (n, d) = (5000, 16);
        let mut r = Rng::new(1);
        let x: Vec<f32> = (0..n * d).map(|_| r.normal() as f32).collect();
        let p = CoarseParams { nlist: 64, niter: 10, hnsw: HnswParams::default(), seed: 2 };
        let q = CoarseQuantizer::train(&x, d, Metric::L2, &p).unwrap();
        let got = q.assign_batch(&x, 16);
        let mut exact = vec![(0u32, 0f32); n];
        kmeans::assign_l2(&x, d, &q.centroids, &mut exact);
        let agree = got.iter().zip(&exact).filter(|(a, b)| **a == b.0).count();
        assert!(agree as f64 / n as f64 > 0.97, "{agree} of {n}");
    }
}
