//! One module per subcommand; each parses its own flags and writes to an injected `Write`.

pub mod build;
pub mod demo;
pub mod gen;
pub mod gt;
pub mod inspect;
pub mod search;
pub mod verify;

use std::path::Path;

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

/// A rayon pool of `threads` (0 = one per core).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, Box<dyn std::error::Error>> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?)
}

pub fn load_ground_truth(path: &Path) -> Result<GroundTruth, quiver::Error> {
    let f = quiver::VectorFile::open(path)?;
    Ok(GroundTruth { depth: f.dim(), ids: f.read_all_i32()? })
}

/// Parses "1,4,16,64".
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|t| t.trim().parse::<usize>().map_err(|_| format!("{t:?} is not a non-negative integer")))
        .collect()
}
