//! The writer's lock: one process at a time changes an index directory (a build now; add,
//! delete and compact as they come). It is an advisory `flock` on the directory's `LOCK`
//! file, so it cannot go stale: the kernel releases it when the holding process exits, however
//! it exits (a `kill -9` included). The file itself stays; its content is the last holder's
//! process id, for the message a refused writer gets. Readers take no lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::names::LOCK;
use crate::error::{Error, IoContext, Result};

/// Held while a writer changes the directory; released when dropped.
#[derive(Debug)]
pub struct WriterLock {
    path: PathBuf,
    _file: File,
}

impl WriterLock {
    /// Takes the lock of `dir` (which must exist), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<WriterLock> {
        let path = dir.join(LOCK);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        // SAFETY: flock on a descriptor this function owns for the call; it touches no memory.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(e).at(&path);
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::Locked { path: dir.to_owned(), holder: holder.trim().parse().ok() });
        }
        // Informational only (the lock is the flock): who holds it, for the refusal above.
        file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).at(&path)?;
        write!(file, "{}", std::process::id()).at(&path)?;
        Ok(WriterLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second writer is refused with the holder's process id until the first lets go; the
    /// lock is per open file, so this holds within one process as across two.
    #[test]
    fn one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        match WriterLock::acquire(dir.path()) {
            Err(Error::Locked { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("a second writer got {other:?}"),
        }
        let e = WriterLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("another quiver process") && e.contains(&std::process::id().to_string()), "{e}");
        drop(first);
        let again = WriterLock::acquire(dir.path()).unwrap();
        assert!(again.path().ends_with(LOCK));
        assert!(WriterLock::acquire(&dir.path().join("missing")).is_err(), "the directory must exist");
    }
}
