//! Commit of a new generation and removal of what no generation needs. Both run under the
//! writer's lock. A generation's files stay while its manifest does; a manifest older than the
//! newest goes once no reader holds it ([`super::Snapshot`]), and then every file quiver writes
//! that no remaining manifest names goes with it — including what a killed writer left.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::lock::WriterLock;
use super::names::*;
use super::open::{manifest_generations, read_manifest};
use super::snapshot::held_by_reader;
use crate::error::{Error, IoContext, Result};
use crate::format::Manifest;
use crate::io::durable;

/// The generation a writer commits next: one past the newest manifest present, whether it
/// verifies or not, so that no name is ever written twice.
pub fn next_generation(dir: &Path) -> Result<u64> {
    Ok(manifest_generations(dir)?.first().map_or(1, |g| g.0 + 1))
}

/// Publishes `manifest` (its generation must be [`next_generation`]'s): written under a
/// temporary name, fsynced, renamed, the directory fsynced. The rename is the commit point.
pub fn publish(dir: &Path, manifest: &Manifest, _lock: &WriterLock) -> Result<()> {
    let g = manifest.body.generation.get();
    let name = manifest_name(g);
    if dir.join(&name).exists() {
        return Err(Error::Corrupt { file: name, reason: "exists already: generations are never rewritten".into() });
    }
    durable::write_atomic(dir, &name, &manifest.encode()).at(dir)
}

/// What [`collect_garbage`] removed and kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Garbage {
    /// Files (and scratch directories) removed.
    pub removed: Vec<String>,
    /// Their bytes (files only).
    pub bytes: u64,
    /// Generations kept: the newest, and older ones a reader holds.
    pub kept: Vec<u64>,
}

/// Removes the generations older than the newest that no reader holds, then every file quiver
/// writes that no remaining generation names (segments, vectors files, list directories,
/// deletion sets, temporary manifests and scratch areas left by a killed writer). Files quiver
/// does not write are never touched. When a manifest newer than the newest sound one is
/// damaged, nothing but old manifests is removed: what it names cannot be known.
pub fn collect_garbage(dir: &Path, _lock: &WriterLock) -> Result<Garbage> {
    let mut out = Garbage::default();
    let mut damaged_newer = false;
    let mut keep: Vec<Manifest> = Vec::new();
    for (gen, path) in manifest_generations(dir)? {
        if keep.is_empty() {
            match read_manifest(gen, &path) {
                Ok(m) => keep.push(m),
                Err(e) => {
                    log::warn!("{}: generation {gen} does not verify ({e}); its files are left alone", dir.display());
                    damaged_newer = true;
                }
            }
            continue;
        }
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at(&path),
        };
        if held_by_reader(&file).at(&path)? {
            keep.push(read_manifest(gen, &path)?);
            continue;
        }
        // Unlinked while the exclusive lock is held: a reader that opened the file meanwhile
        // sees it unlinked once it gets its shared lock, and opens a newer generation.
        fs::remove_file(&path).at(&path)?;
        out.removed.push(manifest_name(gen));
    }
    out.kept = keep.iter().map(|m| m.body.generation.get()).collect();
    if keep.is_empty() || damaged_newer {
        sync_if(dir, !out.removed.is_empty())?;
        return Ok(out);
    }
    let named: HashSet<String> = keep.iter().flat_map(|m| m.files.iter().map(|f| f.name())).collect();
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name == STAGING || name == WRITE_STAGING {
            // A manifest exists and the writer's lock is ours: nobody is using it.
            fs::remove_dir_all(&path).at(&path)?;
            out.removed.push(name);
        } else if is_manifest_temporary(&name) || (is_index_file(&name) && !named.contains(&name)) {
            out.bytes += e.metadata().map_or(0, |m| m.len());
            fs::remove_file(&path).at(&path)?;
            out.removed.push(name);
        }
    }
    sync_if(dir, !out.removed.is_empty())?;
    if !out.removed.is_empty() {
        log::info!("{}: removed {} unused files ({} bytes)", dir.display(), out.removed.len(), out.bytes);
    }
    Ok(out)
}

fn sync_if(dir: &Path, changed: bool) -> Result<()> {
    if changed {
        durable::sync_dir(dir).at(dir)?;
    }
    Ok(())
}
