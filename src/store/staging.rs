//! A build in progress and its commit. A build writes only into a directory that is new or
//! empty when it begins, or that holds an unfinished build it resumes; its scratch files and
//! checkpoints live in the staging area inside it; the manifest, written atomically, is the
//! commit point, after which the staging area is removed.
//!
//! Dropped without a commit, a staging removes what it created, except that once a checkpoint
//! is durable ([`Staging::keep_on_failure`]) the staging area stays, so that `--resume` can
//! continue from it; the index's own partial files are removed either way.

use std::fs;
use std::path::{Path, PathBuf};

use super::lock::WriterLock;
use super::names::{is_index_file, is_manifest_temporary, manifest_name, parse_manifest_name, LOCK, STAGING};
use crate::error::{Error, IoContext, Result};
use crate::io::durable;

/// What a directory holds, as a build sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirState {
    Missing,
    Empty,
    /// A staging area, no manifest, and nothing but files a build writes.
    Unfinished,
    /// A manifest: a finished index (perhaps with the staging area of its build left over,
    /// when the build was killed between its commit and the area's removal).
    Finished,
    /// Files that are no part of a quiver build; `name` is one of them.
    Foreign {
        name: String,
    },
}

/// Whether `name` is a file an (unfinished) build writes into the index directory itself.
fn written_by_a_build(name: &str) -> bool {
    name == STAGING || is_index_file(name) || is_manifest_temporary(name)
}

/// Looks at `dir` without changing anything.
pub fn dir_state(dir: &Path) -> Result<DirState> {
    let entries = match fs::read_dir(dir) {
        Ok(it) => it,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Missing),
        Err(e) => return Err(e).at(dir),
    };
    let (mut any, mut staging, mut manifest, mut foreign) = (false, false, false, None);
    for e in entries {
        let name = e.at(dir)?.file_name().to_string_lossy().into_owned();
        if name == LOCK {
            // The writers' lock: a directory holding only it is as empty as one without.
            continue;
        }
        any = true;
        if name == STAGING {
            staging = true;
        } else if parse_manifest_name(&name).is_some() {
            manifest = true;
        } else if !written_by_a_build(&name) && foreign.is_none() {
            foreign = Some(name);
        }
    }
    Ok(match (any, manifest, staging, foreign) {
        (false, ..) => DirState::Empty,
        (_, true, ..) => DirState::Finished,
        (_, _, _, Some(name)) => DirState::Foreign { name },
        (_, _, true, None) => DirState::Unfinished,
        (_, _, false, None) => DirState::Foreign { name: "files of a build that kept no staging area".into() },
    })
}

pub struct Staging {
    dir: PathBuf,
    created_dir: bool,
    committed: bool,
    keep: bool,
    resumed: bool,
    /// Held until the staging is dropped (after its commit, or its clean-up).
    _lock: WriterLock,
}

impl Staging {
    /// Begins a build in `dir`: creates it if needed, takes the writer's lock, refuses a
    /// directory that holds anything, and creates the staging area.
    pub fn begin(dir: &Path) -> Result<Staging> {
        let created_dir = match dir_state(dir)? {
            DirState::Missing => {
                fs::create_dir_all(dir).at(dir)?;
                true
            }
            DirState::Empty => false,
            _ => return Err(Error::DirectoryNotEmpty { path: dir.to_owned() }),
        };
        let lock = WriterLock::acquire(dir)?;
        // Again under the lock: another writer may have begun (and even finished) in between.
        if dir_state(dir)? != DirState::Empty {
            return Err(Error::DirectoryNotEmpty { path: dir.to_owned() });
        }
        let staging =
            Staging { dir: dir.to_owned(), created_dir, committed: false, keep: false, resumed: false, _lock: lock };
        let area = staging.area();
        fs::create_dir(&area).at(&area)?;
        durable::sync_dir(dir).at(dir)?;
        Ok(staging)
    }

    /// Continues the unfinished build in `dir`: keeps its staging area and removes the partial
    /// index files the interrupted build wrote beside it (they are rewritten from the
    /// checkpoints). The caller has checked that the directory is [`DirState::Unfinished`].
    pub fn resume(dir: &Path) -> Result<Staging> {
        let lock = unfinished(dir)?;
        remove_partial_outputs(dir)?;
        Ok(Staging {
            dir: dir.to_owned(),
            created_dir: false,
            committed: false,
            keep: true,
            resumed: true,
            _lock: lock,
        })
    }

    /// Removes the unfinished build in `dir` (staging area and partial files), leaving it empty.
    pub fn discard(dir: &Path) -> Result<()> {
        let _lock = unfinished(dir)?;
        remove_partial_outputs(dir)?;
        let area = dir.join(STAGING);
        fs::remove_dir_all(&area).at(&area)?;
        durable::sync_dir(dir).at(dir)
    }

    /// Whether this build continues an earlier one.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where scratch files and checkpoints go; removed after the commit.
    pub fn area(&self) -> PathBuf {
        self.dir.join(STAGING)
    }

    /// From now on a failure keeps the staging area: it holds a durable checkpoint.
    pub fn keep_on_failure(&mut self) {
        self.keep = true;
    }

