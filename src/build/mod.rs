//! The streaming builder: sample → train (k-means, HNSW over centroids, PQ on residuals) →
//! stream the input in chunks (assign through the HNSW, encode residuals, sort by list, spill a
//! sorted run) → merge the runs list by list into page-aligned extents of segment files → write
//! the RAM-resident files → publish the manifest atomically.
//!
//! Nothing here holds all vectors or all codes in memory: a chunk of vectors, one run's read
//! buffers and one list's codes at a time. If anything fails, the files this build created are
//! removed and nothing that was in the directory before is touched (it must be empty anyway).

pub mod budget;
mod change;
mod checkpoint;
pub mod disk;
pub mod estimate;
mod failpoint;
mod graph;
mod head;
mod merge;
mod paged;
mod run;
mod shard;
mod spill;
mod train;

pub use budget::BudgetPlan;
pub use change::{add_vectors, compact, delete_ids, ChangeOptions};
pub use disk::DiskPlan;
pub use estimate::StageEstimate;
pub use head::ChangeReport;
pub use shard::{commit_shards, prepare_shard, train_index};

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::codec::Codec;
use crate::distance::{self, Metric};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, FileEntry, FileKind, Manifest, ManifestBody, Params};
use crate::input::VectorSource;
use crate::io::durable;
use crate::pq::ProductQuantizer;
use crate::rng::Rng;
use crate::spec::{IndexSpec, Payload};
use crate::store;

/// How to build. Names follow faiss (`niter`, `efConstruction`, `efSearch`).
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// faiss factory string, e.g. `IVF4096_HNSW32,PQ32`.
    pub factory: String,
    pub metric: Metric,
    /// Training sample size; default max(100,000, 40 × nlist), capped at the input size.
    pub train_size: Option<usize>,
    /// k-means iterations for the coarse centroids (faiss: 10).
    pub niter: usize,
    /// HNSW efConstruction for the graph over centroids (faiss: 40).
    pub ef_construction: usize,
    /// HNSW efSearch used to assign vectors to lists, and the index's default at search (faiss: 16).
    pub ef_search: usize,
    pub seed: u64,
    /// Most vectors per streamed chunk; the memory budget may choose fewer.
    pub chunk_size: usize,
    /// Segment files are closed once they reach this size (a list's extent is never split).
    pub segment_bytes: u64,
    /// Hard bound on the build's peak resident memory, in bytes; `None` = half of physical
    /// memory. Every buffer's size derives from it (see [`BudgetPlan`]).
    pub memory_budget: Option<u64>,
    /// How the coarse centroids are trained.
    pub kmeans: KMeansKind,
    /// Most sorted runs the merge reads at once; `None`: as many as the memory budget and the
    /// open-file limit allow. More runs are merged in passes, giving the same index.
    pub merge_fan_in: Option<usize>,
    /// Where the sorted runs go (in a subdirectory named after the build); `None`: the staging
    /// area inside the index directory.
    pub tmp_dir: Option<PathBuf>,
    /// What to do when the directory holds an unfinished build.
    pub unfinished: Unfinished,
}

/// What a build does when its directory holds the staging area of an unfinished build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unfinished {
    /// Stop with an error that names both ways out.
    #[default]
    Refuse,
    /// Continue it from its last checkpoint (`--resume`); a missing or empty directory starts
    /// from the beginning.
    Resume,
    /// Delete it and start over (`--discard-unfinished`).
    Discard,
}

/// Coarse k-means: flat (exact Lloyd over all nlist centroids), two-level (√nlist cells, then
/// k-means inside each; for large nlist), or chosen by nlist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KMeansKind {
    /// Two-level from `TWO_LEVEL_FROM` (8,192) lists on, flat below.
    #[default]
    Auto,
    Flat,
    TwoLevel,
}

/// nlist from which `KMeansKind::Auto` trains in two levels: measured on this project's
/// 2-core machine (benches/README.md), where two-level is several times faster from here on at
/// the same recall, and flat is still cheap below.
pub const TWO_LEVEL_FROM: usize = 8192;

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            factory: "IVF1024_HNSW32,PQ32".into(),
            metric: Metric::L2,
            train_size: None,
            niter: 10,
            ef_construction: 40,
            ef_search: 16,
            seed: 1234,
            chunk_size: 1 << 18,
            segment_bytes: 1 << 30,
            memory_budget: None,
            kmeans: KMeansKind::Auto,
            merge_fan_in: None,
            tmp_dir: None,
            unfinished: Unfinished::Refuse,
        }
    }
}

