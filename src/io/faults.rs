//! Fault injection for the durability tests, in redb's manner: every durability step of a
//! writer (an fsync of a file or a directory, a rename, a hard link) goes through
//! [`super::durable`], which reports it here. Armed on a directory tree, this layer counts
//! those steps and either fails the N-th with an I/O error, or simulates a crash there: that
//! step and every later one fail, and [`crash`] then rewrites the tree to what was durable —
//! each directory's entries as of its last fsync, each file's bytes as of its last fsync (empty
//! if it never had one), as a power cut would leave them under the media assumptions of
//! format-spec/07-commit-and-recovery.md. Writes that were not fsynced are lost whole, the
//! pessimistic case; a plain `kill -9` (nothing lost) is the other, tested by killing
//! processes.
//!
//! Disarmed (always, outside these tests) a step costs one relaxed atomic load.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What the armed layer does at step `at` (0-based; None: only count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The step returns an I/O error; later steps run.
    Fail,
    /// The step and every later one return an I/O error; [`crash`] then leaves only what was
    /// durable.
    Crash,
}

/// A file's identity across renames and links: a number given at its first durability step.
type FileId = u64;

#[derive(Clone, Debug)]
enum Node {
    /// A file and its bytes as of its last fsync (None: never fsynced, so empty after a crash).
    File(Option<FileId>),
    Dir,
}

struct Sim {
    root: PathBuf,
    at: Option<u64>,
    fault: Fault,
    steps: u64,
    crashed: bool,
    next_id: FileId,
    /// The file each path names now (as far as durability steps have seen).
    live: HashMap<PathBuf, FileId>,
    /// Each file's bytes at its last fsync.
    synced: HashMap<FileId, Vec<u8>>,
    /// Each directory's entries at its last fsync.
    durable: HashMap<PathBuf, BTreeMap<String, Node>>,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static SIM: Mutex<Option<Sim>> = Mutex::new(None);

fn sim() -> std::sync::MutexGuard<'static, Option<Sim>> {
    SIM.lock().unwrap_or_else(|e| e.into_inner())
}

/// Arms the layer on the tree at `root` (which must exist): what is there now counts as
/// durable; steps under `root` are counted, and step `at` gets `fault`.
pub fn arm(root: &Path, at: Option<u64>, fault: Fault) -> std::io::Result<()> {
    let root = root.canonicalize()?;
    let mut s = Sim {
        root: root.clone(),
        at,
        fault,
        steps: 0,
        crashed: false,
        next_id: 0,
        live: HashMap::new(),
        synced: HashMap::new(),
        durable: HashMap::new(),
    };
    s.snapshot_tree(&root)?;
    *sim() = Some(s);
    ARMED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Disarms the layer; returns the steps counted.
pub fn disarm() -> u64 {
    ARMED.store(false, Ordering::SeqCst);
    sim().take().map_or(0, |s| s.steps)
}

/// Disarms the layer and rewrites the armed tree to what was durable (see the module's
/// comment); returns the steps counted.
pub fn crash() -> std::io::Result<u64> {
    ARMED.store(false, Ordering::SeqCst);
    let Some(s) = sim().take() else { return Ok(0) };
    fs::remove_dir_all(&s.root)?;
    s.restore(&s.root)?;
    Ok(s.steps)
}

impl Sim {
    fn snapshot_tree(&mut self, dir: &Path) -> std::io::Result<()> {
        let mut entries = BTreeMap::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let (name, path) = (e.file_name().to_string_lossy().into_owned(), e.path());
            if e.file_type()?.is_dir() {
                self.snapshot_tree(&path)?;
                entries.insert(name, Node::Dir);
            } else {
                let id = self.id_of(&path);
                self.synced.insert(id, fs::read(&path)?);
                entries.insert(name, Node::File(Some(id)));
            }
        }
        self.durable.insert(dir.to_owned(), entries);
        Ok(())
    }

    fn id_of(&mut self, path: &Path) -> FileId {
        *self.live.entry(path.to_owned()).or_insert_with(|| {
            self.next_id += 1;
            self.next_id
        })
    }

    fn restore(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let Some(entries) = self.durable.get(dir) else { return Ok(()) };
        for (name, node) in entries {
            let path = dir.join(name);
            match node {
                Node::Dir => self.restore(&path)?,
                Node::File(id) => {
                    let bytes = id.and_then(|i| self.synced.get(&i)).map_or(&[][..], Vec::as_slice);
                    fs::write(&path, bytes)?;
                }
            }
        }
        Ok(())
    }

    fn under_root(&self, p: &Path) -> bool {
        p.starts_with(&self.root)
    }
}

/// Whether a test armed the layer.
pub(crate) fn armed() -> bool {
    ARMED.load(Ordering::Relaxed)
}

