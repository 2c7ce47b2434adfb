//! A build in progress and its commit. A build writes only into a directory that is new or
//! empty when it begins; its scratch files live in the staging area inside it; the manifest,
//! written last and atomically, is the commit point. Dropped without a commit, a staging
//! removes everything it created and nothing else.

use std::fs;
use std::path::{Path, PathBuf};

use super::names::{manifest_name, STAGING};
use crate::error::{Error, IoContext, Result};
use crate::io::durable;

pub struct Staging {
    dir: PathBuf,
    created_dir: bool,
    committed: bool,
}

impl Staging {
    /// Begins a build in `dir`: creates it if needed, refuses one that holds anything, and
    /// creates the staging area.
    pub fn begin(dir: &Path) -> Result<Staging> {
        let created_dir = match fs::read_dir(dir) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(Error::DirectoryNotEmpty { path: dir.to_owned() });
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).at(dir)?;
                true
            }
            Err(e) => return Err(e).at(dir),
        };
        let staging = Staging { dir: dir.to_owned(), created_dir, committed: false };
        let area = staging.area();
        fs::create_dir(&area).at(&area)?;
        Ok(staging)
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where scratch files go; removed at commit.
    pub fn area(&self) -> PathBuf {
        self.dir.join(STAGING)
    }

    /// Publishes generation `generation`: removes the staging area, then writes the manifest
    /// atomically and durably (temporary, fsync, rename, fsync of the directory). Every file it
    /// names must already be durable.
    pub fn commit(mut self, generation: u64, manifest: &[u8]) -> Result<()> {
        let area = self.area();
        fs::remove_dir_all(&area).at(&area)?;
        durable::write_atomic(&self.dir, &manifest_name(generation), manifest).at(&self.dir)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.created_dir {
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
        s.commit(1, b"manifest").unwrap();
        let mut names: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["MANIFEST-000001", "seg-000000.qvs"]);
        assert!(matches!(Staging::begin(&dir), Err(Error::DirectoryNotEmpty { .. })));
    }
}