    /// Publishes generation `generation`: writes the manifest atomically and durably
    /// (temporary, fsync, rename, fsync of the directory), then removes the staging area.
    /// Every file the manifest names must already be durable. `before_cleanup` runs between
    /// the two (the build's crash point for this window).
    pub fn commit(mut self, generation: u64, manifest: &[u8], before_cleanup: impl FnOnce()) -> Result<()> {
        let name = manifest_name(generation);
        let written = durable::write_atomic(&self.dir, &name, manifest);
        if written.is_err() && self.dir.join(&name).exists() {
            // The rename happened and only its fsync failed: the manifest names the index's
            // files, so they must stay whatever the error says (a crash now may or may not
            // keep the commit; either state is sound).
            self.committed = true;
        }
        written.at(&self.dir)?;
        self.committed = true;
        before_cleanup();
        // The index is committed: failing to remove scratch files must not report the build
        // as failed. A leftover area is not part of the index and is harmless.
        let area = self.area();
        if let Err(e) = fs::remove_dir_all(&area).and_then(|()| durable::sync_dir(&self.dir)) {
            log::warn!("the index is built, but its staging area {} could not be removed: {e}", area.display());
        }
        Ok(())
    }
}

/// The writer's lock of `dir`, which must hold an unfinished build (checked under the lock: a
/// build still running there holds the lock, and its directory looks unfinished too).
fn unfinished(dir: &Path) -> Result<WriterLock> {
    let refused = || Error::ResumeRefused { path: dir.to_owned(), reason: "it holds no unfinished build".into() };
    if dir_state(dir)? != DirState::Unfinished {
        return Err(refused());
    }
    let lock = WriterLock::acquire(dir)?;
    if dir_state(dir)? != DirState::Unfinished {
        return Err(refused());
    }
    Ok(lock)
}

/// Removes what a build writes into the index directory itself, keeping the staging area.
fn remove_partial_outputs(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != STAGING && written_by_a_build(&name) {
            let p = e.path();
            fs::remove_file(&p).at(&p)?;
        }
    }
    Ok(())
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.keep {
            if remove_partial_outputs(&self.dir).is_ok() {
                log::warn!(
                    "the build's checkpoints are kept in {}: run the same build again with --resume to continue it, or with --discard-unfinished to start over",
                    self.area().display()
                );
            }
        } else if self.created_dir {
            let _ = fs::remove_dir_all(&self.dir);
        } else if let Ok(entries) = fs::read_dir(&self.dir) {
            // The directory was empty when the build began: everything in it is ours.
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn an_uncommitted_build_leaves_nothing_and_a_committed_one_only_its_files() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("idx");
        let s = Staging::begin(&dir).unwrap();
        fs::write(s.area().join("run-0"), b"x").unwrap();
        fs::write(dir.join("seg-000000.qvs"), b"y").unwrap();
        drop(s);
        assert!(!dir.exists());
        let s = Staging::begin(&dir).unwrap();
        fs::write(dir.join("seg-000000.qvs"), b"y").unwrap();
        s.commit(1, b"manifest", || {}).unwrap();
        assert_eq!(names(&dir), [LOCK, "MANIFEST-000001", "seg-000000.qvs"]);
        assert_eq!(dir_state(&dir).unwrap(), DirState::Finished);
        assert!(matches!(Staging::begin(&dir), Err(Error::DirectoryNotEmpty { .. })));
    }

    #[test]
    fn a_checkpointed_build_keeps_its_staging_area_for_resume() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("idx");
        let mut s = Staging::begin(&dir).unwrap();
        fs::write(s.area().join("state"), b"x").unwrap();
        s.keep_on_failure();
        fs::write(dir.join("seg-000000.qvs"), b"partial").unwrap();
        drop(s);
        assert_eq!(names(&dir), [STAGING, LOCK]);
        assert_eq!(dir_state(&dir).unwrap(), DirState::Unfinished);
        fs::write(dir.join("lists.qvd"), b"partial").unwrap();
        let s = Staging::resume(&dir).unwrap();
        assert!(s.resumed());
        assert_eq!(names(&dir), [STAGING, LOCK], "partial outputs are removed on resume");
        assert!(s.area().join("state").exists());
        drop(s);
        Staging::discard(&dir).unwrap();
        assert_eq!(dir_state(&dir).unwrap(), DirState::Empty);
    }

    /// Two builds into one directory: the second is refused while the first runs (it holds
    /// the writer's lock), and the lock file alone leaves a directory empty to the next.
    #[test]
    fn a_second_writer_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("idx");
        let mut s = Staging::begin(&dir).unwrap();
        assert!(matches!(Staging::begin(&dir), Err(Error::DirectoryNotEmpty { .. })));
        s.keep_on_failure();
        assert!(matches!(Staging::resume(&dir), Err(Error::Locked { .. })), "the running build holds the lock");
        assert!(matches!(Staging::discard(&dir), Err(Error::Locked { .. })));
        drop(s);
        Staging::discard(&dir).unwrap();
        assert_eq!(names(&dir), [LOCK]);
        assert_eq!(dir_state(&dir).unwrap(), DirState::Empty);
        let s = Staging::begin(&dir).unwrap();
        s.commit(1, b"manifest", || {}).unwrap();
        assert_eq!(dir_state(&dir).unwrap(), DirState::Finished);
    }

    #[test]
    fn foreign_files_are_told_apart() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path();
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        assert_eq!(dir_state(dir).unwrap(), DirState::Foreign { name: "notes.txt".into() });
        fs::create_dir(dir.join(STAGING)).unwrap();
        assert!(matches!(dir_state(dir).unwrap(), DirState::Foreign { .. }), "a staging area does not make it ours");
        assert!(matches!(Staging::resume(dir), Err(Error::ResumeRefused { .. })));
        assert!(matches!(Staging::discard(dir), Err(Error::ResumeRefused { .. })));
        assert!(dir.join("notes.txt").exists());
    }
}
