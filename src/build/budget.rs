//! The build's memory budget: what each stage holds, and the sizes (training sample, chunk,
//! merge buffers, largest extent) that keep the peak under the user's bound.
//!
//! The stages run one after another, so the peak is what lives through the whole build (the
//! process itself, the quantizer and codebooks) plus the largest stage: training (the sample
//! and k-means' working set), streaming (two chunks in flight: one being read, one being
//! assigned and encoded) or merging (a read buffer per run and one extent). Each term below is
//! an upper bound of what the code allocates; `tests/memory.rs` checks the kernel's high-water
//! mark of real builds against the budget.

use crate::error::{Error, Result};

/// The process before any data: binary, libraries, thread stacks, allocator slack, the input
/// reader's 1 MiB blocks and the run writer's buffer. Measured at about 6 MiB; doubled and more.
pub const RUNTIME: u64 = 16 << 20;
/// Smallest chunk worth streaming: below this the per-chunk overhead (a run file each) dominates.
pub const MIN_CHUNK: usize = 1024;
/// PQ trains on at most this many residuals (faiss: 256 points per centroid × 256 centroids).
pub const PQ_TRAIN_ROWS: usize = 65_536;
/// Coarse cells a two-level refinement probes per row (as `kmeans::two_level` does).
const REFINE_CELLS: usize = 8;
/// Read buffer per run in the merge: the largest worth having, and the smallest allowed.
const MERGE_BUF_MAX: u64 = 256 << 10;
const MERGE_BUF_MIN: u64 = 8 << 10;

/// What the budget was split into and the sizes derived from it. Byte figures are upper bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BudgetPlan {
    /// The bound itself.
    pub total: u64,
    /// The process, the quantizer (centroids and HNSW) and the codebooks: held throughout.
    pub resident: u64,
    /// Training's peak: the sample and k-means' working set, or PQ training.
    pub training: u64,
    /// Streaming's peak: two chunks of vectors with their lists and codes.
    pub streaming: u64,
    /// Merging's peak: a read buffer per run and the largest extent.
    pub merging: u64,
    /// Writing the RAM-resident files: the quantizer's and the list directory's encoded bytes
    /// (the quantizer's arrays are counted as resident).
    pub finishing: u64,
    /// Vectors in the training sample (the requested size, or fewer when it does not fit).
    pub train_rows: usize,
    /// Vectors per streamed chunk.
    pub chunk_rows: usize,
    /// Read buffer per run file in the merge.
    pub merge_buffer: usize,
    /// Most runs merged at once (bounded by the budget and by the open-file limit); more
    /// runs are first merged in groups of this many.
    pub merge_fan_in: usize,
    /// Most vectors one extent holds; a longer list gets several extents.
    pub max_extent_vectors: usize,
}

/// The shape of a build, for sizing.
#[derive(Clone, Debug)]
pub struct BuildShape {
    pub n: usize,
    pub d: usize,
    /// Bytes per value of the training sample as kept (1 for uint8/int8 input, else 4).
    pub sample_elem: usize,
    pub nlist: usize,
    pub hnsw_m: usize,
    pub code_size: usize,
    pub train_rows: usize,
    pub min_train_rows: usize,
    pub chunk_cap: usize,
    pub two_level: bool,
    pub threads: usize,
    /// An upper bound on the merge's fan-in asked for by the caller (None: as the budget and
    /// the open-file limit allow).
    pub fan_in_cap: Option<usize>,
}

impl BuildShape {
    /// Centroids, their HNSW graph (2M + M·E[levels above 0] ≤ 2M + 2 slots per node, an
    /// offset and a level), the per-thread visited sets used while building and assigning,
    /// and the PQ codebooks (256 centroids of d values).
    fn resident(&self) -> u64 {
        let (nl, d, m, t) = (self.nlist as u64, self.d as u64, self.hnsw_m as u64, self.threads.max(1) as u64);
        RUNTIME + nl * (4 * d + 4 * (2 * m + 2) + 9) + t * nl * 4 + 256 * d * 4
    }

    /// k-means' working set that does not grow with the sample.
    fn kmeans_fixed(&self) -> u64 {
        let (nl, d) = (self.nlist as u64, self.d as u64);
        if self.two_level {
            // √nlist coarse centroids, their table and sums; the cells' centroids while they
            // are gathered into one array; the refinement's sums (f64) and per-cell tables.
            let k1 = (nl as f64).sqrt().ceil() as u64;
            k1 * d * 16 + nl * 16 + nl * d * 4 + nl * d * 12
        } else {
            // Sums (f64), the transposed table with norms, counts.
            nl * d * 12 + nl * 16
        }
    }

