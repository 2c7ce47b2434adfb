//! One module per subcommand; each parses its own flags and writes to an injected `Write`.

pub mod bench;
pub mod build;
pub mod change;
pub mod demo;
pub mod gen;
pub mod gt;
pub mod inspect;
pub mod search;
pub mod serve;
pub mod tune;
pub mod verify;

use std::path::Path;

use crate::args::usage;
use crate::eval::GroundTruth;

pub type CmdResult = Result<(), Box<dyn std::error::Error>>;

/// Flags of the commands that read one index and describe it (`inspect`, `verify`).
#[derive(clap::Args)]
pub struct IndexArgs {
    /// Index directory.
    #[arg(long)]
    pub index: std::path::PathBuf,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The index and the queries of the commands that search (`search`, `tune`).
#[derive(clap::Args)]
pub struct SearchTarget {
    /// Index directory.
    #[arg(long)]
    pub index: std::path::PathBuf,
    /// Query vectors (any supported format).
    #[arg(long)]
    pub queries: std::path::PathBuf,
}

/// A rayon pool of `threads` (0 = one per core).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, Box<dyn std::error::Error>> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?)
}

/// Ground truth for `nq` queries over an index whose ids are below `next_id`, checked before
/// any search: enough rows, and every id one the index could hold (ids past it mean the file
/// belongs to another base, and would silently score recall 0).
pub fn load_ground_truth(path: &Path, nq: usize, next_id: u64) -> Result<GroundTruth, Box<dyn std::error::Error>> {
    let f = quiver::VectorFile::open(path)?;
    let ids = f.read_all_i32()?;
    let depth = f.dim();
    if f.len() < nq {
        return usage(format!(
            "--gt {}: {} rows for {nq} queries; is it the ground truth of this query file?",
            path.display(),
            f.len()
        ));
    }
    if let Some(pos) = ids[..nq * depth].iter().position(|&id| id < 0 || id as u64 >= next_id) {
        return usage(format!(
            "--gt {}: row {}, column {} holds id {}, past every id of the index (below {next_id}); is it the ground truth of another base?",
            path.display(),
            pos / depth,
            pos % depth,
            ids[pos]
        ));
    }
    Ok(GroundTruth { depth, ids })
}

/// The query file's vectors, checked against the index's dimension before any search.
pub fn load_queries(path: &Path, dim: usize) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let f = quiver::VectorFile::open(path)?;
    if f.dim() != dim {
        return usage(format!(
            "--queries {}: queries have dimension {}, the index holds {dim}-dimensional vectors",
            path.display(),
            f.dim()
        ));
    }
    Ok(f.read_all_f32()?)
}
