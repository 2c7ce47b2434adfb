//! A reader's hold on one generation. An open index keeps its manifest file open with a shared
//! `flock` on it; a writer removes an old generation's manifest only after taking an exclusive
//! `flock` on it without waiting, so while any process reads a generation its manifest, and so
//! every file it names, stays. The kernel drops the lock when the reader exits, however it
//! exits, so a killed reader holds nothing back for long.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::names::manifest_name;
use super::open::{decode_manifest, manifest_generations, SkippedManifest};
use crate::error::{Error, IoContext, Result};
use crate::format::Manifest;

/// How often a reader retries when a writer removed the manifest it was about to lock (each
/// retry sees a newer generation, so this only ends a pathological loop).
const RETRIES: usize = 64;

/// One generation held open: its manifest, decoded, and the shared lock that keeps a writer
/// from removing it.
#[derive(Debug)]
pub struct Snapshot {
    pub manifest: Manifest,
    /// The manifest's file name.
    pub name: String,
    /// Newer generations whose manifests did not verify, passed over.
    pub skipped: Vec<SkippedManifest>,
    _held: File,
}

impl Snapshot {
    /// The newest generation of `dir` whose manifest verifies, held.
    pub fn open_newest(dir: &Path) -> Result<Snapshot> {
        'retry: for _ in 0..RETRIES {
            let mut skipped = Vec::new();
            let mut first_error = None;
            for (gen, path) in manifest_generations(dir)? {
                let name = manifest_name(gen);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    // Removed by a writer since the listing: list again.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'retry,
                    Err(e) => return Err(e).at(&path),
                };
                lock_shared(&file).at(&path)?;
                // A writer that took its exclusive lock first has unlinked the file by now.
                if file.metadata().at(&path)?.nlink() == 0 {
                    continue 'retry;
                }
                match read_held(&file, gen, &path) {
                    Ok(manifest) => {
                        for SkippedManifest { generation, reason } in &skipped {
                            log::warn!(
                                "{}: skipped generation {generation} ({reason}); opened generation {gen}",
                                dir.display()
                            );
                        }
                        return Ok(Snapshot { manifest, name, skipped, _held: file });
                    }
                    Err(e) => {
                        skipped.push(SkippedManifest { generation: gen, reason: e.to_string() });
                        first_error.get_or_insert(e);
                    }
                }
            }
            return Err(first_error.unwrap_or_else(|| Error::NotAnIndex { path: dir.to_owned() }));
        }
        Err(Error::Unsupported(format!(
            "{}: generations changed under every one of {RETRIES} attempts to open; is a writer looping?",
            dir.display()
        )))
    }

    pub fn generation(&self) -> u64 {
        self.manifest.body.generation.get()
    }
}

fn read_held(mut file: &File, gen: u64, path: &Path) -> Result<Manifest> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).at(path)?;
    decode_manifest(gen, &bytes)
}

/// Waits for a shared lock (a writer holds its exclusive one only while it unlinks).
fn lock_shared(file: &File) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor `file` owns for the call; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a reader holds `file` (a manifest): tries the exclusive lock without waiting. On
/// `Ok(false)` the caller holds it until `file` is closed, and no reader can take it before.
pub(crate) fn held_by_reader(file: &File) -> std::io::Result<bool> {
    // SAFETY: as in `lock_shared`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(false);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(true)
    } else {
        Err(e)
    }
}