/// Bounds of the numeric options: each must fit the format's u32 field it is stored in, and
/// anything past these is a typo rather than a setting (faiss's defaults are 10, 40 and 16).
pub const MAX_NITER: usize = 10_000;
pub const MAX_EF: usize = 1 << 16;
/// Segments larger than 1 TiB buy nothing and a shift past 2^64 would wrap.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 40;

impl BuildOptions {
    /// Everything `build_index` checks before it starts work, for `n` vectors of dimension `d`:
    /// the factory string, the options' ranges, the dimension against PQ's m, and whether the
    /// training sample can hold nlist and PQ centroids. Returns the parsed factory, the plan
    /// and the training-sample size the build will use.
    pub fn check_input(&self, n: usize, d: usize) -> Result<(IndexSpec, Plan, usize)> {
        let spec: IndexSpec = self.factory.parse()?;
        let plan = plan(&spec)?;
        check_shape(n, d)?;
        if !plan.flat {
            ProductQuantizer::with_nbits(d, plan.pq_m, plan.pq_nbits)?;
        }
        self.validate()?;
        let train_size = self.train_size.unwrap_or((40 * plan.nlist).max(100_000)).min(n);
        let need = plan.nlist.max(1 << plan.pq_nbits);
        if train_size < need {
            return Err(Error::TrainingSetTooSmall { have: train_size, need, nlist: plan.nlist });
        }
        Ok((spec, plan, train_size))
    }

    /// The memory plan for a build of `source` under these options: the budget's split, the
    /// training-sample size that fits, the chunk size. Errors (before any work) when the
    /// budget cannot hold the factory's minimum.
    pub fn memory_plan(&self, source: &dyn VectorSource) -> Result<BudgetPlan> {
        let (n, d) = (source.len(), source.dim());
        if let IndexSpec::Hnsw { m, payload } = self.factory.parse()? {
            return graph::memory_plan(self, n, d, m, payload);
        }
        let (_, plan, train_size) = self.check_input(n, d)?;
        let total = self.memory_budget.unwrap_or_else(budget::default_budget);
        let sample_elem = if sample_keeps_bytes(source, self.metric) { 1 } else { 4 };
        let shape = budget::BuildShape {
            n,
            d,
            sample_elem,
            nlist: plan.nlist,
            hnsw_m: plan.hnsw_m,
            code_size: record_size(&plan, refine_elem(&plan, source.elem(), self.metric, d), d),
            train_rows: train_size,
            min_train_rows: plan.nlist.max(1 << plan.pq_nbits),
            chunk_cap: self.chunk_size,
            two_level: plan.two_level(self.kmeans),
            threads: rayon::current_num_threads(),
            fan_in_cap: self.merge_fan_in,
        };
        budget::plan(total, &shape)
    }

    /// Checks every option against its range, naming the option that is out of it. The
    /// builder calls this before any work; callers may call it earlier.
    pub fn validate(&self) -> Result<()> {
        let range = |name: &'static str, value: u64, lo: u64, hi: u64| -> Result<()> {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(Error::OutOfRange { name, value, lo, hi })
            }
        };
        range("niter", self.niter as u64, 1, MAX_NITER as u64)?;
        range("efConstruction", self.ef_construction as u64, 1, MAX_EF as u64)?;
        range("efSearch", self.ef_search as u64, 1, MAX_EF as u64)?;
        range("chunk_size", self.chunk_size as u64, 1, u32::MAX as u64)?;
        range("segment_bytes", self.segment_bytes, 1, MAX_SEGMENT_BYTES)?;
        if let Some(m) = self.memory_budget {
            range("memory_budget", m, 1, u64::MAX)?;
        }
        if let Some(f) = self.merge_fan_in {
            range("merge_fan_in", f as u64, 2, u32::MAX as u64)?;
        }
        if let Some(t) = self.train_size {
            range("train_size", t as u64, 1, u64::MAX)?;
        }
        Ok(())
    }
}

