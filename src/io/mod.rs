//! Moving bytes: page-aligned reads of many extents at once (io_uring with O_DIRECT, or `pread`
//! where io_uring is unavailable), and durable writes. This layer knows file descriptors,
//! offsets and aligned buffers; it knows nothing of the format or the algorithms.
//!
//! Reads follow "schedule, then wait": a [`Flight`] takes requests while others are in flight
//! and hands each buffer to a callback as its completion arrives, in whatever order the device
//! finishes them, so the caller scans one list while others are still being read, and adds the
//! next query's reads while the last ones of another are outstanding. [`Reader::read_all`] is
//! one batch of requests on a flight of its own.

mod aligned;
pub mod durable;
pub mod faults;
mod mapped;
mod pread;
mod uring;

pub use aligned::{AlignedBuf, ReadRequest, ALIGN};
pub use mapped::Mapped;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which engine to read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring where the kernel offers it, else pread (said once on stderr).
    #[default]
    Auto,
    /// io_uring or an error.
    Uring,
    /// Positional reads, one at a time.
    Pread,
}

/// The engine that actually served a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEngine {
    Uring,
    Pread,
}

impl IoEngine {
    /// Names as they appear in the `io` field of the search tool's JSON.
    pub fn name(self) -> &'static str {
        match self {
            IoEngine::Uring => "io_uring",
            IoEngine::Pread => "pread",
        }
    }
}

/// The machine's physical memory in bytes (`u64::MAX` if the system will not say).
pub fn physical_memory() -> u64 {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages <= 0 || size <= 0 {
        return u64::MAX;
    }
    (pages as u64).saturating_mul(size as u64)
}

/// Whether a buffer of `bytes` can possibly be held: no larger than physical memory. Checked
/// before allocating anything sized by a user or a file, because with overcommit an allocation
/// past RAM can succeed and then end in the OOM killer instead of an error.
pub fn fits_in_memory(bytes: u64) -> bool {
    bytes <= physical_memory()
}

/// How many files this process may have open (the soft RLIMIT_NOFILE; 1,024 if unknown).
pub fn max_open_files() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur > 0 {
        lim.rlim_cur
    } else {
        1024
    }
}

/// The file system that holds `path` (or would hold it: the nearest existing ancestor is asked
/// when `path` does not exist yet): its device number, and the bytes an unprivileged writer may
/// still use (statvfs's `f_bavail × f_frsize`).
pub fn disk_space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut p = path;
    let meta = loop {
        match std::fs::metadata(p) {
            Ok(m) => break m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match p.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                _ => {
                    p = Path::new(".");
                    break std::fs::metadata(p)?;
                }
            },
            Err(e) => return Err(e),
        }
    };
    let c =
        std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten; `c` is a NUL-terminated
    // path that outlives the call; statvfs writes only into the struct we pass.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((meta.dev(), (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)))
}

static URING_UNAVAILABLE: AtomicBool = AtomicBool::new(false);
static DIRECT_WARNED: AtomicBool = AtomicBool::new(false);

/// Opens `path` for reading with O_DIRECT so reads bypass the page cache (the index is larger
/// than RAM; caching it would only evict something useful). Filesystems that refuse O_DIRECT
/// (tmpfs, some overlays) get a buffered descriptor instead, and this is said once.
/// Returns the file and whether it is O_DIRECT.
pub fn open_for_reads(path: &Path) -> io::Result<(File, bool)> {
    match OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            if !DIRECT_WARNED.swap(true, Ordering::Relaxed) {
                log::warn!("{} does not support O_DIRECT; reading through the page cache", path.display());
            }
            Ok((File::open(path)?, false))
        }
        Err(e) => Err(e),
    }
}

/// A reader: an io_uring (created on first use and kept: one ring per reader, not per query)
/// with its buffers, reused across queries. Its owner (a search worker) uses it from one thread
/// at a time.
#[derive(Default)]
pub struct Reader {
    uring: Option<uring::UringReader>,
    /// The pread engine's buffer.
    buf: AlignedBuf,
}

impl Reader {
    pub const fn new() -> Self {
        Reader { uring: None, buf: AlignedBuf::new() }
    }

