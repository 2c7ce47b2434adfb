//! Crash points, for the tests of resumable builds. When the environment variable
//! `QUIVER_FAILPOINT` is `name` or `name:k`, the process kills itself with SIGKILL the k-th time
//! (default: the first) the build passes the point `name`: no destructors, no flushed buffers,
//! what an OOM kill or a power cut leaves. Unset (always, outside tests), a point costs one
//! relaxed atomic load.
//!
//! Points: `start` (staging area and build state written, nothing else), `trained` (quantizer
//! and codebooks durable), `run` (after each sorted run), `pass` (after each merged run of a
//! multi-pass merge, before its inputs are removed), `segment` (after each segment file),
//! `committed` (manifest published, staging area not yet removed); and in a graph build
//! (`HNSW{M},…`), `start` and `written` (every file durable, no manifest yet).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

fn armed() -> Option<&'static (String, usize)> {
    static POINT: OnceLock<Option<(String, usize)>> = OnceLock::new();
    POINT
        .get_or_init(|| {
            let v = std::env::var("QUIVER_FAILPOINT").ok()?;
            let (name, k) = match v.split_once(':') {
                Some((n, k)) => (n.to_string(), k.parse().ok()?),
                None => (v, 1),
            };
            Some((name, k))
        })
        .as_ref()
}

pub(crate) fn hit(name: &str) {
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let Some((point, k)) = armed() else { return };
    if point == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *k {
        log::warn!("QUIVER_FAILPOINT: killing the process at `{name}` ({k})");
        // SAFETY: kill(2) on our own pid with a valid signal number; it does not return.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
