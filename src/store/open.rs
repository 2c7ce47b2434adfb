//! Finding what to open: the manifest generations of a directory, newest first, and the newest
//! one that verifies.

use std::fs;
use std::path::{Path, PathBuf};

use super::names::manifest_name;
use crate::error::{Error, IoContext, Result};
use crate::format;

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
        let Some(gen) = name.to_str().and_then(super::names::parse_manifest_name) else {
            continue;
        };
        gens.push((gen, dir.join(name)));
    }
    if gens.is_empty() {
        if dir.join(super::names::STAGING).is_dir() {
            return Err(Error::UnfinishedBuild {
                path: dir.to_owned(),
                checkpoints: "not an index yet: interrupted before its commit".into(),
            });
        }
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
    decode_manifest(gen, &fs::read(path).at(path)?)
}

/// Decodes the bytes of generation `gen`'s manifest, checking that it records that generation.
pub(crate) fn decode_manifest(gen: u64, bytes: &[u8]) -> Result<format::Manifest> {
    let name = manifest_name(gen);
    let m = format::Manifest::decode(&name, bytes)?;
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
