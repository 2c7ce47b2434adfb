//! Resumable builds, end to end through the binary: a build killed (SIGKILL, through the
//! `QUIVER_FAILPOINT` crash points) at each checkpoint, and before any, then continued with
//! `--resume`, gives a directory byte-identical to an uninterrupted build; what `--resume`
//! refuses; the disk check up front; `--dry-run`.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const FACTORY: &str = "IVF32_HNSW8,PQ8";

/// 12,000 × 16 float32 rows, streamed in chunks of 1,024: 12 runs.
fn input(dir: &Path) -> PathBuf {
    let p = dir.join("base.fbin");
    ok(&["gen", "--n", "12000", "--dim", "16", "--out", p.to_str().unwrap()]);
    p
}

fn build_args<'a>(base: &'a str, index: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v =
        vec!["build", "--input", base, "--index", index, "--factory", FACTORY, "--chunk-size", "1024", "--quiet"];
    v.extend_from_slice(extra);
    v
}

fn quiver_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quiver"));
    c.args(args).env("RUST_BACKTRACE", "0").env_remove("QUIVER_FAILPOINT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run quiver")
}

/// Every file under `dir` (relative path, bytes), sorted: hidden ones included, the writers'
/// lock file (its last holder's process id; no part of the index) left out.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == ::quiver::store::LOCK) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_build_killed_at_any_checkpoint_resumes_to_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let base = input(t.path());
    let base = base.to_str().unwrap();
    let reference = t.path().join("reference");
    ok(&build_args(base, reference.to_str().unwrap(), &["--merge-fan-in", "2"]));
    let want = tree(&reference);
    assert!(want.iter().all(|(n, _)| !n.starts_with(".build-tmp")));

    // `start`: before any checkpoint; `pass`: a merged run durable, its inputs not yet removed.
    for point in ["start", "trained", "run:1", "run:7", "pass:1", "pass:8", "segment:1"] {
        let index = t.path().join(point.replace(':', "-"));
        let index = index.to_str().unwrap();
        let args = build_args(base, index, &["--merge-fan-in", "2"]);
        let killed = quiver_with(&args, &[("QUIVER_FAILPOINT", point)]);
        assert_eq!(killed.status.signal(), Some(9), "{point}: {}", stderr(&killed));
        assert!(Path::new(index).join(".build-tmp").exists(), "{point}: the staging area survives a kill");

        let again = quiver(&args);
        assert_eq!(again.status.code(), Some(2), "{point}");
        let msg = stderr(&again);
        assert!(
            msg.contains("unfinished build") && msg.contains("--resume") && msg.contains("--discard-unfinished"),
            "{msg}"
        );

        let mut resume = args.clone();
        resume.push("--resume");
        ok(&resume);
        assert!(tree(Path::new(index)) == want, "{point}: the resumed index differs from an uninterrupted build");
    }
}

#[test]
fn damaged_checkpoints_are_redone_not_trusted() {
    let t = tempfile::tempdir().unwrap();
    let base = input(t.path());
    let base = base.to_str().unwrap();
    let reference = t.path().join("reference");
    ok(&build_args(base, reference.to_str().unwrap(), &[]));
    let want = tree(&reference);

    let flip = |p: &Path, at: usize| {
        let mut b = std::fs::read(p).unwrap();
        let at = at.min(b.len() - 1);
        b[at] ^= 0x01;
        std::fs::write(p, b).unwrap();
    };
    // A flipped byte in a run and in the trained quantizer: both are redone.
    let index = t.path().join("flipped");
    let args = build_args(base, index.to_str().unwrap(), &[]);
    assert_eq!(quiver_with(&args, &[("QUIVER_FAILPOINT", "run:6")]).status.signal(), Some(9));
    let area = index.join(".build-tmp");
    flip(&area.join("run-000000002048-000000003072.qvr"), 5_000);
    flip(&area.join("quantizer.qvq"), 700);
    let mut resume = args.clone();
    resume.push("--resume");
    ok(&resume);
    assert!(tree(&index) == want);

    // A build state cut short (the kill came while it was written): start from the beginning.
    let index = t.path().join("cut");
    let args = build_args(base, index.to_str().unwrap(), &[]);
    assert_eq!(quiver_with(&args, &[("QUIVER_FAILPOINT", "start")]).status.signal(), Some(9));
    let state = index.join(".build-tmp/build.qvb");
    let len = std::fs::metadata(&state).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&state).unwrap().set_len(len / 2).unwrap();
    let mut resume = args.clone();
    resume.push("--resume");
    ok(&resume);
    assert!(tree(&index) == want);
}

