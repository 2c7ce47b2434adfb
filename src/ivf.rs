//! The coarse quantizer of an IVF index: nlist centroids from exact k-means plus an HNSW graph
//! over them (faiss's `IVF…_HNSW…`). It answers two questions: which list a vector belongs to
//! (`assign`, an HNSW search with k = 1) and which `nprobe` lists a query should visit (`probe`,
//! an HNSW search with ef = max(efSearch, nprobe)), or, where asked ([`CoarseSearch::Exact`]),
//! the true `nprobe` closest by looking at every centroid. It does not know where lists live.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::distance::amx::{self, Amx, Bf16Panel};
use crate::distance::{self, Metric};
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
    /// The centroids as the exact search screens them, made when it is first asked for.
    screen: OnceLock<Screen>,
}

/// How a query's lists are found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CoarseSearch {
    /// A walk of the HNSW graph over the centroids, `ef_search` wide (faiss's `IVF…_HNSW…`):
    /// close to exact, and at any nlist a few hundred distances a query.
    #[default]
    Graph,
    /// Every centroid's distance, so the probed lists are the true nprobe closest (faiss's
    /// flat quantizer). nlist · d multiply-adds a query: on CPUs with AMX (bfloat16 tiles)
    /// a batch of queries screens all centroids faster than the graph is walked at nlist of
    /// a few thousand (one query alone about as fast at nlist · d ≈ 400k, slower at 500k),
    /// and the few that may be among the nprobe closest are then measured in float32, so
    /// the lists are exactly those float32 distances choose.
    Exact,
}

impl std::str::FromStr for CoarseSearch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "graph" | "hnsw" => Ok(CoarseSearch::Graph),
            "exact" | "flat" => Ok(CoarseSearch::Exact),
            other => Err(format!("unknown coarse search {other:?}: expected graph or exact")),
        }
    }
}

impl CoarseSearch {
    pub fn name(self) -> &'static str {
        match self {
            CoarseSearch::Graph => "graph",
            CoarseSearch::Exact => "exact",
        }
    }
}

/// What a thread's exact coarse searches reuse: the tiles' products (16 × nlist floats),
/// the queries as the tiles take them, the screened candidates.
#[derive(Debug, Default)]
pub struct ScreenScratch {
    products: Vec<f32>,
    moved: Vec<f32>,
    kept: Vec<(f32, u32)>,
}