/// Every kind's check of the input's shape: some vectors, and a dimension this library takes.
fn check_shape(n: usize, d: usize) -> Result<()> {
    if n == 0 || d == 0 {
        return Err(Error::InvalidParameter("the input holds no vectors".into()));
    }
    if d > crate::input::MAX_DIM {
        return Err(Error::InvalidParameter(format!(
            "dimension {d} is above the largest supported, {}",
            crate::input::MAX_DIM
        )));
    }
    Ok(())
}

/// Progress of long work, reported by the library and drawn by the caller (the CLI turns it
/// into progress bars). All methods have empty defaults.
pub trait Progress: Sync {
    /// A stage starts; `total` units of work (0 when unknown).
    fn begin(&self, _stage: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn end(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a build did, for the tool's summary.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub ntotal: u64,
    pub dim: usize,
    pub nlist: usize,
    /// Training vectors used (fewer than asked for when the budget could not hold them).
    pub train_size: usize,
    /// Training vectors asked for (or the default).
    pub train_size_requested: usize,
    /// Whether k-means ran in two levels.
    pub two_level_kmeans: bool,
    /// The memory budget and its split.
    pub budget: BudgetPlan,
    pub sample_s: f64,
    pub kmeans_s: f64,
    pub hnsw_s: f64,
    pub pq_s: f64,
    /// All of training: sample + k-means + HNSW + PQ.
    pub train_s: f64,
    /// Assigning, encoding and spilling every vector.
    pub add_s: f64,
    pub merge_s: f64,
    pub total_s: f64,
    pub index_bytes: u64,
    pub segments: usize,
    /// Disk the build planned for (temporary runs, final index) and the serving RAM.
    pub disk: DiskPlan,
    /// Whether it continued an interrupted build (stages it skipped report 0 s).
    pub resumed: bool,
}

impl Plan {
    /// Whether the coarse k-means runs in two levels.
    pub fn two_level(&self, kind: KMeansKind) -> bool {
        match kind {
            KMeansKind::Auto => self.nlist >= TWO_LEVEL_FROM,
            KMeansKind::Flat => false,
            KMeansKind::TwoLevel => true,
        }
    }
}

/// What a factory string asks the builder for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub nlist: usize,
    pub hnsw_m: usize,
    pub pq_m: usize,
    /// Bits per PQ sub-code: 8, or 4 for fast-scan codes.
    pub pq_nbits: usize,
    /// Whether codes quantize residuals from the list's centroid (faiss's `by_residual`): always
    /// for 8-bit PQ, `PQ{m}x4fsr` for fast-scan (`PQ{m}x4fs` quantizes the vectors themselves).
    pub by_residual: bool,
    /// `,RFlat`: the full vectors are kept beside the codes, for re-ranking.
    pub refine: bool,
    /// `…,Flat`: the lists hold the vectors themselves (float32), no PQ (pq_m, pq_nbits 0).
    pub flat: bool,
}

impl Plan {
    /// Bytes of one vector's code, for vectors of dimension `d`.
    pub fn code_size(&self, d: usize) -> usize {
        if self.flat {
            4 * d
        } else {
            self.pq_m * self.pq_nbits / 8
        }
    }
}

/// How a `,RFlat` index keeps its full vectors: the format's element code and bytes per vector.
/// Uint8 input stays uint8 (a quarter of float32's disk and reads) unless the metric normalises
/// rows (cosine), which makes them float; everything else is float32, as the codes see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RefineElem {
    pub code: u8,
    pub vector_bytes: usize,
}

impl RefineElem {
    /// How the merge writes these vectors, for dimension `d`.
    fn shape(self, d: usize) -> merge::RefineShape {
        let ids = format::IdsPlace::WithVectors;
        merge::RefineShape { dim: d as u32, elem: self.code, vector_bytes: self.vector_bytes, ids }
    }
}

pub(crate) fn refine_elem(plan: &Plan, elem: crate::input::Elem, metric: Metric, d: usize) -> Option<RefineElem> {
    plan.refine.then(|| {
        if elem == crate::input::Elem::U8 && !metric.normalizes() {
            RefineElem { code: format::REFINE_U8, vector_bytes: d }
        } else {
            RefineElem { code: format::REFINE_F32, vector_bytes: 4 * d }
        }
    })
}

/// Bytes of one record of a sorted run: the code, then the full vector where the index keeps it.
fn record_size(plan: &Plan, refine: Option<RefineElem>, d: usize) -> usize {
    plan.code_size(d) + refine.map_or(0, |r| r.vector_bytes)
}

