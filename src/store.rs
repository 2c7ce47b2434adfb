//! The index directory: file names, and finding the newest manifest generation.
//!
//! ```text
//! MANIFEST-000001   commit point, written last and atomically
//! quantizer.qvq     centroids + HNSW graph      (RAM-resident)
//! codebooks.qvc     PQ codebooks                (RAM-resident)
//! lists.qvd         list directory: extents     (RAM-resident)
//! seg-000000.qvs    segment files: extents of PQ codes + ids, read per query
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub const QUANTIZER: &str = "quantizer.qvq";
pub const CODEBOOKS: &str = "codebooks.qvc";
pub const DIRECTORY: &str = "lists.qvd";
/// Scratch space of a build in progress (sorted runs); removed when the build ends.
pub const BUILD_TMP: &str = ".build-tmp";

pub fn manifest_name(generation: u64) -> String {
    format!("MANIFEST-{generation:06}")
}

pub fn segment_name(n: u32) -> String {
    format!("seg-{n:06}.qvs")
}

/// The newest manifest generation in `dir` and its path.
pub fn latest_manifest(dir: &Path) -> Result<(u64, PathBuf)> {
    if !dir.exists() {
        return Err(Error::MissingIndex { path: dir.to_owned() });
    }
    let mut best: Option<u64> = None;
    for entry in fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name();
        let Some(gen) = name.to_str().and_then(|s| s.strip_prefix("MANIFEST-")).and_then(|g| g.parse::<u64>().ok())
        else {
            continue;
        };
        best = best.max(Some(gen));
    }
    let gen = best.ok_or_else(|| Error::NotAnIndex { path: dir.to_owned() })?;
    Ok((gen, dir.join(manifest_name(gen))))
}

/// Creates `dir` if needed; refuses a directory that already holds anything.
/// Returns whether the directory was created here (so a failed build can remove it).
pub fn prepare_new(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::DirectoryNotEmpty { path: dir.to_owned() });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).at(dir)?;
            Ok(true)
        }
        Err(e) => Err(e).at(dir),
    }
}
