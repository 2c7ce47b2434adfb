//! The crate's error: one enum composing the layers' errors. Every variant says what failed,
//! where (file, offset, list, query) and, where there is a remedy, what to do.

use std::path::PathBuf;

use crate::format::FormatError;
use crate::hnsw::GraphError;
use crate::input::InputError;
use crate::kmeans::KMeansError;
use crate::pq::PqError;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} does not exist; build an index there with `quiver build --index {path}`")]
    MissingIndex { path: PathBuf },
    #[error("{path} is not a quiver index (no MANIFEST-* file in it); build one with `quiver build`")]
    NotAnIndex { path: PathBuf },
    #[error("{path} exists and is not empty; quiver builds only into a new or empty directory and never overwrites")]
    DirectoryNotEmpty { path: PathBuf },
    #[error("{path} holds an unfinished build ({checkpoints}); continue it with the same `quiver build` command and --resume, or delete it and start over with --discard-unfinished")]
    UnfinishedBuild { path: PathBuf, checkpoints: String },
    #[error("{path} is being changed by another quiver process{}; wait for it to finish (a writer that dies releases the directory at once)", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, holder: Option<u32> },
    #[error("cannot resume a build in {path}: {reason}")]
    ResumeRefused { path: PathBuf, reason: String },
    #[error("not enough free disk at {path}: the build needs {} there ({detail}), {} is free; free some space, or put the sorted runs on another disk with --tmp-dir DIR", human_bytes(*need), human_bytes(*available))]
    DiskTooSmall { path: PathBuf, need: u64, available: u64, detail: String },
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("{name} = {value} is out of range: {lo} ..= {hi}")]
    OutOfRange { name: &'static str, value: u64, lo: u64, hi: u64 },
    #[error("{have} training vectors for nlist = {nlist} and 256 PQ centroids: need at least {need} (more input, a larger train_size, or a smaller nlist)")]
    TrainingSetTooSmall { have: usize, need: usize, nlist: usize },
    #[error("query {query} has {got} components, the index holds {expected}-dimensional vectors")]
    DimensionMismatch { query: usize, got: usize, expected: usize },
    #[error("query {query}, component {col} is {value}; queries must be finite")]
    NonFiniteQuery { query: usize, col: usize, value: f32 },
    #[error("training failed: {0}")]
    Training(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{file}: {reason}; the index is damaged: rebuild it or restore it from a copy")]
    Corrupt { file: String, reason: String },
    #[error("{what} needs {bytes} bytes of memory, which this machine cannot allocate; {hint}")]
    OutOfMemory { what: String, bytes: u64, hint: String },
    #[error("a memory budget of {} cannot hold {what}: it needs at least {}; raise the budget (--memory), or lower nlist or the training size", human_bytes(*budget), human_bytes(*need))]
    BudgetTooSmall { what: String, need: u64, budget: u64 },
}

/// A byte count as people read it: `1.5 GiB`, `300.0 MiB`, `512 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// An empty vector with room for `len` elements, or [`Error::OutOfMemory`] where that is more
/// than the machine's memory or the allocator refuses (instead of aborting the process).
pub(crate) fn try_vec<T>(len: usize, what: impl FnOnce() -> String, hint: &str) -> Result<Vec<T>> {
    let bytes = (len as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    let mut v = Vec::new();
    if !crate::io::fits_in_memory(bytes) || v.try_reserve_exact(len).is_err() {
        return Err(Error::OutOfMemory { what: what(), bytes, hint: hint.into() });
    }
    Ok(v)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<KMeansError> for Error {
    fn from(e: KMeansError) -> Self {
        Error::Training(e.to_string())
    }
}

impl From<PqError> for Error {
    fn from(e: PqError) -> Self {
        match e {
            PqError::Indivisible { .. } => Error::InvalidParameter(e.to_string()),
            other => Error::Training(other.to_string()),
        }
    }
}

impl From<GraphError> for Error {
    fn from(e: GraphError) -> Self {
        Error::Corrupt { file: crate::store::QUANTIZER.into(), reason: e.to_string() }
    }
}

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.into(), source })
    }
}