fn plan(spec: &IndexSpec) -> Result<Plan> {
    match *spec {
        IndexSpec::Ivf { nlist, hnsw_m, payload: Payload::Pq { m }, refine } => {
            Ok(Plan { nlist, hnsw_m, pq_m: m, pq_nbits: 8, by_residual: true, refine, flat: false })
        }
        IndexSpec::Ivf { nlist, hnsw_m, payload: Payload::PqFastScan { m, residual }, refine } => {
            Ok(Plan { nlist, hnsw_m, pq_m: m, pq_nbits: 4, by_residual: residual, refine, flat: false })
        }
        // faiss's IndexIVFFlat: the vectors themselves in the lists, exact distances.
        IndexSpec::Ivf { nlist, hnsw_m, payload: Payload::Flat, refine } => {
            Ok(Plan { nlist, hnsw_m, pq_m: 0, pq_nbits: 0, by_residual: false, refine, flat: true })
        }
        IndexSpec::Hnsw { .. } => Err(Error::Unsupported(format!(
            "{spec} builds its graph over the vectors in RAM, with no training and no streaming: it has no IVF plan"
        ))),
    }
}

/// Everything a build will need, worked out before it starts (`quiver build --dry-run`).
#[derive(Clone, Debug)]
pub struct BuildPlan {
    pub ntotal: u64,
    pub dim: usize,
    pub nlist: usize,
    pub two_level_kmeans: bool,
    /// `,RFlat`: the full vectors are kept (in vectors files beside the segments).
    pub refine: bool,
    /// The memory budget's split and the sizes derived from it.
    pub budget: BudgetPlan,
    /// Temporary and final disk bytes, and the serving index's RAM.
    pub disk: DiskPlan,
    /// Where the sorted runs go.
    pub runs_dir: PathBuf,
    /// Estimated wall time per stage on this many threads (see `estimate`).
    pub stages: Vec<StageEstimate>,
    pub threads: usize,
    /// How the time estimate is made: the machine its costs were measured on.
    pub estimate_basis: &'static str,
}

impl BuildPlan {
    pub fn estimated_s(&self) -> f64 {
        self.stages.iter().map(|s| s.seconds).sum()
    }
}

/// Works out what a build of `source` into `dir` needs (memory split, disk, serving RAM, time)
/// without building anything or touching `dir`.
pub fn plan_build(source: &dyn VectorSource, dir: &Path, opts: &BuildOptions) -> Result<BuildPlan> {
    let (n, d) = (source.len(), source.dim());
    if let IndexSpec::Hnsw { m, payload } = opts.factory.parse()? {
        let budget = graph::memory_plan(opts, n, d, m, payload)?;
        let final_bytes = graph::graph_disk_bytes(n, d, m, payload);
        return Ok(BuildPlan {
            ntotal: n as u64,
            dim: d,
            nlist: 0,
            two_level_kmeans: false,
            refine: false,
            disk: DiskPlan { final_bytes, serving_ram: budget.resident, ..Default::default() },
            budget,
            runs_dir: dir.to_owned(),
            stages: Vec::new(),
            threads: rayon::current_num_threads(),
            estimate_basis: estimate::REFERENCE,
        });
    }
    let (_, plan, _) = opts.check_input(n, d)?;
    let mem = opts.memory_plan(source)?;
    let disk = disk_plan(opts, &plan, &mem, n, d, refine_elem(&plan, source.elem(), opts.metric, d));
    let two_level = plan.two_level(opts.kmeans);
    let threads = rayon::current_num_threads();
    let stages = estimate::estimate(&estimate::EstimateShape {
        n: n as u64,
        d: d as u64,
        nlist: plan.nlist as u64,
        hnsw_m: plan.hnsw_m as u64,
        train_rows: mem.train_rows as u64,
        niter: opts.niter as u64,
        ef_construction: opts.ef_construction as u64,
        ef_search: opts.ef_search as u64,
        two_level,
        threads: threads as u64,
        runs_bytes: disk.runs_bytes,
        segments_bytes: disk.segments_bytes,
        merge_passes: disk.merge_passes as u64,
    });
    let id = index_id(opts, &opts.factory.parse()?, n, d);
    Ok(BuildPlan {
        ntotal: n as u64,
        dim: d,
        nlist: plan.nlist,
        two_level_kmeans: two_level,
        refine: plan.refine,
        budget: mem,
        disk,
        runs_dir: runs_dir(dir, opts.tmp_dir.as_deref(), id),
        stages,
        threads,
        estimate_basis: estimate::REFERENCE,
    })
}

