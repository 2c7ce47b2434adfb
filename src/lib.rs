//! # quiver
//!
//! Billion-scale approximate nearest-neighbour search on one machine whose data does not fit in
//! RAM: an IVF-PQ index with an HNSW coarse quantizer (faiss's `IVF65536_HNSW32,PQ32` family)
//! whose inverted lists live on disk in page-aligned segment files, read per query through
//! io_uring with O_DIRECT.
//!
//! ```text
//! build:  input -> sample -> train (k-means, HNSW, PQ) -> stream (assign, encode, spill) -> merge -> segments + manifest
//! search: open (manifest, quantizer, codebooks, list directory) -> probe (HNSW) -> read (io_uring) -> scan (ADC) -> top-k
//! ```
//!
//! RAM holds the centroids and their HNSW graph, the PQ codebooks and the list directory;
//! everything else stays on disk. The byte layout is specified in `format-spec/`.
//!
//! ```
//! use quiver::{build_index, BuildOptions, Index, Metric, NoProgress, SearchParams, SliceSource};
//! # let dir = tempfile::tempdir()?;
//! // 2,000 random 16-d vectors; in practice, `VectorFile::open("base.fvecs")?`.
//! let data: Vec<f32> = (0..2000 * 16).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
//! let opts = BuildOptions { factory: "IVF16_HNSW8,PQ4".into(), metric: Metric::L2, ..Default::default() };
//! build_index(&SliceSource { data: &data, dim: 16 }, dir.path(), &opts, &NoProgress)?;
//!
//! let index = Index::open(dir.path())?;
//! let res = index.search(&data[..16], &SearchParams { k: 5, nprobe: 4, ef_search: 16, ..Default::default() })?;
//! assert_eq!(res.ids_of(0).len(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Layers, with dependencies pointing one way (checked by `tests/layering.rs`): the algorithms
//! (`distance`, `topk`, `kmeans`, `pq`, `codec`, `hnsw`, `ivf`, `spec`) see slices and know no files;
//! `format` sees bytes and knows no algorithms; `io` moves bytes and knows neither; `input`
//! reads user files; the engine (`store`, `build`, `search`, `verify`) wires them together.

pub mod codec;
pub mod distance;
pub mod flat;
pub mod format;
pub mod hnsw;
pub mod input;
pub mod io;
pub mod ivf;
pub mod kmeans;
pub mod pq;
pub mod spec;
pub mod synthetic;
pub mod topk;
pub use topk::IdFilter;

mod build;
mod error;
mod rng;
mod search;
pub mod store;
mod verify;

pub use build::{
    add_vectors, build_index, commit_shards, compact, delete_ids, plan_build, prepare_shard, train_index, BudgetPlan,
    BuildOptions, BuildPlan, BuildReport, ChangeOptions, ChangeReport, DiskPlan, KMeansKind, NoProgress, Plan,
    Progress, StageEstimate, Unfinished,
};
pub use distance::Metric;
pub use error::human_bytes;
pub use error::{Error, Result};
pub use flat::ExactKnn;
pub use input::{Contents, InputError, SliceSource, VectorFile, VectorFiles, VectorSource, VectorWriter, MAX_DIM};
pub use io::{IoEngine, IoMode};
pub use ivf::CoarseSearch;
pub use rng::Rng;
pub use search::{
    Batch, CachePolicy, CompactionStats, Index, IndexInfo, OpenOptions, RefineVectors, SearchParams, SearchResults,
    SearchStats, Searcher, MAX_INFLIGHT, MAX_K_FACTOR, PRECOMPUTED_MIN_DSUB, PRECOMPUTED_TABLE_MAX_BYTES,
};
pub use spec::IndexSpec;
pub use store::SkippedManifest;
pub use synthetic::Synthetic;
pub use verify::{verify_index, Fault, ListStats, VerifyReport};

/// The README's code blocks, compiled and run as doc-tests so that what it shows stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
