//! The writer's lock across processes. In a binary of its own: the test forks a process, and a
//! fork copies every descriptor the test process has open at that instant, locks included,
//! until the child execs; other tests taking and releasing locks in parallel threads would see
//! them held for that moment.

use std::time::{Duration, Instant};

use quiver::store::{WriterLock, LOCK};

/// A holder killed with SIGKILL leaves the file but not the lock. The holder is util-linux's
/// `flock` command on the same file (`--close`: the command it runs does not inherit the
/// lock); the test is skipped, saying so, where it is not installed.
#[test]
fn a_killed_writer_leaves_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join(LOCK);
    let child = std::process::Command::new("flock").arg("--close").arg(&lock).args(["sleep", "30"]).spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: a_killed_writer_leaves_no_lock: the `flock` command (util-linux) is not installed");
        return;
    };
    let start = Instant::now();
    while WriterLock::acquire(dir.path()).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "the child never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = WriterLock::acquire(dir.path()).unwrap_err().to_string();
    assert!(e.contains("another quiver process"), "{e}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lock.exists(), "the file stays");
    WriterLock::acquire(dir.path()).expect("a killed writer's lock is gone");
}
