//! A disk that fills during a build. Simulated with RLIMIT_FSIZE (writes past the limit fail
//! with EFBIG, SIGXFSZ ignored), which everything here, running as root, still obeys. This is
//! its own test binary because the limit applies to the whole process.
//!
//! (The up-front free-space check cannot see this limit: RLIMIT_FSIZE bounds a file's size,
//! not the file system's free space, so the build starts and fails where the write fails.)

mod common;

use common::*;
use quiver::{build_index, Error, Index, Metric, NoProgress, SearchParams, SliceSource};

/// Runs `f` with files limited to `bytes` (writes past it fail with EFBIG).
fn with_file_limit<T>(bytes: u64, f: impl FnOnce() -> T) -> T {
    // SAFETY: plain libc calls with valid arguments; ignoring SIGXFSZ makes an oversize write
    // return EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let r = f();
    // SAFETY: as above.
    unsafe {
        let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
    }
    r
}

#[test]
fn a_full_disk_fails_the_build_with_the_path_and_keeps_older_indexes() {
    let (d, n) = (32, 20_000);
    let (base, q) = synthetic(n, 2, d, 31);
    let parent = tempfile::tempdir().unwrap();
    let old = parent.path().join("old");
    build_slice(&base[..2_000 * d], d, &old, &opts("IVF8_HNSW8,PQ8", Metric::L2));

    let new = parent.path().join("new");
    let e = with_file_limit(256 * 1024, || {
        build_index(&SliceSource { data: &base, dim: d }, &new, &opts("IVF32_HNSW8,PQ32", Metric::L2), &NoProgress)
    });
    match e {
        Err(Error::Io { path, source }) => {
            assert!(path.starts_with(&new), "{}", path.display());
            assert_eq!(source.raw_os_error(), Some(libc::EFBIG), "{source}");
        }
        other => panic!("expected an I/O error, got {:?}", other.map(|r| r.ntotal)),
    }
    // The half-built index is gone; the checkpoints made before the disk filled are kept, and
    // a resume once there is room again finishes the build.
    assert_eq!(names(&new), [".build-tmp", "LOCK"], "the checkpoints and the writers' lock file");
    let idx = Index::open(&old).unwrap();
    assert!(
        idx.search(&q, &SearchParams { k: 3, nprobe: 8, ef_search: 16, ..Default::default() }).is_ok(),
        "the older index is untouched"
    );
    let resume =
        quiver::BuildOptions { unfinished: quiver::Unfinished::Resume, ..opts("IVF32_HNSW8,PQ32", Metric::L2) };
    let r = build_index(&SliceSource { data: &base, dim: d }, &new, &resume, &NoProgress).unwrap();
    assert!(r.resumed);
    assert!(Index::open(&new)
        .unwrap()
        .search(&q, &SearchParams { k: 3, nprobe: 8, ef_search: 16, ..Default::default() })
        .is_ok());

    // A re-rank index: the runs (4,000 rows each) and the segment fit under 1 MiB, its vectors
    // file (2.5 MB) does not, so the disk fills while the vectors are written.
    let rf = parent.path().join("rf");
    let rflat = quiver::BuildOptions { chunk_size: 4_000, ..opts("IVF32_HNSW8,PQ32,RFlat", Metric::L2) };
    let e = with_file_limit(1 << 20, || build_index(&SliceSource { data: &base, dim: d }, &rf, &rflat, &NoProgress));
    match e {
        Err(Error::Io { path, source }) => {
            assert!(path.ends_with("vec-000000.qvv"), "{}", path.display());
            assert_eq!(source.raw_os_error(), Some(libc::EFBIG), "{source}");
        }
        other => panic!("expected an I/O error, got {:?}", other.map(|r| r.ntotal)),
    }
    assert_eq!(names(&rf), [".build-tmp", "LOCK"], "the half-written segment and vectors file are removed");
    let resume = quiver::BuildOptions { unfinished: quiver::Unfinished::Resume, ..rflat };
    assert!(build_index(&SliceSource { data: &base, dim: d }, &rf, &resume, &NoProgress).unwrap().resumed);
    assert!(quiver::verify_index(&rf).unwrap().is_ok());
    let p = SearchParams { k: 3, nprobe: 8, ef_search: 16, k_factor: 4, ..Default::default() };
    assert!(Index::open(&rf).unwrap().search(&q, &p).is_ok());

    // A graph index: its vectors file (2.5 MB) does not fit under 1 MiB. The build keeps no
    // checkpoints, so it leaves nothing behind (not even the directory it created), and the
    // same build with room succeeds.
    let g = parent.path().join("graph");
    let e = with_file_limit(1 << 20, || {
        build_index(&SliceSource { data: &base, dim: d }, &g, &opts("HNSW8,Flat", Metric::L2), &NoProgress)
    });
    match e {
        Err(Error::Io { path, source }) => {
            assert!(path.ends_with("vectors.qvv"), "{}", path.display());
            assert_eq!(source.raw_os_error(), Some(libc::EFBIG), "{source}");
        }
        other => panic!("expected an I/O error, got {:?}", other.map(|r| r.ntotal)),
    }
    assert!(!g.exists(), "the half-written graph index is removed");
    build_slice(&base, d, &g, &opts("HNSW8,Flat", Metric::L2));
    let p = SearchParams { k: 3, ef_search: 16, ..Default::default() };
    assert!(Index::open(&g).unwrap().search(&q, &p).is_ok());

    // An addition to `old` (2,000 vectors) of 18,000 more: its sorted runs fit under 256 KiB,
    // its segment (1.3 MB) does not. The index stays at its generation with its results, and
    // the half-written segment is gone at once.
    let p = SearchParams { k: 5, nprobe: 8, ..Default::default() };
    let before = (names(&old), Index::open(&old).unwrap().search(&q, &p).unwrap().ids);
    let change = quiver::ChangeOptions { chunk_size: 2_000, ..Default::default() };
    let more = SliceSource { data: &base[2_000 * d..], dim: d };
    let e = with_file_limit(256 * 1024, || quiver::add_vectors(&old, &more, None, &change, &NoProgress));
    match e {
        Err(Error::Io { path, source }) => {
            assert!(path.ends_with("seg-000001.qvs"), "{}", path.display());
            assert_eq!(source.raw_os_error(), Some(libc::EFBIG), "{source}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_eq!((names(&old), Index::open(&old).unwrap().search(&q, &p).unwrap().ids), before);
    assert!(quiver::verify_index(&old).unwrap().is_ok());
    assert_eq!(quiver::add_vectors(&old, &more, None, &change, &NoProgress).unwrap().ntotal, n as u64);
}

/// The names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}