/// The centroids moved by their mean (the products are then of smaller vectors, so their
/// rounding is smaller; L2 distances do not move and inner products move by one value a
/// query), rounded to bfloat16 for the tiles.
#[derive(Clone, Debug)]
struct Screen {
    mean: Vec<f32>,
    panel: Bf16Panel,
    /// ‖c − mean‖² of each centroid for L2 (a screened distance is this less twice the
    /// product), zeros for inner product (minus the product).
    norms: Vec<f32>,
    /// Largest ‖c − mean‖ and largest ‖c‖.
    radius: f32,
    reach: f32,
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
        Ok(CoarseQuantizer::new(d, metric, centroids, hnsw))
    }

    /// A quantizer from its parts (`metric` as the kernels run it: see [`Metric::kernel`]).
    pub fn new(d: usize, metric: Metric, centroids: Vec<f32>, hnsw: Hnsw) -> Self {
        CoarseQuantizer { d, metric, centroids, hnsw, screen: OnceLock::new() }
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

    /// The `nprobe` closest lists to each row of `queries` (n × d), closest first, found by
    /// every centroid's float32 distance (the same as [`probe`](Self::probe)'s; ties by
    /// list number). On a CPU with AMX, queries are screened in bfloat16 first, 16 to a tile
    /// pass (one alone still gains: the pass streams half the bytes float32 would): a
    /// centroid is measured in float32 only when its bfloat16 distance is within the
    /// rounding's bound of the nprobe-th closest, so the answer is the same either way.
    pub fn probe_exact(&self, queries: &[f32], nprobe: usize, scratch: &mut ScreenScratch) -> Vec<Vec<Neighbor>> {
        self.probe_exact_on(queries, nprobe, scratch, Amx::get())
    }

    /// [`probe_exact`](Self::probe_exact) with the tiles given (None: float32 throughout).
    fn probe_exact_on(
        &self,
        queries: &[f32],
        nprobe: usize,
        scratch: &mut ScreenScratch,
        tiles: Option<Amx>,
    ) -> Vec<Vec<Neighbor>> {
        let (d, nlist) = (self.d, self.nlist());
        let nprobe = nprobe.min(nlist);
        let nq = queries.len() / d;
        let tiles = tiles.filter(|_| nprobe > 0 && nprobe < nlist);
        let Some(tiles) = tiles else {
            return queries.chunks_exact(d).map(|q| self.nearest_of(q, 0..nlist as u32, nprobe)).collect();
        };
        let screen = self.screen.get_or_init(|| Screen::new(&self.centroids, d, self.metric));
        let npad = screen.panel.padded_len();
        let ScreenScratch { products, moved, kept } = scratch;
        products.resize(amx::ROWS * npad, 0.0);
        moved.resize(amx::ROWS * d, 0.0);
        // ‖q − c‖² = ‖q − m‖² + ‖c − m‖² − 2⟨q − m, c − m⟩, and ⟨q, c⟩ = ⟨q, c − m⟩ + ⟨q, m⟩:
        // the query moves for L2 only, and a screened value is ‖c − m‖² − 2·product or −product.
        let (shift, scale) = if self.metric == Metric::L2 { (1.0, -2.0) } else { (0.0, -1.0) };
        let mut out = Vec::with_capacity(nq);
        for block in queries.chunks(amx::ROWS * d) {
            let moved = &mut moved[..block.len()];
            for ((m, &x), &c) in moved.iter_mut().zip(block).zip(screen.mean.iter().cycle()) {
                *m = x - shift * c;
            }
            tiles.dots(&screen.panel, moved, products);
            for ((q, m), row) in block.chunks_exact(d).zip(moved.chunks_exact(d)).zip(products.chunks_exact_mut(npad)) {
                let margin = screen.margin(self.metric, d, m, q);
                if !margin.is_finite() {
                    out.push(self.nearest_of(q, 0..nlist as u32, nprobe));
                    continue;
                }
                distance::within(&row[..nlist], &screen.norms, scale, nprobe, margin, kept);
                out.push(self.nearest_of(q, kept.iter().map(|&(_, c)| c), nprobe));
            }
        }
        out
    }

    /// The `nprobe` of `lists` closest to `q` by float32 distance, closest first.
    fn nearest_of(&self, q: &[f32], lists: impl Iterator<Item = u32>, nprobe: usize) -> Vec<Neighbor> {
        let lists: Vec<u32> = lists.collect();
        let mut found = Vec::with_capacity(lists.len());
        let mut fours = lists.chunks_exact(4);
        for c in &mut fours {
            let r = |k: usize| self.centroid(c[k] as usize);
            let dist = distance::dissimilarity_4(self.metric, q, [r(0), r(1), r(2), r(3)]);
            found.extend(c.iter().zip(dist).map(|(&id, dist)| Neighbor { id: id as u64, dist }));
        }
        for &c in fours.remainder() {
            found.push(Neighbor {
                id: c as u64,
                dist: distance::dissimilarity(self.metric, q, self.centroid(c as usize)),
            });
        }
        if nprobe < found.len() {
            found.select_nth_unstable(nprobe);
            found.truncate(nprobe);
        }
        found.sort_unstable();
        found
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

impl Screen {
    fn new(centroids: &[f32], d: usize, metric: Metric) -> Self {
        let n = centroids.len() / d;
        let mut sum = vec![0f64; d];
        for c in centroids.chunks_exact(d) {
            sum.iter_mut().zip(c).for_each(|(s, &v)| *s += v as f64);
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect();
        let moved: Vec<f32> = centroids.iter().zip(mean.iter().cycle()).map(|(c, m)| c - m).collect();
        let norms: Vec<f32> = moved.chunks_exact(d).map(|c| distance::inner_product(c, c)).collect();
        let radius = norms.iter().fold(0f32, |a, &n| a.max(n)).sqrt();
        let norms = if metric == Metric::L2 { norms } else { vec![0.0; n] };
        let reach = centroids.chunks_exact(d).map(|c| distance::inner_product(c, c)).fold(0f32, f32::max).sqrt();
        Screen { mean, panel: Bf16Panel::new(&moved, d), norms, radius, reach }
    }

    /// How far a screened distance can lie from the float32 kernel's distance (less a
    /// per-query constant), twice: a centroid within this of the nprobe-th smallest screened
    /// value may be among the nprobe closest, one farther cannot. `moved` is the query as
    /// the tiles took it (less the mean for L2), `q` the query.
    ///
    /// The bounds: a product of two values each rounded to bfloat16 (relative error ≤ 2⁻⁸)
    /// is off by ≤ (2⁻⁷ + 2⁻¹⁶) of its size; float32 sums of d terms add d · 2⁻²⁴ of the
    /// sum of sizes; Σ|qᵢcᵢ| ≤ ‖q‖‖c‖. The float32 kernel the answer is chosen by is itself
    /// off by (d + 4) · 2⁻²⁴ of ‖q − c‖² ≤ (‖q − m‖ + ‖c − m‖)² for L2, of ‖q‖‖c‖ for inner
    /// product. Everything is then doubled again for what the analysis rounds away.
    fn margin(&self, metric: Metric, d: usize, moved: &[f32], q: &[f32]) -> f32 {
        const E: f64 = 1.0 / (1u64 << 24) as f64;
        let size = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        let (qm, r, df) = (size(moved), self.radius as f64, d as f64);
        let product = (1.0 / 128.0 + 1.0 / 65536.0 + (df + 2.0) * E) * qm * r;
        let (screened, kernel) = match metric {
            Metric::L2 => (2.0 * product + (df + 3.0) * E * (r * r + 2.0 * qm * r), (df + 4.0) * E * (qm + r).powi(2)),
            _ => (product + 2.0 * E * qm * r, (df + 2.0) * E * size(q) * self.reach as f64),
        };
        (4.0 * (screened + kernel)) as f32
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

    fn brute(q: &CoarseQuantizer, x: &[f32], nprobe: usize) -> Vec<Vec<Neighbor>> {
        x.chunks_exact(q.d)
            .map(|v| {
                let mut all: Vec<Neighbor> = (0..q.nlist())
                    .map(|c| Neighbor { id: c as u64, dist: distance::dissimilarity(q.metric, v, q.centroid(c)) })
                    .collect();
                all.sort_unstable();
                all.truncate(nprobe);
                all
            })
            .collect()
    }

    /// The exact search equals a brute-force sort of every centroid's float32 distance, on
    /// both of its paths (float32 throughout; screened on the tiles where AMX exists), for a
    /// batch and for one query, both metrics, off-centre data (where ‖q‖‖c‖ dwarfs the
    /// distances), and duplicate centroids (ties).
    #[test]
    fn exact_probes_equal_brute_force() {
        let amx = Amx::get();
        if amx.is_none() {
            eprintln!("SKIPPED the screened half of exact_probes_equal_brute_force: this CPU offers no AMX-BF16 (the float32 half runs)");
        }
        let mut r = Rng::new(5);
        for (metric, d, nlist, offset) in [
            (Metric::L2, 32, 300, 0.0),
            (Metric::L2, 128, 1000, 50.0),
            (Metric::InnerProduct, 48, 257, 3.0),
            (Metric::L2, 7, 70, 0.0),
        ] {
            let mut centroids: Vec<f32> = (0..nlist * d).map(|_| r.normal() as f32 + offset).collect();
            centroids.copy_within(0..d, d);
            let hnsw = Hnsw::build(&Points { data: &centroids, d, metric }, &HnswParams::default());
            let q = CoarseQuantizer::new(d, metric, centroids, hnsw);
            let x: Vec<f32> = (0..37 * d).map(|_| r.normal() as f32 * 1.3 + offset).collect();
            for nprobe in [1, 2, 16, 64, nlist - 1, nlist, nlist + 5] {
                let want = brute(&q, &x, nprobe);
                let s = &mut ScreenScratch::default();
                for tiles in [None, amx] {
                    let how = if tiles.is_some() { "screened" } else { "float32" };
                    assert_eq!(
                        q.probe_exact_on(&x, nprobe, s, tiles),
                        want,
                        "{metric} d {d} nprobe {nprobe}: {how} batch"
                    );
                    for (v, w) in x.chunks_exact(d).zip(&want).take(3) {
                        let one = q.probe_exact_on(v, nprobe, s, tiles);
                        assert_eq!(&one[0], w, "{metric} d {d} nprobe {nprobe}: {how}, one query");
                    }
                }
            }
        }
    }
}