/// The disk a build of `n` × `d` vectors needs under the memory plan `mem` (a run's record and
/// an index's bytes per vector both grow by the full vector where `refine` keeps it).
fn disk_plan(
    opts: &BuildOptions,
    plan: &Plan,
    mem: &BudgetPlan,
    n: usize,
    d: usize,
    refine: Option<RefineElem>,
) -> DiskPlan {
    disk::disk_plan(&disk::DiskShape {
        n: n as u64,
        d: d as u64,
        nlist: plan.nlist as u64,
        hnsw_m: plan.hnsw_m as u64,
        code_size: record_size(plan, refine, d) as u64,
        chunk_rows: mem.chunk_rows as u64,
        fan_in: mem.merge_fan_in as u64,
        max_extent_vectors: mem.max_extent_vectors as u64,
        segment_bytes: opts.segment_bytes,
    })
}

/// Where the runs of build `index_id` go.
fn runs_dir(dir: &Path, tmp_dir: Option<&Path>, index_id: [u8; 16]) -> PathBuf {
    match tmp_dir {
        Some(t) => t.join(format!("quiver-build-{}", index_id.iter().map(|b| format!("{b:02x}")).collect::<String>())),
        None => dir.join(store::STAGING),
    }
}

/// Builds an index from `source` into `dir` (new or empty; or holding an unfinished build, see
/// [`BuildOptions::unfinished`]).
///
/// The build checkpoints as it goes (the trained quantizer and codebooks, then every sorted
/// run); after a crash or a kill, the same call with [`Unfinished::Resume`] continues from the
/// last checkpoint and produces the same bytes as an uninterrupted build.
///
/// ```no_run
/// use quiver::{build_index, BuildOptions, NoProgress, VectorFile};
/// let base = VectorFile::open("base.fvecs")?;
/// let opts = BuildOptions { factory: "IVF4096_HNSW32,PQ32".into(), ..Default::default() };
/// let report = build_index(&base, "my-index".as_ref(), &opts, &NoProgress)?;
/// println!("{} vectors in {:.1} s", report.ntotal, report.total_s);
/// # Ok::<(), quiver::Error>(())
/// ```
pub fn build_index(
    source: &dyn VectorSource,
    dir: &Path,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    if let IndexSpec::Hnsw { m, payload } = opts.factory.parse()? {
        return graph::build_graph_index(source, dir, opts, m, payload, progress);
    }
    let t0 = Instant::now();
    let (n, d) = (source.len(), source.dim());
    let (spec, plan, requested) = opts.check_input(n, d)?;
    let refine = refine_elem(&plan, source.elem(), opts.metric, d);
    let mem = opts.memory_plan(source)?;
    let train_size = mem.train_rows;
    let index_id = index_id(opts, &spec, n, d);
    let state = format::BuildState {
        body: format::BuildStateBody {
            params: params(opts, &spec, &plan, n, d, train_size, refine),
            input_fingerprint: checkpoint::input_fingerprint(source)?.into(),
            input_elem: elem_code(source.elem()),
            two_level: plan.two_level(opts.kmeans) as u8,
            reserved0: [0; 2],
            segment_bytes: opts.segment_bytes.into(),
            max_extent_vectors: (mem.max_extent_vectors as u64).into(),
            memory_budget: mem.total.into(),
            tmp_dir_len: 0.into(),
            reserved: [0; 4],
        },
        tmp_dir: opts.tmp_dir.as_ref().map(|p| p.display().to_string()),
    };

    // Decide what to do with the directory, and check the disk, before changing anything.
    let resume = match how_to_start(dir, opts, &state, index_id)? {
        Start::Fresh => false,
        Start::Resume => true,
        Start::Over => {
            store::Staging::discard(dir)?;
            return build_index(
                source,
                dir,
                &BuildOptions { unfinished: Unfinished::Refuse, ..opts.clone() },
                progress,
            );
        }
    };
    let runs_at = runs_dir(dir, opts.tmp_dir.as_deref(), index_id);
    let credit = if resume { existing_run_bytes(&runs_at) } else { 0 };
    let dplan = disk_plan(opts, &plan, &mem, n, d, refine);
    disk::check_space(&dplan, dir, &runs_at, credit)?;

    if train_size < requested {
        log::warn!(
            "the memory budget ({}) holds a training sample of {train_size} vectors, not the {requested} asked for; raise --memory for the full sample",
            crate::error::human_bytes(mem.total)
        );
    }
    let mut staging = if resume { store::Staging::resume(dir)? } else { store::Staging::begin(dir)? };
    let area = staging.area();
    if !resume {
        checkpoint::save_state(&area, &state, index_id)?;
    }
    failpoint::hit("start");

    let shape = checkpoint::TrainedShape {
        index_id,
        d,
        metric: opts.metric,
        nlist: plan.nlist,
        hnsw_m: plan.hnsw_m,
        pq_m: plan.pq_m,
        pq_nbits: plan.pq_nbits,
    };
    let mut report = BuildReport {
        ntotal: n as u64,
        dim: d,
        nlist: plan.nlist,
        train_size,
        train_size_requested: requested,
        two_level_kmeans: plan.two_level(opts.kmeans),
        budget: mem.clone(),
        disk: dplan,
        resumed: resume,
        ..Default::default()
    };
    let trained = match checkpoint::load_trained(&area, &shape)? {
        Some(t) => {
            log::info!("resuming: the trained quantizer and codebooks are read from {}", area.display());
            t
        }
        None => {
            let t = train::train(source, opts, &plan, train_size, progress)?;
            (report.sample_s, report.kmeans_s, report.hnsw_s, report.pq_s) = (t.sample_s, t.kmeans_s, t.hnsw_s, t.pq_s);
            checkpoint::save_trained(&area, index_id, t.coarse, t.pq.as_ref())?;
            staging.keep_on_failure();
            failpoint::hit("trained");
            // Read back, so that a fresh and a resumed build stream with the same bytes.
            checkpoint::load_trained(&area, &shape)?.ok_or_else(|| Error::Corrupt {
                file: area.join(store::QUANTIZER).display().to_string(),
                reason: "unreadable right after it was written".into(),
            })?
        }
    };
    staging.keep_on_failure();
    let (coarse, pq) = trained;
    let codec = match pq {
        Some(pq) => Codec::new(pq),
        None => Codec::flat(d, opts.metric),
    };
    report.train_s = t0.elapsed().as_secs_f64();

    std::fs::create_dir_all(&runs_at).at(&runs_at)?;
    let (mut runs, gaps) =
        checkpoint::usable_runs(&runs_at, n as u64, plan.nlist, record_size(&plan, refine, d), index_id)?;
    if resume && !runs.is_empty() {
        let covered: u64 = runs.iter().map(|r| r.end - r.first).sum();
        log::info!("resuming: {} sorted runs cover {covered} of {n} vectors", runs.len());
    }
    let target =
        spill::SpillTarget { dir: &runs_at, index_id, nlist: plan.nlist, by_residual: plan.by_residual, refine };
    runs.extend(spill::spill_runs(source, &coarse, &codec, opts, mem.chunk_rows, &gaps, &target, progress)?);
    runs.sort_by_key(|r| r.first);
    drop(coarse);
    report.add_s = t0.elapsed().as_secs_f64() - report.train_s;

    let merged = merge::merge_runs(
        runs,
        &merge::MergeParams::new(
            index_id,
            &codec,
            (plan.nlist, n as u64, opts.segment_bytes),
            &mem,
            refine.map(|r| r.shape(d)),
        ),
        dir,
        progress,
    )?;
    let mut files = merged.segment_files;
    files.push(checkpoint::link_into_index(&area, dir, store::QUANTIZER, FileKind::Quantizer)?);
    if !plan.flat {
        files.push(checkpoint::link_into_index(&area, dir, store::CODEBOOKS, FileKind::Codebooks)?);
    }
    files.push(write_directory(dir, index_id, &merged.directory)?);
    durable::sync_dir(dir).at(dir)?;
    report.merge_s = t0.elapsed().as_secs_f64() - report.train_s - report.add_s;

    let manifest = Manifest {
        index_id,
        body: ManifestBody::first(state.body.params),
        files: files.into_iter().map(|f| f.written_by(1)).collect(),
    };
    let bytes = manifest.encode();
    staging.commit(1, &bytes, || failpoint::hit("committed"))?;
    if opts.tmp_dir.is_some() && runs_at.exists() {
        std::fs::remove_dir_all(&runs_at).at(&runs_at)?;
    }
    report.index_bytes = manifest.files.iter().map(|f| f.size.get()).sum::<u64>() + bytes.len() as u64;
    report.segments = merged.directory.n_segments as usize;
    report.total_s = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// How a build begins in `dir`.
enum Start {
    /// The directory is missing or empty.
    Fresh,
    /// It holds this build, unfinished, and `--resume` was given.
    Resume,
    /// It holds an unfinished build to be discarded first.
    Over,
}

/// Decides, from what `dir` holds and the options, how the build begins; refuses (naming the
/// way out) what it must not touch. Changes nothing but another build's `--tmp-dir` runs when
/// discarding.
fn how_to_start(dir: &Path, opts: &BuildOptions, state: &format::BuildState, index_id: [u8; 16]) -> Result<Start> {
    Ok(match (store::dir_state(dir)?, opts.unfinished) {
        (store::DirState::Missing | store::DirState::Empty, _) => Start::Fresh,
        (store::DirState::Unfinished, Unfinished::Resume) => {
            let area = dir.join(store::STAGING);
            match checkpoint::load_state(&area) {
                Ok((old, old_id)) => {
                    let diff = checkpoint::differences(&old, state);
                    if !diff.is_empty() || old_id != index_id {
                        return Err(Error::ResumeRefused {
                            path: dir.to_owned(),
                            reason: format!(
                                "it was started with other input or options ({}); run it with those, or start over with --discard-unfinished",
                                if diff.is_empty() { "a different build id".to_string() } else { diff.join("; ") }
                            ),
                        });
                    }
                    if old.tmp_dir != state.tmp_dir {
                        return Err(Error::ResumeRefused {
                            path: dir.to_owned(),
                            reason: format!(
                                "it keeps its sorted runs in {}; resume with that --tmp-dir",
                                old.tmp_dir.as_deref().unwrap_or("its staging area (no --tmp-dir)")
                            ),
                        });
                    }
                }
                Err(e) => {
                    // Killed before its build state was durable (it is written first), so
                    // there is nothing else to keep.
                    log::warn!("{}: unreadable ({e}); the build starts from the beginning", area.display());
                    return Ok(Start::Over);
                }
            }
            Start::Resume
        }
        (store::DirState::Unfinished, Unfinished::Discard) => {
            if let Ok((old, old_id)) = checkpoint::load_state(&dir.join(store::STAGING)) {
                if let Some(t) = old.tmp_dir {
                    let runs = runs_dir(dir, Some(Path::new(&t)), old_id);
                    if runs.exists() {
                        std::fs::remove_dir_all(&runs).at(&runs)?;
                    }
                }
            }
            Start::Over
        }
        (store::DirState::Unfinished, Unfinished::Refuse) => {
            return Err(Error::UnfinishedBuild { path: dir.to_owned(), checkpoints: describe_unfinished(dir) });
        }
        (store::DirState::Finished, Unfinished::Resume) => {
            return Err(Error::ResumeRefused {
                path: dir.to_owned(),
                reason: "it holds a finished index (a MANIFEST); there is nothing to resume".into(),
            });
        }
        (store::DirState::Foreign { name }, Unfinished::Resume) => {
            return Err(Error::ResumeRefused {
                path: dir.to_owned(),
                reason: format!("it holds files that no quiver build wrote (such as {name}); quiver leaves them alone"),
            });
        }
        (store::DirState::Finished | store::DirState::Foreign { .. }, _) => {
            return Err(Error::DirectoryNotEmpty { path: dir.to_owned() });
        }
    })
}

/// Bytes of the (well-named) runs already in `dir`.
fn existing_run_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| run::parse_run_name(&e.file_name().to_string_lossy()).is_some())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// What an unfinished build in `dir` has done, for the message that offers to resume it.
fn describe_unfinished(dir: &Path) -> String {
    let area = dir.join(store::STAGING);
    let Ok((state, id)) = checkpoint::load_state(&area) else {
        return "killed before its first checkpoint".into();
    };
    let trained = area.join(store::QUANTIZER).exists() && area.join(store::CODEBOOKS).exists();
    let runs = runs_dir(dir, state.tmp_dir.as_deref().map(Path::new), id);
    let covered: u64 = std::fs::read_dir(&runs)
        .map(|it| {
            it.flatten().filter_map(|e| run::parse_run_name(&e.file_name().to_string_lossy())).map(|(a, b)| b - a).sum()
        })
        .unwrap_or(0);
    let total = state.body.params.ntotal.get();
    match (trained, covered) {
        (false, _) => "started, not yet trained".into(),
        (true, 0) => "trained; no vectors streamed yet".into(),
        (true, c) => format!("trained; sorted runs cover {c} of {total} vectors"),
    }
}