    /// Resolves `mode` to the engine this thread will use, creating its ring if needed.
    pub fn engine(&mut self, mode: IoMode) -> io::Result<IoEngine> {
        if mode == IoMode::Pread {
            return Ok(IoEngine::Pread);
        }
        if self.uring.is_some() {
            return Ok(IoEngine::Uring);
        }
        if mode == IoMode::Auto && URING_UNAVAILABLE.load(Ordering::Relaxed) {
            return Ok(IoEngine::Pread);
        }
        match uring::UringReader::new() {
            Ok(u) => {
                self.uring = Some(u);
                Ok(IoEngine::Uring)
            }
            Err(e) if mode == IoMode::Auto => {
                if !URING_UNAVAILABLE.swap(true, Ordering::Relaxed) {
                    log::warn!("io_uring unavailable ({e}); falling back to pread");
                }
                Ok(IoEngine::Pread)
            }
            Err(e) => Err(io::Error::new(e.kind(), format!("io_uring requested but unavailable: {e}"))),
        }
    }

    /// Reads every request and calls `on_done(i, bytes)` for request `i` once all its bytes
    /// have arrived. Completion order is the device's. If a read or a callback fails, no new
    /// reads are started, the ones in flight are drained (their buffers must outlive them), and
    /// the first error is returned.
    pub fn read_all<E: From<io::Error>>(
        &mut self,
        mode: IoMode,
        reqs: &[ReadRequest],
        mut on_done: impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<IoEngine, E> {
        self.flight(mode, |f| {
            for (i, r) in reqs.iter().enumerate() {
                f.add(*r, i as u64);
            }
            while f.pending() > 0 {
                f.wait(|tag, bytes| on_done(tag as usize, bytes))?;
            }
            Ok(f.engine())
        })
    }

    /// Runs `body` with a [`Flight`] on this reader's engine for `mode`: requests on files that
    /// live for `'f` added and their completions taken as `body` pleases. Every read still in
    /// flight when `body` returns (or fails, or panics) is waited for and discarded first.
    pub fn flight<'f, T, E: From<io::Error>>(
        &mut self,
        mode: IoMode,
        body: impl FnOnce(&mut Flight<'_, 'f>) -> Result<T, E>,
    ) -> Result<T, E> {
        let engine = self.engine(mode)?;
        if let Some(u) = self.uring.as_mut() {
            // What a batch that panicked left behind (the worker lives on).
            u.drain();
        }
        body(&mut Flight { reader: self, engine, preads: VecDeque::new() })
    }
}

/// Reads in flight on one [`Reader`], from several owners at once: each request carries a tag
/// that comes back with its bytes. With io_uring, requests added go to the device at the next
/// [`submit`](Flight::submit) or [`wait`](Flight::wait), at most the ring's depth at a time (the
/// rest as reads complete); with pread, each is read when `wait` comes to it.
pub struct Flight<'r, 'f> {
    reader: &'r mut Reader,
    engine: IoEngine,
    /// The pread engine's requests not yet read.
    preads: VecDeque<(ReadRequest<'f>, u64)>,
}

impl<'f> Flight<'_, 'f> {
    pub fn engine(&self) -> IoEngine {
        self.engine
    }

    pub fn add(&mut self, req: ReadRequest<'f>, tag: u64) {
        match self.reader.uring.as_mut().filter(|_| self.engine == IoEngine::Uring) {
            Some(u) => u.add(&req, tag),
            None => self.preads.push_back((req, tag)),
        }
    }

    /// Starts the reads added so far, so that the device works while the caller does.
    pub fn submit(&mut self) -> io::Result<()> {
        match self.reader.uring.as_mut().filter(|_| self.engine == IoEngine::Uring) {
            Some(u) => u.submit(),
            None => Ok(()),
        }
    }

    /// Requests added and not yet handed back.
    pub fn pending(&self) -> usize {
        match self.reader.uring.as_ref().filter(|_| self.engine == IoEngine::Uring) {
            Some(u) => u.pending(),
            None => self.preads.len(),
        }
    }

    /// Waits for at least one request to complete (returns at once if none is pending) and
    /// calls `on_done(tag, bytes)` for each that has. The first failed read or callback is
    /// returned; the caller should then stop adding (what is in flight is drained when the
    /// flight ends).
    pub fn wait<E: From<io::Error>>(&mut self, on_done: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
        match self.reader.uring.as_mut().filter(|_| self.engine == IoEngine::Uring) {
            Some(u) => u.wait(on_done),
            None => match self.preads.pop_front() {
                Some((r, tag)) => pread::read(&r, &mut self.reader.buf, tag, on_done),
                None => Ok(()),
            },
        }
    }
}