    /// k-means' working set per sample row: its assignment, the sample index (while
    /// sampling), and for two-level the cell ordering plus the cells being trained at once
    /// (a cell copies its rows; up to four times the mean cell size, one per thread).
    fn kmeans_per_row(&self) -> u64 {
        let mut b = 8 + 8 + (self.d * self.sample_elem) as u64;
        if self.two_level {
            let k1 = (self.nlist as f64).sqrt().ceil().max(1.0) as u64;
            b += 8 + (4 * self.threads.max(1) as u64 * (self.d * self.sample_elem) as u64).div_ceil(k1);
            // Refinement: each row's probed cells, its place in them, what each cell found
            // for it, and its best.
            b += REFINE_CELLS as u64 * 16 + 8;
        }
        b
    }

    /// When the sample has more rows than k-means uses (256 per centroid), k-means subsamples
    /// them into a copy.
    fn kmeans_copy(&self, rows: usize) -> u64 {
        let cap = self.nlist.saturating_mul(256);
        if rows > cap {
            (cap * self.d * self.sample_elem) as u64
        } else {
            0
        }
    }

    fn training(&self, rows: usize) -> u64 {
        // Sampling reads pieces of 4,096 rows per thread before placing them.
        let reading = (4096 * self.threads.max(1) * self.d * self.sample_elem) as u64;
        let kmeans = self.kmeans_fixed() + rows as u64 * self.kmeans_per_row() + self.kmeans_copy(rows) + reading;
        // PQ: the residuals of up to 65,536 sample rows as f32, and a per-sub-quantizer copy.
        let pq = 2 * (rows.min(PQ_TRAIN_ROWS) * self.d * 4) as u64 + (PQ_TRAIN_ROWS as u64) * 16;
        kmeans.max(pq)
    }

    /// Per streamed vector: the chunk being read and the one being encoded (f32 each), its
    /// list, its sort position and its code.
    fn stream_per_row(&self) -> u64 {
        (2 * self.d * 4 + 8 + self.code_size) as u64
    }

    /// The quantizer file's bytes, and the list directory's (an extent record per list, more
    /// for split lists; its encoding is built next to the table).
    fn finishing(&self) -> u64 {
        let (nl, d, m) = (self.nlist as u64, self.d as u64, self.hnsw_m as u64);
        let quantizer = nl * (4 * d + 4 * (2 * m + 2) + 1) + 4096;
        quantizer + 2 * (nl + 1024) * 36
    }
}

fn shortfall(what: &str, need: u64, total: u64) -> Error {
    Error::BudgetTooSmall { what: what.into(), need, budget: total }
}