fn elem_code(e: crate::input::Elem) -> u8 {
    match e {
        crate::input::Elem::F32 => 0,
        crate::input::Elem::U8 => 1,
        crate::input::Elem::I8 => 2,
        crate::input::Elem::F16 => 3,
        crate::input::Elem::I32 => 4,
        crate::input::Elem::I64 => 5,
    }
}

/// A deterministic id from the build's inputs, so that a seeded build is byte-identical and a
/// file from another index is still told apart.
fn index_id(opts: &BuildOptions, spec: &IndexSpec, n: usize, d: usize) -> [u8; 16] {
    let salt = format::crc32c(format!("{spec}/{}/{n}/{d}", opts.metric).as_bytes()) as u64;
    let mut r = Rng::new(opts.seed ^ (salt << 32) ^ 0x7175_6976);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&r.next_u64().to_le_bytes());
    id[8..].copy_from_slice(&r.next_u64().to_le_bytes());
    id
}

fn params(
    opts: &BuildOptions,
    spec: &IndexSpec,
    plan: &Plan,
    n: usize,
    d: usize,
    train_size: usize,
    refine: Option<RefineElem>,
) -> Params {
    let mut factory = [0u8; 64];
    let s = spec.to_string();
    factory[..s.len().min(64)].copy_from_slice(&s.as_bytes()[..s.len().min(64)]);
    Params {
        dim: (d as u32).into(),
        metric: metric_code(opts.metric),
        code_layout: match plan.pq_nbits {
            _ if plan.flat => format::CODE_LAYOUT_FLAT,
            4 => format::CODE_LAYOUT_PQ4FS,
            _ => format::CODE_LAYOUT_PQ8,
        },
        raw_codes: !plan.by_residual as u8,
        refine: refine.map_or(0, |r| r.code),
        nlist: (plan.nlist as u32).into(),
        pq_m: (plan.pq_m as u32).into(),
        pq_nbits: (plan.pq_nbits as u32).into(),
        hnsw_m: (plan.hnsw_m as u32).into(),
        ef_construction: (opts.ef_construction as u32).into(),
        ef_search: (opts.ef_search as u32).into(),
        niter: (opts.niter as u32).into(),
        reserved1: 0.into(),
        ntotal: (n as u64).into(),
        seed: opts.seed.into(),
        train_size: (train_size as u64).into(),
        factory,
    }
}