impl Drop for Flight<'_, '_> {
    fn drop(&mut self) {
        if let Some(u) = self.reader.uring.as_mut() {
            u.drain();
        }
    }
}

/// Adds where and what to an I/O error, so the message names the file and offset.
pub fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// One conformance suite, run on every engine: the same requests must give the same bytes,
/// completions may come in any order, and a read past the end is an error, not a hang.
#[cfg(test)]
mod conformance {
    use super::*;
    use std::io::Write;

    fn fixture(pages: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let bytes: Vec<u8> = (0..pages * ALIGN).map(|i| (i * 31 % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&bytes).unwrap();
        (dir, path, bytes)
    }

    fn engines() -> Vec<IoMode> {
        let mut v = vec![IoMode::Pread];
        if Reader::new().engine(IoMode::Uring).is_ok() {
            v.push(IoMode::Uring);
        } else {
            eprintln!("SKIPPED io_uring conformance: io_uring unavailable on this kernel");
        }
        v
    }

    #[test]
    fn disk_space_answers_for_paths_not_yet_created() {
        let d = tempfile::tempdir().unwrap();
        let (dev, free) = disk_space(d.path()).unwrap();
        let (dev2, _) = disk_space(&d.path().join("a/b/c")).unwrap();
        assert_eq!(dev, dev2);
        assert!(free > 0);
    }

    #[test]
    fn every_engine_returns_the_file_bytes() {
        let (_d, path, bytes) = fixture(64);
        let (f, _) = open_for_reads(&path).unwrap();
        let spans = [(0usize, 1usize), (5, 3), (63, 1), (10, 20), (1, 1)];
        let reqs: Vec<ReadRequest> =
            spans.iter().map(|&(p, n)| ReadRequest::new(&f, (p * ALIGN) as u64, n * ALIGN).unwrap()).collect();
        for mode in engines() {
            let mut seen = vec![false; reqs.len()];
            let engine = Reader::new()
                .read_all::<io::Error>(mode, &reqs, |i, got| {
                    let (p, n) = spans[i];
                    assert_eq!(got, &bytes[p * ALIGN..(p + n) * ALIGN]);
                    seen[i] = true;
                    Ok(())
                })
                .unwrap();
            assert!(seen.iter().all(|&s| s), "{engine:?} missed a completion");
        }
    }

    #[test]
    fn reads_past_the_end_fail_cleanly_and_the_reader_stays_usable() {
        let (_d, path, _) = fixture(2);
        let (f, _) = open_for_reads(&path).unwrap();
        let bad = [ReadRequest::new(&f, 0, ALIGN).unwrap(), ReadRequest::new(&f, 8 * ALIGN as u64, ALIGN).unwrap()];
        let good = [ReadRequest::new(&f, ALIGN as u64, ALIGN).unwrap()];
        for mode in engines() {
            let mut reader = Reader::new();
            let r = reader.read_all::<io::Error>(mode, &bad, |_, _| Ok(()));
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "{mode:?}");
            let mut n = 0;
            reader
                .read_all::<io::Error>(mode, &good, |_, _| {
                    n += 1;
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, 1);
        }
    }

    /// Requests larger than the registered arena spill into ordinary buffers; a ring whose
    /// registration was refused (RLIMIT_MEMLOCK for a user) reads the same bytes.
    #[test]
    fn arena_overflow_and_refused_registration_read_the_same_bytes() {
        let (_d, path, bytes) = fixture(3 * 1024);
        let (f, _) = open_for_reads(&path).unwrap();
        let spans = [(0usize, 1024usize), (1024, 1024), (2048, 1000), (7, 1)];
        let reqs: Vec<ReadRequest> =
            spans.iter().map(|&(p, n)| ReadRequest::new(&f, (p * ALIGN) as u64, n * ALIGN).unwrap()).collect();
        for refuse in [false, true] {
            uring::REFUSE_REGISTRATION.with(|r| r.set(refuse));
            let Ok(mut u) = uring::UringReader::new() else {
                eprintln!("SKIPPED io_uring registration test: io_uring unavailable");
                return;
            };
            uring::REFUSE_REGISTRATION.with(|r| r.set(false));
            assert_eq!(u.registered(), !refuse);
            let mut seen = 0;
            for (i, r) in reqs.iter().enumerate() {
                u.add(r, i as u64);
            }
            while u.pending() > 0 {
                u.wait::<io::Error>(|i, got| {
                    let (p, n) = spans[i as usize];
                    assert!(got == &bytes[p * ALIGN..(p + n) * ALIGN], "request {i}, refused = {refuse}");
                    seen += 1;
                    Ok(())
                })
                .unwrap();
            }
            assert_eq!(seen, spans.len());
        }
    }

    #[test]
    fn a_failing_callback_stops_the_batch_and_drains() {
        let (_d, path, _) = fixture(300);
        let (f, _) = open_for_reads(&path).unwrap();
        let reqs: Vec<ReadRequest> =
            (0..300).map(|p| ReadRequest::new(&f, (p * ALIGN) as u64, ALIGN).unwrap()).collect();
        for mode in engines() {
            let mut reader = Reader::new();
            let r = reader.read_all::<io::Error>(mode, &reqs, |_, _| Err(io::Error::other("stop")));
            assert_eq!(r.unwrap_err().to_string(), "stop");
            let mut n = 0;
            reader
                .read_all::<io::Error>(mode, &reqs, |_, _| {
                    n += 1;
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, 300, "{mode:?}: more requests than the ring depth must all complete");
        }
    }

    /// A flight takes requests while others are in flight — more than the ring holds, of sizes
    /// that leave the arena in pieces as they complete out of order — and hands each one's
    /// bytes back under its own tag, once.
    #[test]
    fn a_flight_takes_requests_while_others_are_in_flight() {
        let (_d, path, bytes) = fixture(4096);
        let (f, _) = open_for_reads(&path).unwrap();
        // A little LCG: the io layer imports nothing of the crate's.
        let mut state = 7u64;
        let mut below = |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let spans: Vec<(usize, usize)> = (0..700)
            .map(|_| {
                let n = 1 + below(40);
                (below(4096 - n), n)
            })
            .collect();
        for mode in engines() {
            let mut reader = Reader::new();
            for round in 0..2 {
                let mut seen = vec![0u32; spans.len()];
                let mut next = 0;
                reader
                    .flight::<_, io::Error>(mode, |fl| {
                        while next < spans.len() || fl.pending() > 0 {
                            // A few more each time: some land while earlier ones are outstanding.
                            for _ in 0..(1 + next % 5) {
                                if let Some(&(p, n)) = spans.get(next) {
                                    fl.add(ReadRequest::new(&f, (p * ALIGN) as u64, n * ALIGN).unwrap(), next as u64);
                                    next += 1;
                                }
                            }
                            fl.submit()?;
                            if next == spans.len() / 2 {
                                // Half the batch at once: more than the ring's depth.
                                while next < spans.len() {
                                    let (p, n) = spans[next];
                                    fl.add(ReadRequest::new(&f, (p * ALIGN) as u64, n * ALIGN).unwrap(), next as u64);
                                    next += 1;
                                }
                            }
                            fl.wait(|tag, got| {
                                let (p, n) = spans[tag as usize];
                                assert!(got == &bytes[p * ALIGN..(p + n) * ALIGN], "{mode:?}: request {tag}");
                                seen[tag as usize] += 1;
                                Ok::<(), io::Error>(())
                            })?;
                        }
                        Ok(())
                    })
                    .unwrap();
                assert!(seen.iter().all(|&s| s == 1), "{mode:?} round {round}: each request handed back once");
            }
        }
    }

    /// A callback that panics part-way through a flight leaves reads in flight; the reader is
    /// still usable afterwards (the next batch drains them first) and reads the right bytes.
    #[test]
    fn a_panicking_callback_leaves_a_usable_reader() {
        let (_d, path, bytes) = fixture(256);
        let (f, _) = open_for_reads(&path).unwrap();
        let reqs: Vec<ReadRequest> =
            (0..256).map(|p| ReadRequest::new(&f, (p * ALIGN) as u64, ALIGN).unwrap()).collect();
        for mode in engines() {
            let mut reader = Reader::new();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                reader.read_all::<io::Error>(mode, &reqs, |_, _| panic!("a scan went wrong"))
            }));
            assert!(r.is_err());
            let mut n = 0;
            reader
                .read_all::<io::Error>(mode, &reqs, |i, got| {
                    assert!(got == &bytes[i * ALIGN..(i + 1) * ALIGN], "{mode:?}: request {i}");
                    n += 1;
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, 256);
        }
    }
}
