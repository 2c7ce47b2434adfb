//! `kill -9` at random moments of `quiver add` and `quiver compact`: whatever moment the kill
//! lands on, the index opens to the generation before or the one after, `verify` passes, its
//! results are that generation's, and the next writer runs and leaves only the files the
//! index names. (The fault-injection test in the library's tests/crash.rs covers the other
//! extreme, a power cut that loses every write not yet fsynced.)

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ok;
use quiver::{Index, Rng, SearchParams};

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The ids every query gets, and the generation that gave them.
fn answers(dir: &Path, queries: &[f32]) -> (u64, Vec<i64>) {
    let index = Index::open(dir).unwrap();
    let p = SearchParams { k: 10, nprobe: 8, ..Default::default() };
    (index.info().generation, index.search(queries, &p).unwrap().ids)
}

/// Runs `args` on a copy of `before` and kills it with SIGKILL after a random delay, `rounds`
/// times, checking each outcome against `expected` (per generation).
fn kill_loop(before: &Path, work: &Path, args: &[&str], queries: &[f32], expected: &[(u64, Vec<i64>)], rounds: usize) {
    // How long the command takes when left alone (process start included).
    copy_dir(before, work);
    let t = Instant::now();
    ok(args);
    let full = t.elapsed();
    let mut rng = Rng::new(99);
    let mut landed = [0usize; 2];
    for round in 0..rounds {
        copy_dir(before, work);
        let mut child = Command::new(env!("CARGO_BIN_EXE_quiver")).args(args).stdout(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_secs_f64(full.as_secs_f64() * rng.next_f64()));
        let _ = child.kill();
        child.wait().unwrap();
        let what = format!("round {round}: {args:?} killed");
        let v = quiver::verify_index(work).unwrap();
        assert!(v.is_ok(), "{what}: {:?}", v.faults);
        let got = answers(work, queries);
        let i = expected.iter().position(|e| e.0 == got.0).unwrap_or_else(|| panic!("{what}: generation {}", got.0));
        assert_eq!(got.1, expected[i].1, "{what}: results of generation {}", got.0);
        landed[i] += 1;
        // The next writer cleans up after the kill and changes no result.
        ok(&["compact", "--index", work.to_str().unwrap()]);
        let after = answers(work, queries);
        assert_eq!(after.1, got.1, "{what}: compaction changed results");
        let index = Index::open(work).unwrap();
        let mut named: Vec<String> = index.files().into_iter().map(|f| f.0).collect();
        named.push(format!("MANIFEST-{:06}", index.info().generation));
        drop(index);
        for e in std::fs::read_dir(work).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(name == "LOCK" || named.contains(&name), "{what}: {name} left behind");
        }
    }
    eprintln!("{args:?}: {rounds} kills, {} left the old generation, {} the new", landed[0], landed[1]);
}

#[test]
fn add_and_compact_survive_kill_9_at_any_moment() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let s = |n: &str| p(n).display().to_string();
    ok(&["gen", "--n", "20000", "--dim", "16", "--out", &s("base.fbin")]);
    ok(&["gen", "--n", "20000", "--dim", "16", "--seed", "5", "--out", &s("more.fbin")]);
    ok(&["gen", "--n", "20", "--dim", "16", "--first-row", "90000", "--out", &s("q.fbin")]);
    let queries = quiver::VectorFile::open(p("q.fbin")).unwrap().read_all_f32().unwrap();
    let built = s("built");
    ok(&["build", "--input", &s("base.fbin"), "--index", &built, "--factory", "IVF16_HNSW8,PQ8x4fs", "--quiet"]);

    let added = p("added");
    copy_dir(&p("built"), &added);
    let add = ["add", "--index", &s("work"), "--input", &s("more.fbin"), "--quiet"];
    ok(&["add", "--index", &s("added"), "--input", &s("more.fbin"), "--quiet"]);
    let expected = [answers(&p("built"), &queries), answers(&added, &queries)];
    kill_loop(&p("built"), &p("work"), &add, &queries, &expected, 12);

    // Compaction of an index with additions and deletions.
    let gone = p("gone.ibin");
    let ids: Vec<i32> = (0..40000).step_by(3).collect();
    let mut bytes = [(ids.len() as i32).to_le_bytes(), 1i32.to_le_bytes()].concat();
    ids.iter().for_each(|i| bytes.extend_from_slice(&i.to_le_bytes()));
    std::fs::write(&gone, bytes).unwrap();
    ok(&["delete", "--index", &s("added"), "--ids", &s("gone.ibin")]);
    let compacted = p("compacted");
    copy_dir(&added, &compacted);
    ok(&["compact", "--index", &s("compacted")]);
    let expected = [answers(&added, &queries), answers(&compacted, &queries)];
    assert_eq!(expected[0].1, expected[1].1, "compaction changes no result");
    let compact = ["compact", "--index", &s("work")];
    kill_loop(&added, &p("work"), &compact, &queries, &expected, 12);
}