/// Splits `total` bytes for a build of `shape`; refuses a budget that cannot hold the
/// factory's fixed parts, the minimal training sample, the smallest chunk or the merge.
pub fn plan(total: u64, shape: &BuildShape) -> Result<BudgetPlan> {
    let resident = shape.resident();
    let min_training = shape.training(shape.min_train_rows);
    let min_streaming = MIN_CHUNK as u64 * shape.stream_per_row();
    let finishing = shape.finishing();
    if total < resident + min_training.max(min_streaming).max(finishing) {
        return Err(shortfall(
            &format!(
                "nlist {} (HNSW M {}) over {}-dimensional vectors with at least {} training vectors",
                shape.nlist, shape.hnsw_m, shape.d, shape.min_train_rows
            ),
            resident + min_training.max(min_streaming).max(finishing),
            total,
        ));
    }
    let avail = total - resident;

    // The largest sample up to the one asked for whose training fits.
    let mut rows = shape.train_rows;
    if shape.training(rows) > avail {
        let (mut lo, mut hi) = (shape.min_train_rows, rows);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if shape.training(mid) <= avail {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        rows = lo;
    }

    let chunk_rows = ((avail / shape.stream_per_row()) as usize).min(shape.chunk_cap).min(shape.n.max(1)).max(1);
    let chunk_rows = chunk_rows.max(MIN_CHUNK.min(shape.n.max(1)));
    let streaming = chunk_rows as u64 * shape.stream_per_row();

    // Merge: half for run buffers, half for the extent being assembled (codes, ids, and the
    // padded copy written out). At most `fan_in` runs are open at once: bounded by what half
    // the budget gives each a minimal buffer, by the open-file limit (less a margin for the
    // segments, the index files and the process) and by the caller's cap.
    let runs = shape.n.div_ceil(chunk_rows).max(1) as u64;
    // The pass writer's own 1 MiB buffer comes off the top.
    let merge_avail = avail.saturating_sub(1 << 20);
    let by_memory = (merge_avail / 2 / MERGE_BUF_MIN).max(2);
    let by_files = crate::io::max_open_files().saturating_sub(64).max(2);
    let cap = shape.fan_in_cap.map_or(u64::MAX, |c| c.max(2) as u64);
    let fan_in = runs.min(by_memory).min(by_files).min(cap).max(2);
    let merge_buffer = (merge_avail / 2 / fan_in).min(MERGE_BUF_MAX);
    let per_extent_vector = 2 * (shape.code_size as u64 + 8);
    let max_extent_vectors = ((merge_avail / 2) / per_extent_vector).clamp(1, u32::MAX as u64) as usize;
    let merging =
        fan_in.min(runs) * merge_buffer + (1 << 20) + max_extent_vectors.min(shape.n) as u64 * per_extent_vector;
    Ok(BudgetPlan {
        total,
        resident,
        training: shape.training(rows),
        streaming,
        merging,
        finishing,
        train_rows: rows,
        chunk_rows,
        merge_buffer: merge_buffer as usize,
        merge_fan_in: fan_in as usize,
        max_extent_vectors,
    })
}

/// The default budget: half of physical memory, so a build leaves room for the page cache and
/// whatever else the machine runs.
pub fn default_budget() -> u64 {
    let phys = crate::io::physical_memory();
    if phys == u64::MAX {
        4 << 30
    } else {
        phys / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> BuildShape {
        BuildShape {
            n: 10_000_000,
            d: 128,
            sample_elem: 4,
            nlist: 16_384,
            hnsw_m: 32,
            code_size: 32,
            train_rows: 655_360,
            min_train_rows: 16_384,
            chunk_cap: 262_144,
            two_level: true,
            threads: 2,
            fan_in_cap: None,
        }
    }

    #[test]
    fn every_stage_fits_and_sizes_follow_the_budget() {
        for total in [256u64 << 20, 1 << 30, 4 << 30] {
            let p = plan(total, &shape()).unwrap();
            for stage in [p.training, p.streaming, p.merging, p.finishing] {
                assert!(p.resident + stage <= total, "{p:?}");
            }
        }
        let small = plan(256 << 20, &shape()).unwrap();
        let big = plan(4 << 30, &shape()).unwrap();
        assert!(small.train_rows < big.train_rows && big.train_rows == 655_360, "{small:?} {big:?}");
        assert!(small.chunk_rows < big.chunk_rows);
    }

    /// Past what the budget's buffers or the caller allow, the merge goes in passes instead of
    /// failing: 10^9 vectors under 64 MiB.
    #[test]
    fn the_fan_in_follows_the_budget_and_the_cap() {
        let big = BuildShape { n: 1_000_000_000, nlist: 1024, train_rows: 40_960, min_train_rows: 1024, ..shape() };
        let p = plan(64 << 20, &big).unwrap();
        let runs = big.n.div_ceil(p.chunk_rows);
        assert!(p.merge_fan_in >= 2 && p.merge_fan_in < runs, "{p:?}");
        assert!(p.resident + p.merging <= p.total, "{p:?}");
        let capped = plan(4 << 30, &BuildShape { fan_in_cap: Some(3), ..shape() }).unwrap();
        assert_eq!(capped.merge_fan_in, 3);
    }

    #[test]
    fn a_budget_below_the_minimum_names_it() {
        let e = plan(32 << 20, &shape()).unwrap_err();
        match e {
            Error::BudgetTooSmall { need, budget, .. } => assert!(need > budget),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn uint8_samples_fit_four_times_more_rows() {
        let f32s = plan(100 << 20, &shape()).unwrap().train_rows;
        let u8s = plan(100 << 20, &BuildShape { sample_elem: 1, ..shape() }).unwrap().train_rows;
        assert!(u8s as f64 > 2.0 * f32s as f64, "{u8s} vs {f32s}");
    }
}
