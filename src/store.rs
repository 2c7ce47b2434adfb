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
use crate::format;

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

/// Whether `name` is a segment file name (`seg-<digits>.qvs`).
pub fn is_segment_name(name: &str) -> bool {
    name.strip_prefix("seg-")
        .and_then(|r| r.strip_suffix(".qvs"))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The manifest generations present in `dir`, newest first: opening takes the first whose
/// manifest verifies, so a damaged newest manifest does not hide an older good generation.
pub fn manifest_generations(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !dir.exists() {
        return Err(Error::MissingIndex { path: dir.to_owned() });
    }
    if !dir.is_dir() {
        return Err(Error::NotAnIndex { path: dir.to_owned() });
    }
    let mut gens = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name();
        let Some(gen) = name.to_str().and_then(|s| s.strip_prefix("MANIFEST-")).and_then(|g| g.parse::<u64>().ok())
        else {
            continue;
        };
        gens.push((gen, dir.join(name)));
    }
    if gens.is_empty() {
        return Err(Error::NotAnIndex { path: dir.to_owned() });
    }
    gens.sort_by_key(|g| std::cmp::Reverse(g.0));
    Ok(gens)
}

/// A newer manifest generation that opening passed over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedManifest {
    pub generation: u64,
    pub reason: String,
}

/// Reads and decodes the manifest of generation `gen` at `path`, checking that it records the
/// generation its name carries.
pub fn read_manifest(gen: u64, path: &Path) -> Result<format::Manifest> {
    let name = manifest_name(gen);
    let m = format::Manifest::decode(&name, &fs::read(path).at(path)?)?;
    if m.body.generation.get() != gen {
        return Err(Error::Corrupt {
            file: name,
            reason: format!("records generation {} but is named for {gen}", m.body.generation.get()),
        });
    }
    Ok(m)
}

/// Reads and decodes the newest manifest that verifies. Returns it with its file name and the
/// newer generations that failed (each also logged as a warning). When none verifies, the
/// newest one's error is returned.
pub fn open_newest_manifest(dir: &Path) -> Result<(format::Manifest, String, Vec<SkippedManifest>)> {
    let mut skipped = Vec::new();
    let mut first_error = None;
    for (gen, path) in manifest_generations(dir)? {
        let name = manifest_name(gen);
        let decoded = read_manifest(gen, &path);
        match decoded {
            Ok(m) => {
                for s in &skipped {
                    let SkippedManifest { generation, reason } = s;
                    log::warn!(
                        "{}: skipped generation {generation} ({reason}); opened generation {gen}",
                        dir.display()
                    );
                }
                return Ok((m, name, skipped));
            }
            Err(e) => {
                skipped.push(SkippedManifest { generation: gen, reason: e.to_string() });
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one manifest was tried"))
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
