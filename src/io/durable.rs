//! The only module that calls fsync. Publishing a file atomically: write a temporary, fsync it,
//! rename it over the final name, fsync the directory so the rename itself is durable. Every
//! durability step (fsync, rename, link) is reported to [`super::faults`], which the crash
//! tests arm.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::{context, faults};

/// Writes `bytes` to `dir/name` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        sync_file(&f)?;
        rename(&tmp, &dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| context(e, format_args!("writing {}", dir.join(name).display())))
}

/// Renames a finished, already synced `tmp` over `target` (same directory) and makes the
/// rename durable: a reader sees the old file or the whole new one, never a partial one.
pub fn publish(tmp: &Path, target: &Path) -> io::Result<()> {
    rename(tmp, target)?;
    sync_dir(parent_dir(target))
}

/// Renames `from` to `to` (durable once their directory is synced).
fn rename(from: &Path, to: &Path) -> io::Result<()> {
    faults::step(to)?;
    fs::rename(from, to)?;
    faults::moved(from, to, false);
    Ok(())
}

/// Gives `from` a second name `to` (durable once its directory is synced).
pub fn hard_link(from: &Path, to: &Path) -> io::Result<()> {
    faults::step(to)?;
    fs::hard_link(from, to)?;
    faults::moved(from, to, true);
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a file's data and metadata to stable storage.
pub fn sync_file(f: &File) -> io::Result<()> {
    faults::step(&fd_path(f))?;
    f.sync_all()?;
    faults::synced_file(f);
    Ok(())
}

/// Makes directory entries (creates, renames) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    faults::step(dir)?;
    File::open(dir)?.sync_all()?;
    faults::synced_dir(dir);
    Ok(())
}

/// Where `f` lies, for the fault layer (a path that is never under an armed tree when the
/// layer is disarmed or the descriptor has no name).
fn fd_path(f: &File) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    if !faults::armed() {
        return std::path::PathBuf::new();
    }
    fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        write_atomic(d.path(), "M", b"one").unwrap();
        write_atomic(d.path(), "M", b"two").unwrap();
        assert_eq!(fs::read(d.path().join("M")).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_names_the_file() {
        let e = write_atomic(Path::new("/nonexistent/dir"), "M", b"x").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dir/M"), "{e}");
    }
}