/// Counts one durability step on `path`; the error the plan asks for, if any.
pub(crate) fn step(path: &Path) -> std::io::Result<()> {
    if !ARMED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut guard = sim();
    let Some(s) = guard.as_mut() else { return Ok(()) };
    let path = absolute(path);
    if !s.under_root(&path) {
        return Ok(());
    }
    let n = s.steps;
    s.steps += 1;
    if s.crashed {
        return Err(injected("after the simulated crash", &path));
    }
    if s.at == Some(n) {
        if s.fault == Fault::Crash {
            s.crashed = true;
        }
        return Err(injected(&format!("at step {n}"), &path));
    }
    Ok(())
}

fn injected(when: &str, path: &Path) -> std::io::Error {
    std::io::Error::other(format!("injected fault {when} ({})", path.display()))
}

fn absolute(p: &Path) -> PathBuf {
    match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => match parent.canonicalize() {
            Ok(dir) => dir.join(p.file_name().unwrap_or_default()),
            Err(_) => p.to_owned(),
        },
        _ => p.canonicalize().unwrap_or_else(|_| p.to_owned()),
    }
}

/// Records `f`'s bytes as durable (after its fsync).
pub(crate) fn synced_file(f: &File) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    let Ok(path) = fs::read_link(&fd_path) else { return };
    let mut bytes = Vec::new();
    if File::open(&fd_path).and_then(|mut r| r.read_to_end(&mut bytes)).is_err() {
        return;
    }
    let mut guard = sim();
    let Some(s) = guard.as_mut().filter(|s| s.under_root(&path)) else { return };
    let id = s.id_of(&path);
    s.synced.insert(id, bytes);
}

/// Records `dir`'s entries as durable (after its fsync).
pub(crate) fn synced_dir(dir: &Path) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let dir = absolute(dir);
    let Ok(listing) = fs::read_dir(&dir) else { return };
    let mut guard = sim();
    let Some(s) = guard.as_mut().filter(|s| s.under_root(&dir)) else { return };
    let mut entries = BTreeMap::new();
    for e in listing.flatten() {
        let (name, path) = (e.file_name().to_string_lossy().into_owned(), e.path());
        let node = if e.file_type().is_ok_and(|t| t.is_dir()) {
            Node::Dir
        } else {
            Node::File(s.live.get(&path).copied().filter(|id| s.synced.contains_key(id)))
        };
        entries.insert(name, node);
    }
    s.durable.insert(dir, entries);
}

/// `from` now also (link) or only (rename) goes by `to`.
pub(crate) fn moved(from: &Path, to: &Path, keep_from: bool) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let (from, to) = (absolute(from), absolute(to));
    let mut guard = sim();
    let Some(s) = guard.as_mut() else { return };
    let id = if keep_from { s.live.get(&from).copied() } else { s.live.remove(&from) };
    match id {
        Some(id) => s.live.insert(to, id),
        None => s.live.remove(&to),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::durable;
    use std::io::Write;

    /// After a crash a tree holds what was fsynced: a synced file under a synced name keeps
    /// its bytes as of the fsync, a name never synced vanishes, a file never synced is
    /// empty, a rename without its directory's fsync is undone; a failed step is counted and
    /// reported, and later ones still run.
    #[test]
    fn a_crash_leaves_what_was_durable() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("old"), b"before").unwrap();
        arm(&root, None, Fault::Crash).unwrap();
        let mut f = File::create(root.join("a")).unwrap();
        f.write_all(b"synced").unwrap();
        durable::sync_file(&f).unwrap();
        f.write_all(b" and lost").unwrap();
        fs::write(root.join("never-synced"), b"x").unwrap();
        durable::sync_dir(&root).unwrap();
        fs::write(root.join("late"), b"y").unwrap();
        durable::write_atomic(&root, "b", b"whole").unwrap();
        let mut t = File::create(root.join("t")).unwrap();
        t.write_all(b"renamed").unwrap();
        durable::sync_file(&t).unwrap();
        durable::publish(&root.join("t"), &root.join("old")).unwrap();
        fs::write(root.join("vanishes"), b"z").unwrap();
        assert_eq!(crash().unwrap(), 8, "two fsyncs, three for write_atomic, one, and publish's two");
        // `publish` synced the directory, so the rename is durable.
        assert_eq!(fs::read(root.join("a")).unwrap(), b"synced");
        assert_eq!(fs::read(root.join("never-synced")).unwrap(), b"");
        // Its name became durable with write_atomic's directory fsync, its bytes never did.
        assert_eq!(fs::read(root.join("late")).unwrap(), b"");
        assert_eq!(fs::read(root.join("b")).unwrap(), b"whole");
        assert_eq!(fs::read(root.join("old")).unwrap(), b"renamed");
        assert!(!root.join("vanishes").exists() && !root.join("t").exists());

        arm(&root, Some(1), Fault::Fail).unwrap();
        let g = File::create(root.join("c")).unwrap();
        durable::sync_file(&g).unwrap();
        assert!(durable::sync_dir(&root).unwrap_err().to_string().contains("injected fault at step 1"));
        durable::sync_file(&g).unwrap();
        assert_eq!(disarm(), 3);
    }
}
