//! Bad input gets a clear, typed error; nothing already on disk is lost.

mod common;

use common::*;
use quiver::{
    build_index, BuildOptions, Error, Index, InputError, Metric, NoProgress, SearchParams, SliceSource, VectorFile,
    VectorSource,
};

fn index() -> (tempfile::TempDir, usize) {
    let (d, n) = (8, 2_000);
    let (base, _) = synthetic(n, 0, d, 21);
    let dir = tempfile::tempdir().unwrap();
    build_slice(&base, d, dir.path(), &opts("IVF8_HNSW8,PQ4", Metric::L2));
    (dir, d)
}

#[test]
fn query_errors_are_typed() {
    let (dir, d) = index();
    let idx = Index::open(dir.path()).unwrap();
    let ok = SearchParams { k: 5, nprobe: 2, ef_search: 16, ..Default::default() };
    let q = vec![0.5f32; d];
    assert!(idx.search(&q, &ok).is_ok());
    assert!(matches!(idx.search(&q[..d - 1], &ok), Err(Error::DimensionMismatch { expected: 8, .. })));
    assert!(matches!(idx.search(&[], &ok), Err(Error::InvalidParameter(_))));
    let mut nan = q.clone();
    nan[3] = f32::NAN;
    assert!(matches!(idx.search(&nan, &ok), Err(Error::NonFiniteQuery { query: 0, col: 3, .. })));
    nan[3] = f32::INFINITY;
    assert!(matches!(idx.search(&nan, &ok), Err(Error::NonFiniteQuery { .. })));
    for bad in [
        SearchParams { k: 0, ..ok.clone() },
        SearchParams { k: 2_001, ..ok.clone() },
        SearchParams { nprobe: 0, ..ok.clone() },
        SearchParams { nprobe: 9, ..ok.clone() },
        SearchParams { ef_search: 0, ..ok.clone() },
    ] {
        let e = idx.search(&q, &bad).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter(_)), "{bad:?}: {e}");
    }
    // k larger than what the probed lists hold: padded with -1, as faiss does.
    let r = idx.search(&q, &SearchParams { k: 2_000, nprobe: 1, ef_search: 16, ..Default::default() }).unwrap();
    assert_eq!(*r.ids_of(0).last().unwrap(), -1);
}

#[test]
fn building_over_existing_data_is_refused_and_leaves_it_alone() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("precious.txt"), "keep me").unwrap();
    let data = vec![0.5f32; 8 * 1000];
    let e =
        build_index(&SliceSource { data: &data, dim: 8 }, d.path(), &opts("IVF4_HNSW8,PQ4", Metric::L2), &NoProgress)
            .unwrap_err();
    assert!(matches!(e, Error::DirectoryNotEmpty { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(d.path().join("precious.txt")).unwrap(), "keep me");
}

#[test]
fn nan_in_the_input_names_the_row_and_leaves_nothing_behind() {
    let (d, n) = (8, 3_000);
    let (mut base, _) = synthetic(n, 0, d, 22);
    base[2_500 * d + 1] = f32::NAN;
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("idx");
    let e = build_index(
        &SliceSource { data: &base, dim: d },
        &out,
        &BuildOptions { train_size: Some(1000), ..opts("IVF8_HNSW8,PQ4", Metric::L2) },
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Input(InputError::NonFinite { row: 2500, col: 1, .. })), "{e}");
    assert!(!out.exists(), "a failed build must remove the directory it created");
}

#[test]
fn bad_build_parameters_are_refused_before_any_work() {
    let data = vec![0.5f32; 10 * 1000];
    let src = SliceSource { data: &data, dim: 10 };
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("idx");
    for (factory, want) in [
        ("IVF8_HNSW8,PQ3", "divisible"),
        ("IVF8_HNSW8,PQ5x4", "write PQ5x4fs"),
        ("IVF8_HNSW8,PQ5x5", "not supported"),
        ("IVF8_HNSW8,PQ4x4fs", "divisible"),
        ("IVF8_HNSW8,PQ3x4fs", "even m"),
        ("IVF5000_HNSW8,PQ5", "training vectors"),
        ("HNSW32_PQ3", "divisible"),
        ("IVF8_HNSW8,Flat,RFlat", "RFlat re-ranks PQ codes"),
    ] {
        let e = build_index(&src, &out, &opts(factory, Metric::L2), &NoProgress).unwrap_err();
        assert!(e.to_string().contains(want), "{factory}: {e}");
        assert!(!out.exists(), "{factory}: nothing may be created");
    }
    let empty = SliceSource { data: &[], dim: 10 };
    assert!(matches!(
        build_index(&empty, &out, &opts("IVF8_HNSW8,PQ5", Metric::L2), &NoProgress),
        Err(Error::InvalidParameter(_))
    ));
}

/// A source whose third chunk fails to read, as a disk error mid-stream would.
struct FailingSource(Vec<f32>);

impl VectorSource for FailingSource {
    fn dim(&self) -> usize {
        8
    }
    fn len(&self) -> usize {
        self.0.len() / 8
    }
    fn read_f32(&self, start: usize, count: usize, out: &mut Vec<f32>) -> Result<(), InputError> {
        if start >= 2_000 && count > 100 {
            return Err(InputError::Io { path: "base.fvecs".into(), source: std::io::Error::other("simulated EIO") });
        }
        out.extend_from_slice(&self.0[start * 8..((start + count).min(self.len())) * 8]);
        Ok(())
    }
}

#[test]
fn a_read_error_mid_stream_keeps_the_checkpoints_and_resume_finishes_the_same_index() {
    let (base, _) = synthetic(3_000, 0, 8, 23);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("idx");
    std::fs::create_dir(&out).unwrap();
    let o = BuildOptions { chunk_size: 1_000, train_size: Some(500), ..opts("IVF8_HNSW8,PQ4", Metric::L2) };
    let e = build_index(&FailingSource(base.clone()), &out, &o, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("simulated EIO"), "{e}");
    let names = |p: &std::path::Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&out), [".build-tmp", "LOCK"], "only the checkpoints (and the writers' lock file) are kept");
    let staged = names(&out.join(".build-tmp"));
    assert!(
        staged.contains(&"quantizer.qvq".to_string()) && staged.iter().filter(|n| n.starts_with("run-")).count() == 2,
        "{staged:?}"
    );

    let source = SliceSource { data: &base, dim: 8 };
    let again = build_index(&source, &out, &o, &NoProgress).unwrap_err();
    assert!(matches!(again, Error::UnfinishedBuild { .. }), "{again}");
    assert!(again.to_string().contains("--resume") && again.to_string().contains("--discard-unfinished"), "{again}");
    let resumed = BuildOptions { unfinished: quiver::Unfinished::Resume, ..o.clone() };
    let r = build_index(&source, &out, &resumed, &NoProgress).unwrap();
    assert!(r.resumed);
    let fresh = parent.path().join("fresh");
    build_index(&source, &fresh, &o, &NoProgress).unwrap();
    assert_eq!(names(&out), names(&fresh));
    for n in names(&fresh) {
        assert_eq!(std::fs::read(out.join(&n)).unwrap(), std::fs::read(fresh.join(&n)).unwrap(), "{n}");
    }
}

#[test]
fn bad_files_name_file_and_row() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("q.fbin");
    std::fs::write(&p, [2i32.to_le_bytes(), 3i32.to_le_bytes(), 0f32.to_le_bytes()].concat()).unwrap();
    let e = VectorFile::open(&p).unwrap_err();
    assert!(e.to_string().contains("q.fbin") && e.to_string().contains("truncated"), "{e}");
}