#[test]
fn a_build_killed_after_its_commit_is_finished_and_resume_refuses_it() {
    let t = tempfile::tempdir().unwrap();
    let base = input(t.path());
    let base = base.to_str().unwrap();
    let reference = t.path().join("reference");
    ok(&build_args(base, reference.to_str().unwrap(), &[]));
    let index = t.path().join("idx");
    let args = build_args(base, index.to_str().unwrap(), &[]);
    let killed = quiver_with(&args, &[("QUIVER_FAILPOINT", "committed")]);
    assert_eq!(killed.status.signal(), Some(9));
    ok(&["verify", "--index", index.to_str().unwrap()]);

    let mut resume = args.clone();
    resume.push("--resume");
    let o = quiver(&resume);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("finished index"), "{}", stderr(&o));
    let mut got = tree(&index);
    got.retain(|(n, _)| !n.starts_with(".build-tmp"));
    assert!(got == tree(&reference), "the committed index is whole");
}

#[test]
fn resume_refuses_foreign_directories_and_other_options() {
    let t = tempfile::tempdir().unwrap();
    let base = input(t.path());
    let base = base.to_str().unwrap();

    let foreign = t.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("cat.jpg"), b"meow").unwrap();
    let o = quiver(&build_args(base, foreign.to_str().unwrap(), &["--resume"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cat.jpg") && stderr(&o).contains("no quiver build wrote"), "{}", stderr(&o));
    assert_eq!(std::fs::read(foreign.join("cat.jpg")).unwrap(), b"meow");

    let index = t.path().join("idx");
    let args = build_args(base, index.to_str().unwrap(), &[]);
    assert_eq!(quiver_with(&args, &[("QUIVER_FAILPOINT", "run:3")]).status.signal(), Some(9));
    let o = quiver(&["verify", "--index", index.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("unfinished build"), "{}", stderr(&o));
    let o = quiver(&build_args(base, index.to_str().unwrap(), &["--resume", "--seed", "99"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("seed: started with 1234, now 99"), "{}", stderr(&o));
    let o = quiver(&build_args(base, index.to_str().unwrap(), &["--resume", "--tmp-dir", t.path().to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("resume with that --tmp-dir"), "{}", stderr(&o));

    // A missing directory: --resume starts from the beginning.
    let fresh = t.path().join("fresh");
    ok(&build_args(base, fresh.to_str().unwrap(), &["--resume"]));
    // Discarding the unfinished one starts over and gives the same index.
    ok(&build_args(base, index.to_str().unwrap(), &["--discard-unfinished"]));
    assert!(tree(&index) == tree(&fresh));
}

#[test]
fn runs_in_tmp_dir_survive_a_kill_and_are_removed_at_the_end() {
    let t = tempfile::tempdir().unwrap();
    let base = input(t.path());
    let base = base.to_str().unwrap();
    let scratch = t.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let index = t.path().join("idx");
    let args = build_args(base, index.to_str().unwrap(), &["--tmp-dir", scratch.to_str().unwrap()]);
    assert_eq!(quiver_with(&args, &[("QUIVER_FAILPOINT", "run:5")]).status.signal(), Some(9));
    let runs: Vec<_> = tree(&scratch).into_iter().filter(|(n, _)| n.ends_with(".qvr")).collect();
    assert_eq!(runs.len(), 5, "the runs live in --tmp-dir");
    assert!(tree(&index).iter().all(|(n, _)| !n.ends_with(".qvr")));
    let mut resume = args.clone();
    resume.push("--resume");
    ok(&resume);
    assert!(tree(&scratch).is_empty(), "the build's scratch directory is removed");
    let reference = t.path().join("reference");
    ok(&build_args(base, reference.to_str().unwrap(), &[]));
    assert!(tree(&index) == tree(&reference));
}

/// Free bytes of the file system holding `p`, as `df` reports them.
fn free_bytes(p: &Path) -> u64 {
    let o = Command::new("df").args(["--output=avail", "-B1"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn a_disk_too_small_is_an_error_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    // A sparse uint8 input (holes read as zeros) of 2^31 - 1 rows of 64: its runs take 68 and
    // its index 72 bytes a vector, about 300 GB, far more than the disk this runs on.
    let (rows, d) = (i32::MAX as u64, 64u64);
    if rows * 72 < free_bytes(t.path()) {
        eprintln!("skipped: the file system has room even for this build");
        return;
    }
    let base = t.path().join("huge.u8bin");
    let f = std::fs::File::create(&base).unwrap();
    use std::io::Write;
    (&f).write_all(&[(rows as u32).to_le_bytes(), (d as u32).to_le_bytes()].concat()).unwrap();
    f.set_len(8 + rows * d).unwrap();
    let index = t.path().join("idx");
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--input", base.to_str().unwrap(), "--index", index.to_str().unwrap()];
        args.extend_from_slice(&["--factory", "IVF1024_HNSW8,PQ64", "--memory", "1GiB", "--quiet"]);
        args.extend_from_slice(extra);
        quiver(&args)
    };
    let started = std::time::Instant::now();
    let o = build(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(msg.contains("not enough free disk") && msg.contains("--tmp-dir") && msg.contains("sorted runs"), "{msg}");
    assert!(!index.exists(), "nothing was created");
    assert!(started.elapsed().as_secs() < 20, "refused before any work");

    // Pointing the runs elsewhere moves their share to that file system, which is checked too.
    let o = build(&["--tmp-dir", "/dev/shm"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not enough free disk"), "{}", stderr(&o));
}

#[test]
fn dry_run_writes_nothing_and_its_bounds_hold() {
    let t = tempfile::tempdir().unwrap();
    let base = input(t.path());
    let base = base.to_str().unwrap();
    let index = t.path().join("idx");
    let idx = index.to_str().unwrap();
    let text = ok(&build_args(base, idx, &["--dry-run"]));
    for want in ["memory budget", "temporary", "final", "serving RAM", "time estimate", "kmeans", "merge"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(!index.exists());
    let plan: serde_json::Value = serde_json::from_str(&ok(&build_args(base, idx, &["--dry-run", "--json"]))).unwrap();
    assert!(!index.exists());
    let built: serde_json::Value = serde_json::from_str(&ok(&build_args(base, idx, &["--json"]))).unwrap();
    let get = |v: &serde_json::Value, path: &[&str]| path.iter().fold(v, |v, k| &v[k]).as_u64().unwrap();
    assert!(get(&built, &["index_bytes"]) <= get(&plan, &["disk", "final_bytes"]), "{plan} vs {built}");
    assert!(get(&plan, &["disk", "runs_bytes"]) >= 12_000 * (8 + 4));
    assert!(plan["estimate_total_s"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["budget"], built["budget"], "the dry run plans the build that runs");
}

/// A graph build (`HNSW{M},Flat`) keeps no checkpoints: killed before its commit, it is
/// reported as unfinished like any build, and `--resume` starts it over, to the same bytes as
/// an uninterrupted build; killed after the commit, the index is whole.
#[test]
fn a_killed_graph_build_starts_over_to_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let base = input(t.path());
    let base = base.to_str().unwrap();
    let build = |index: &str| -> Vec<String> {
        ["build", "--input", base, "--index", index, "--factory", "HNSW8,Flat", "--quiet"].map(String::from).to_vec()
    };
    let reference = t.path().join("reference");
    let r = build(reference.to_str().unwrap());
    ok(&r.iter().map(String::as_str).collect::<Vec<_>>());
    let want = tree(&reference);
    for point in ["start", "written", "committed"] {
        let index = t.path().join(point);
        let args = build(index.to_str().unwrap());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let killed = quiver_with(&args, &[("QUIVER_FAILPOINT", point)]);
        assert_eq!(killed.status.signal(), Some(9), "{point}: {}", stderr(&killed));
        if point == "committed" {
            let after: Vec<_> = tree(&index).into_iter().filter(|(n, _)| !n.starts_with(".build-tmp")).collect();
            assert!(after == want, "committed: the index is whole");
            continue;
        }
        let again = quiver(&args);
        assert_eq!(again.status.code(), Some(2), "{point}");
        assert!(stderr(&again).contains("--resume"), "{point}: {}", stderr(&again));
        let mut resume = args.clone();
        resume.push("--resume");
        ok(&resume);
        assert!(tree(&index) == want, "{point}: the rebuilt index differs from an uninterrupted build");
    }
}
