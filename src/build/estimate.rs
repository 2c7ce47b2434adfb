//! How long a build will take, before it starts: each stage's work counted in the unit its
//! time grows with (distance computations for k-means, HNSW and PQ, vectors for the streaming
//! pass, bytes for the merge), times a cost per unit measured on the reference machine, divided
//! by the threads where the stage runs on all of them.
//!
//! The costs were fitted on builds of 10M and 30M uint8 vectors (IVF65536_HNSW32,PQ32) on the
//! reference machine, and the growth of graph work past the caches on `benches/coarse_scale.rs`
//! (benches/README.md, "Build time model"). A faster or slower CPU scales the compute stages,
//! a faster disk the merge; stages are assumed to scale linearly with threads. The estimate is
//! a planning figure, not a promise.

/// The machine the costs were measured on.
pub const REFERENCE: &str =
    "2-vCPU Xeon VM (AVX2, 24 GiB, virtio disk); costs fitted on 10M and 30M uint8 builds and benches/coarse_scale.rs";

/// Seconds per sample row drawn (random reads of the input).
const SAMPLE_PER_ROW: f64 = 1.09e-6;
/// Two-level k-means: seconds per (row × √nlist × d × iteration) on one thread.
const KMEANS_TWO_LEVEL: f64 = 1.255e-10;
/// Flat k-means: seconds per (row × nlist × d × iteration) on one thread (tiled kernel; from
/// the 10M float32 build at nlist 16,384 in benches/README.md).
const KMEANS_FLAT: f64 = 2.0e-12;
/// HNSW construction: seconds per (node × efConstruction × d × log2 nlist) on one thread,
/// while the centroids fit the caches (see [`cache_factor`]).
const HNSW: f64 = 1.478e-9;
/// PQ training: seconds per (row × 256 × d × 25 iterations) on one thread.
const PQ: f64 = 1.352e-10;
/// Assignment through the HNSW: seconds per (vector × d × efSearch × 2M × log2 nlist) on one
/// thread, while the centroids fit the caches. With [`ENCODE`] and [`STREAM`] it makes the
/// streaming pass's 35.3 µs per vector and thread measured at nlist 65,536, d 128, PQ32; the
/// split between the three is from single-thread microbenchmarks (benches/README.md).
const ASSIGN: f64 = 1.233e-11;
/// PQ encoding: seconds per (vector × 256 × d) on one thread.
const ENCODE: f64 = 9.75e-11;
/// Reading, converting, sorting and spilling: seconds per (vector × d) on one thread.
const STREAM: f64 = 4.87e-8;
/// Merge: seconds per byte of runs read plus segments written (page cache and disk).
const MERGE_PER_BYTE: f64 = 1.28e-9;
/// Centroid tables up to this size behave as measured at nlist 65,536 × d 128 (32 MiB).
const CACHED_TABLE: f64 = 32.0 * 1024.0 * 1024.0;
/// Extra cost of graph work per doubling of the centroid table past [`CACHED_TABLE`]
/// (`benches/coarse_scale.rs` at nlist 65,536 and 1,048,576, d 128).
const PER_DOUBLING_HNSW: f64 = 0.14;
const PER_DOUBLING_ASSIGN: f64 = 0.30;

/// How much slower graph work gets as the centroids outgrow the caches: 1 up to
/// [`CACHED_TABLE`], then `per_doubling` more for each doubling of the table.
fn cache_factor(table_bytes: f64, per_doubling: f64) -> f64 {
    1.0 + per_doubling * (table_bytes / CACHED_TABLE).log2().max(0.0)
}

/// What the estimate is computed from.
#[derive(Clone, Debug)]
pub struct EstimateShape {
    pub n: u64,
    pub d: u64,
    pub nlist: u64,
    pub hnsw_m: u64,
    pub train_rows: u64,
    pub niter: u64,
    pub ef_construction: u64,
    pub ef_search: u64,
    pub two_level: bool,
    pub threads: u64,
    pub runs_bytes: u64,
    pub segments_bytes: u64,
    pub merge_passes: u64,
}

/// One stage's estimated seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct StageEstimate {
    pub stage: &'static str,
    pub seconds: f64,
}

/// The stages of a build and their estimated wall time.
pub fn estimate(s: &EstimateShape) -> Vec<StageEstimate> {
    let t = s.threads.max(1) as f64;
    let (n, d, nl) = (s.n as f64, s.d as f64, s.nlist as f64);
    let log_nl = nl.log2().max(1.0);
    // k-means uses at most 256 rows per centroid.
    let rows = s.train_rows.min(s.nlist * 256) as f64;
    let kmeans = if s.two_level {
        KMEANS_TWO_LEVEL * rows * nl.sqrt() * d * s.niter as f64
    } else {
        KMEANS_FLAT * rows * nl * d * s.niter as f64
    };
    let table = nl * d * 4.0;
    let per_vector =
        ASSIGN * d * s.ef_search as f64 * 2.0 * s.hnsw_m as f64 * log_nl * cache_factor(table, PER_DOUBLING_ASSIGN)
            + ENCODE * 256.0 * d
            + STREAM * d;
    let merge_bytes = s.segments_bytes as f64 + s.runs_bytes as f64 * (1 + 2 * s.merge_passes) as f64;
    vec![
        StageEstimate { stage: "sample", seconds: SAMPLE_PER_ROW * s.train_rows as f64 },
        StageEstimate { stage: "kmeans", seconds: kmeans / t },
        StageEstimate {
            stage: "hnsw",
            seconds: HNSW * nl * s.ef_construction as f64 * d * log_nl * cache_factor(table, PER_DOUBLING_HNSW) / t,
        },
        StageEstimate { stage: "pq", seconds: PQ * (s.train_rows.min(65_536) as f64) * 256.0 * d * 25.0 / t },
        StageEstimate { stage: "add", seconds: per_vector * n / t },
        StageEstimate { stage: "merge", seconds: MERGE_PER_BYTE * merge_bytes },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> EstimateShape {
        EstimateShape {
            n: 10_000_000,
            d: 128,
            nlist: 16_384,
            hnsw_m: 32,
            train_rows: 655_360,
            niter: 10,
            ef_construction: 40,
            ef_search: 16,
            two_level: true,
            threads: 2,
            runs_bytes: 360_000_000,
            segments_bytes: 400_000_000,
            merge_passes: 0,
        }
    }

    #[test]
    fn the_streaming_pass_dominates_and_scales_with_threads_and_vectors() {
        let total = |s: &EstimateShape| estimate(s).iter().map(|e| e.seconds).sum::<f64>();
        let e = estimate(&shape());
        let add = e.iter().find(|s| s.stage == "add").unwrap().seconds;
        assert!(add > 0.5 * total(&shape()), "{e:?}");
        let wide = EstimateShape { threads: 16, ..shape() };
        assert!(total(&wide) < total(&shape()) / 4.0);
        let big = EstimateShape { n: 100_000_000, ..shape() };
        let add_big = estimate(&big).iter().find(|s| s.stage == "add").unwrap().seconds;
        assert!((add_big / add - 10.0).abs() < 1e-9);
    }
}
