//! Crash and fault testing, the redb way: build, add, delete and compact run with the I/O
//! layer's fault injection armed on the index directory, failing (an I/O error) or crashing
//! (only what was fsynced survives) at every durability step in turn. After each, the index
//! must open to the old or the new generation, `verify` must pass, results must equal a
//! brute-force model of that generation, and the next writer must run and leave it sound.
//! (A build interrupted before its commit is no index yet: `--resume` must finish it.)
//!
//! One test function: the fault layer is process-wide.

mod common;

use std::path::Path;

use quiver::io::faults::{self, Fault};
use quiver::{
    add_vectors, build_index, compact, delete_ids, verify_index, BuildOptions, ChangeOptions, Error, Index, Metric,
    NoProgress, SliceSource, Unfinished,
};

const D: usize = 8;
const K: usize = 5;

type Model = common::Model<D>;

fn opts() -> BuildOptions {
    BuildOptions { train_size: Some(200), ..common::opts("IVF4_HNSW8,Flat", Metric::L2) }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The generation the index in `dir` opens to, after checking it against `models` (the
/// model of each generation it may be at) and `verify`.
fn check(dir: &Path, models: &[(u64, &Model)], queries: &[f32], what: &str) -> u64 {
    let v = verify_index(dir).unwrap();
    assert!(v.is_ok(), "{what}: {:?}", v.faults);
    let index = Index::open(dir).unwrap_or_else(|e| panic!("{what}: {e}"));
    let g = index.info().generation;
    let model = models.iter().find(|m| m.0 == g).unwrap_or_else(|| panic!("{what}: opened generation {g}")).1;
    let p = quiver::SearchParams { k: K, nprobe: index.info().nlist, ..Default::default() };
    let got = index.search(queries, &p).unwrap().ids;
    for (q, row) in queries.chunks(D).enumerate() {
        assert_eq!(&got[q * K..(q + 1) * K], model.search(row, K).as_slice(), "{what}: query {q}");
    }
    g
}

/// Runs `op` on a copy of `before` with a fault at every durability step it takes, in both
/// modes; `after` checks each outcome. Returns the number of steps.
fn every_step(
    before: &Path,
    work: &Path,
    op: &dyn Fn(&Path) -> quiver::Result<()>,
    after: &dyn Fn(&Path, &str),
) -> u64 {
    let fresh = || {
        let _ = std::fs::remove_dir_all(work);
        copy_dir(before, work);
    };
    fresh();
    faults::arm(work, None, Fault::Fail).unwrap();
    op(work).unwrap();
    let steps = faults::disarm();
    assert!(steps > 0, "the operation took no durability step");
    after(work, "no fault");
    for at in 0..steps {
        for fault in [Fault::Fail, Fault::Crash] {
            fresh();
            faults::arm(work, Some(at), fault).unwrap();
            let result = op(work);
            match fault {
                Fault::Fail => {
                    faults::disarm();
                }
                Fault::Crash => {
                    faults::crash().unwrap();
                }
            }
            let what = format!("{fault:?} at step {at} of {steps} (the operation returned {:?})", result.err());
            after(work, &what);
        }
    }
    steps
}

#[test]
fn every_durability_step_of_every_writer_survives_a_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, queries) = common::synthetic(400, 6, D, 21);
    let (first, more) = base.split_at(300 * D);
    let mut m1 = Model::default();
    m1.add(0..300, first);

    // Build: either no index yet (resumable) or the whole one.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let build = |dir: &Path| build_index(&SliceSource { data: first, dim: D }, dir, &opts(), &NoProgress).map(|_| ());
    let steps = every_step(&empty, &tmp.path().join("work"), &build, &|dir, what| {
        match Index::open(dir) {
            Ok(_) => {}
            Err(Error::NotAnIndex { .. } | Error::UnfinishedBuild { .. }) => {
                let resume = BuildOptions { unfinished: Unfinished::Resume, ..opts() };
                build_index(&SliceSource { data: first, dim: D }, dir, &resume, &NoProgress)
                    .unwrap_or_else(|e| panic!("{what}: resume failed: {e}"));
            }
            Err(e) => panic!("{what}: {e}"),
        }
        check(dir, &[(1, &m1)], &queries, what);
    });
    eprintln!("build: {steps} durability steps, each failed and crashed");

    let built = tmp.path().join("built");
    build(&built).unwrap();

    // Add, then delete, then compact, each from the state the one before left.
    let mut m2 = m1.clone();
    m2.add(300..400, more);
    let add = |dir: &Path| {
        add_vectors(dir, &SliceSource { data: more, dim: D }, None, &ChangeOptions::default(), &NoProgress).map(|_| ())
    };
    let queries = &queries;
    let after_change = |models: Vec<(u64, Model)>| {
        move |dir: &Path, what: &str| {
            let refs: Vec<(u64, &Model)> = models.iter().map(|(g, m)| (*g, m)).collect();
            let g = check(dir, &refs, queries, what);
            // The next writer runs, cleans up after the fault, and changes no result.
            compact(dir, &ChangeOptions::default()).unwrap_or_else(|e| panic!("{what}: the next writer failed: {e}"));
            let model = &models.iter().find(|m| m.0 == g).unwrap().1;
            let next = Index::open(dir).unwrap().info().generation;
            check(dir, &[(next, model)], queries, &format!("{what}, then compacted"));
        }
    };
    let steps =
        every_step(&built, &tmp.path().join("work"), &add, &after_change(vec![(1, m1.clone()), (2, m2.clone())]));
    eprintln!("add: {steps} durability steps");

    let added = tmp.path().join("added");
    copy_dir(&built, &added);
    add(&added).unwrap();
    let gone: Vec<i64> = (0..400).step_by(3).collect();
    let mut m3 = m2.clone();
    m3.delete(&gone.iter().map(|&i| i as u64).collect::<Vec<_>>());
    let delete = |dir: &Path| delete_ids(dir, &gone).map(|_| ());
    let steps =
        every_step(&added, &tmp.path().join("work"), &delete, &after_change(vec![(2, m2.clone()), (3, m3.clone())]));
    eprintln!("delete: {steps} durability steps");

    let deleted = tmp.path().join("deleted");
    copy_dir(&added, &deleted);
    delete(&deleted).unwrap();
    let compaction = |dir: &Path| compact(dir, &ChangeOptions::default()).map(|_| ());
    let steps = every_step(&deleted, &tmp.path().join("work"), &compaction, &|dir, what| {
        check(dir, &[(3, &m3), (4, &m3)], queries, what);
    });
    eprintln!("compact: {steps} durability steps");
}