pub(crate) fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::L2 => format::METRIC_L2,
        Metric::InnerProduct => format::METRIC_INNER_PRODUCT,
        Metric::Cosine => format::METRIC_COSINE,
    }
}

/// Writes the list directory (fsynced) and returns its manifest entry.
fn write_directory(dir: &Path, index_id: [u8; 16], directory: &format::Directory) -> Result<FileEntry> {
    let name = store::DIRECTORY;
    let bytes = directory.encode(index_id);
    let path = dir.join(name);
    let f = std::fs::File::create(&path).at(&path)?;
    std::io::Write::write_all(&mut &f, &bytes).at(&path)?;
    durable::sync_file(&f).at(&path)?;
    let payload_crc = format::FileHeader::decode(name, FileKind::Directory, &bytes)?.payload_crc.get();
    Ok(FileEntry::new(name, FileKind::Directory, bytes.len() as u64, payload_crc))
}

/// Whether the training sample stays in the input's one-byte element type (uint8/int8 input
/// whose rows need no normalising), a quarter of float32's memory.
pub(crate) fn sample_keeps_bytes(source: &dyn VectorSource, metric: Metric) -> bool {
    matches!(source.elem(), crate::input::Elem::U8 | crate::input::Elem::I8) && !metric.normalizes()
}

/// Normalises rows in place when the metric asks for it (cosine).
pub(crate) fn prepare_rows(metric: Metric, x: &mut [f32], d: usize) {
    if metric.normalizes() {
        x.chunks_exact_mut(d).for_each(distance::normalize);
    }
}
