//! The command line tried as a hostile user would: one test per class of defect (issue 10).
//! Every bad input gets a clear error naming what is wrong, never a panic or an abort, and
//! nothing already written is lost.

mod common;

use common::{ok, quiver};

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs a command that must fail with `code`, print nothing on stdout, and say `needles` on
/// stderr without panicking. Returns stderr.
fn refused(args: &[&str], code: i32, needles: &[&str]) -> String {
    let o = quiver(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(o.stdout.is_empty(), "{args:?} printed before failing: {}", String::from_utf8_lossy(&o.stdout));
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
    }
    err
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: String,
    q: String,
    gt: String,
    idx: String,
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (base, q, gt, idx) = (p(d, "base.fbin"), p(d, "q.fvecs"), p(d, "gt.ivecs"), p(d, "idx"));
    ok(&["gen", "--n", "4000", "--dim", "16", "--out", &base]);
    ok(&["gen", "--n", "30", "--dim", "16", "--first-row", "4000", "--out", &q]);
    ok(&["gt", "--base", &base, "--queries", &q, "--k", "10", "--out", &gt, "--quiet"]);
    ok(&["build", "--input", &base, "--index", &idx, "--factory", "IVF16_HNSW8,PQ4", "--quiet"]);
    Fixture { _dir: dir, base, q, gt, idx }
}

/// Class 1: 0, 1 and values past what the data holds, for every count and list argument.
#[test]
fn degenerate_counts_are_clear_errors() {
    let f = fixture();
    let dir = f._dir.path();
    let new = p(dir, "new");
    let out = p(dir, "o.ivecs");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["demo", "--nq", "0"], "--nq"),
        (vec!["demo", "--n", "0"], "--n"),
        (vec!["demo", "--dim", "0"], "--dim"),
        (vec!["demo", "--n", "1"], "need at least"),
        (vec!["demo", "--dim", "10"], "divisible"),
        (vec!["gen", "--n", "0", "--dim", "4", "--out", &out], "--n"),
        (vec!["gen", "--n", "5", "--dim", "4", "--first-row", "18446744073709551615", "--out", &out], "--first-row"),
        (vec!["gt", "--base", &f.base, "--queries", &f.q, "--k", "0", "--out", &out], "--k"),
        (vec!["gt", "--base", &f.base, "--queries", &f.q, "--k", "4001", "--out", &out], "--k 4001"),
        (vec!["gt", "--base", &f.base, "--queries", &f.q, "--threads", "99999", "--out", &out], "--threads"),
        (vec!["build", "--input", &f.base, "--index", &new, "--chunk-size", "0"], "--chunk-size"),
        (vec!["build", "--input", &f.base, "--index", &new, "--niter", "0"], "--niter"),
        (vec!["build", "--input", &f.base, "--index", &new, "--ef", "0"], "--ef"),
        (vec!["build", "--input", &f.base, "--index", &new, "--ef-construction", "0"], "--ef-construction"),
        (vec!["build", "--input", &f.base, "--index", &new, "--segment-mib", "0"], "--segment-mib"),
        (vec!["build", "--input", &f.base, "--index", &new, "--train-size", "0"], "--train-size"),
        (
            vec!["build", "--input", &f.base, "--index", &new, "--factory", "IVF16_HNSW8,PQ4", "--train-size", "10"],
            "--train-size",
        ),
        (vec!["build", "--input", &f.base, "--index", &new, "--factory", "IVF8000_HNSW8,PQ4"], "need at least 8000"),
        (vec!["search", "--index", &f.idx, "--queries", &f.q, "--k", "0"], "--k"),
        (vec!["search", "--index", &f.idx, "--queries", &f.q, "--k", "4001"], "--k 4001"),
        (vec!["search", "--index", &f.idx, "--queries", &f.q, "--nprobe", "0"], "--nprobe"),
        (vec!["search", "--index", &f.idx, "--queries", &f.q, "--nprobe", "1,17"], "nlist (16)"),
        (vec!["search", "--index", &f.idx, "--queries", &f.q, "--ef", "0"], "--ef"),
        (vec!["search", "--index", &f.idx, "--queries", &f.q, "--threads", "5000"], "--threads"),
    ];
    for (args, needle) in cases {
        refused(&args, 2, &["error:", needle]);
    }
    assert!(!Path::new(&new).exists() && !Path::new(&out).exists(), "a refused command wrote something");
    // 1 is a valid count everywhere it is one.
    let one = ok(&["search", "--index", &f.idx, "--queries", &f.q, "--k", "1", "--nprobe", "1", "--json"]);
    assert_eq!(one.lines().count(), 1);
}

/// Class 2: sizes from the user or a file are checked before anything is allocated.
#[test]
fn impossible_sizes_are_errors_not_aborts() {
    let f = fixture();
    let dir = f._dir.path();
    refused(&["gen", "--n", "1", "--dim", "2000000000", "--out", &p(dir, "x.fbin")], 2, &["--dim", "65536"]);
    refused(&["gen", "--n", "3000000000", "--dim", "4", "--out", &p(dir, "x.fbin")], 2, &["--n", ".fvecs"]);
    // Headers that declare a huge shape.
    let fbin = p(dir, "huge.fbin");
    std::fs::write(&fbin, [1i32.to_le_bytes(), 2_000_000_000i32.to_le_bytes()].concat()).unwrap();
    refused(&["search", "--index", &f.idx, "--queries", &fbin], 1, &["huge.fbin", "dimension 2000000000"]);
    let fvecs = p(dir, "huge.fvecs");
    std::fs::write(&fvecs, [2_000_000_000i32.to_le_bytes(), 0i32.to_le_bytes()].concat()).unwrap();
    refused(&["build", "--input", &fvecs, "--index", &p(dir, "i2")], 1, &["huge.fvecs", "dimension"]);
    let npy = p(dir, "huge.npy");
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 16), }";
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    b.extend_from_slice(dict.as_bytes());
    std::fs::write(&npy, b).unwrap();
    refused(&["search", "--index", &f.idx, "--queries", &npy], 1, &["huge.npy"]);
    // A whole query set larger than the machine's memory: an error naming the file, not an
    // abort or the OOM killer. A sparse file of 2^31 - 1 rows of 16 float32 (137 GB).
    let big = p(dir, "big.fbin");
    std::fs::write(&big, [i32::MAX.to_le_bytes(), 16i32.to_le_bytes()].concat()).unwrap();
    std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(8 + (i32::MAX as u64) * 16 * 4).unwrap();
    refused(&["search", "--index", &f.idx, "--queries", &big, "--nprobe", "1"], 1, &["big.fbin", "memory"]);
}

/// Class 3: parameters the reader refuses are refused by the builder, before any work; and
/// what the builder does accept, its own verify accepts (the library tests verify every index
/// they build).
#[test]
fn the_builder_refuses_what_the_reader_would() {
    let f = fixture();
    let new = p(f._dir.path(), "new");
    for (factory, needle) in [
        ("IVF16_HNSW1,PQ4", "HNSW M 1"),
        ("IVF16_HNSW0,PQ4", "HNSW M 0"),
        ("IVF16_HNSW999,PQ4", "HNSW M 999"),
        ("IVF0_HNSW8,PQ4", "nlist 0"),
        ("IVF16_HNSW8,PQ0", "PQ m 0"),
        ("IVF16_HNSW8,PQ5", "divisible"),
    ] {
        refused(&["build", "--input", &f.base, "--index", &new, "--factory", factory], 2, &["--factory", needle]);
    }
    refused(&["build", "--input", &f.base, "--index", &new, "--ef", "4294967296"], 2, &["--ef"]);
    refused(
        &["build", "--input", &f.base, "--index", &new, "--factory", "IVF16_HNSW8,PQ4", "--ef", "70000"],
        2,
        &["--ef", "65536"],
    );
    assert!(!Path::new(&new).exists());
    ok(&["build", "--input", &f.base, "--index", &new, "--factory", "IVF16_HNSW2,PQ4", "--quiet"]);
    assert!(ok(&["verify", "--index", &new]).starts_with("ok:"));
}

/// Runs quiver with writes capped at `limit` bytes per file (RLIMIT_FSIZE, SIGXFSZ ignored):
/// what a full disk looks like to the writer, and something root still obeys.
fn with_full_disk(args: &[&str], limit: u64) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quiver"));
    c.args(args);
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

/// Class 4: a full disk never truncates or half-writes an existing output: it is replaced only
/// by a complete file, and the temporary is removed on failure.
#[test]
fn a_full_disk_leaves_existing_outputs_whole() {
    let f = fixture();
    let dir = f._dir.path();
    let before = std::fs::read(&f.gt).unwrap();
    let entries = || std::fs::read_dir(dir).unwrap().count();
    let n = entries();
    let o =
        with_full_disk(&["gt", "--base", &f.base, "--queries", &f.q, "--k", "100", "--out", &f.gt, "--quiet"], 4096);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("too large"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&f.gt).unwrap(), before, "the existing ground truth must be intact");
    assert_eq!(entries(), n, "no temporary left behind");

    let ids = p(dir, "ids.ivecs");
    std::fs::write(&ids, b"previous").unwrap();
    let o = with_full_disk(
        &["search", "--index", &f.idx, "--queries", &f.q, "--k", "100", "--nprobe", "4", "--out", &ids],
        4096,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&ids).unwrap(), b"previous");

    let gen = p(dir, "g.fbin");
    std::fs::write(&gen, b"previous").unwrap();
    let o = with_full_disk(&["gen", "--n", "100000", "--dim", "16", "--out", &gen], 1 << 20);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&gen).unwrap(), b"previous");
    assert_eq!(entries(), n + 2, "no temporaries left behind");
    // Without the limit, the same commands replace the files whole.
    ok(&["search", "--index", &f.idx, "--queries", &f.q, "--k", "100", "--nprobe", "4", "--out", &ids]);
    assert_eq!(std::fs::metadata(&ids).unwrap().len(), 30 * (4 + 100 * 4));
}

/// Class 5: every argument (output paths included) is checked before any work and any output.
#[test]
fn arguments_are_checked_before_any_output() {
    let f = fixture();
    let dir = f._dir.path();
    for (args, needle) in [
        (vec!["--out", "/nonexistent-dir/ids.ivecs", "--nprobe", "4"], "does not exist"),
        (vec!["--out", &p(dir, "ids.fvecs"), "--nprobe", "4"], "ids"),
        (vec!["--out", &p(dir, "ids.txt"), "--nprobe", "4"], "extension"),
        (vec!["--out-distances", &p(dir, "d.ivecs"), "--nprobe", "4"], "--out-distances"),
        (vec!["--out", &p(dir, "ids.ivecs")], "single setting"),
        (vec!["--nprobe", "4,32"], "nlist"),
        (vec!["--gt", &f.base], "int32"),
    ] {
        let mut a = vec!["search", "--index", f.idx.as_str(), "--queries", f.q.as_str()];
        a.extend(args.iter().copied());
        let code = if needle == "int32" { 1 } else { 2 };
        refused(&a, code, &[needle]);
    }
    // The default sweep on an index with nlist 16 runs what exists, and says so first.
    let o = quiver(&["search", "--index", &f.idx, "--queries", &f.q, "--json"]);
    assert!(o.status.success());
    let rows: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect();
    let nprobes: Vec<u64> = rows
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap()["nprobe"].as_u64().unwrap())
        .collect();
    assert_eq!(nprobes, [1, 4, 16]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nlist = 16"));
}

/// Class 6: garbage in a newer manifest: the CLI opens the older generation and warns.
#[test]
fn a_damaged_newest_manifest_is_skipped_with_a_warning() {
    let f = fixture();
    std::fs::write(Path::new(&f.idx).join("MANIFEST-000002"), b"not a manifest").unwrap();
    let o = quiver(&["search", "--index", &f.idx, "--queries", &f.q, "--nprobe", "4", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning:") && err.contains("generation 2") && err.contains("opened generation 1"), "{err}");
    let o = quiver(&["verify", "--index", &f.idx]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("MANIFEST-000002"));
}

/// Class 7: verify reports every fault, and with --json prints its report whether or not the
/// index is sound.
#[test]
fn verify_json_reports_faults() {
    let f = fixture();
    let sound: serde_json::Value = serde_json::from_str(&ok(&["verify", "--index", &f.idx, "--json"])).unwrap();
    assert_eq!(sound["ok"], true);
    assert_eq!(sound["faults"].as_array().unwrap().len(), 0);
    let seg = Path::new(&f.idx).join("seg-000000.qvs");
    let mut b = std::fs::read(&seg).unwrap();
    b[2000] = 1; // header-page padding
    b[4096 + 3] ^= 0xff; // first extent
    std::fs::write(&seg, b).unwrap();
    let o = quiver(&["verify", "--index", &f.idx, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON report on failure too");
    assert_eq!(r["ok"], false);
    let offsets: Vec<u64> = r["faults"].as_array().unwrap().iter().filter_map(|f| f["offset"].as_u64()).collect();
    assert!(offsets.contains(&2000) && offsets.contains(&4096), "{r}");
}

/// Class 8: output into a closed pipe ends quietly with status 0, as `ls | head` does.
#[test]
fn a_closed_pipe_ends_quietly() {
    let f = fixture();
    for args in [vec!["inspect", "--index", f.idx.as_str()], vec!["search", "--index", &f.idx, "--queries", &f.q]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away before anything is written
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("error"), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Class 9: messages say what failed, where, and what to do.
#[test]
fn messages_name_the_flag_and_the_cause() {
    let f = fixture();
    let dir = f._dir.path();
    let e = refused(&["search", "--index", &f.idx, "--queries", &f.q, "--nprobe", "1,,x"], 2, &["--nprobe"]);
    assert!(e.contains("element \"\""), "{e}");
    refused(&["build", "--input", &f.base, "--index", &p(dir, "n"), "--factory", "IVF0_HNSW8,PQ4"], 2, &["nlist 0"]);
    let e = refused(
        &["build", "--input", &f.base, "--index", &p(dir, "n"), "--factory", "IVF99999999999999999999_HNSW8,PQ4"],
        2,
        &["nlist"],
    );
    assert!(!e.contains("expected IVF{nlist}"), "{e}");
    let e =
        refused(&["build", "--input", &f.base, "--index", &p(dir, "n"), "--factory", "IVF16_HNSW8,SQ8"], 2, &["SQ8"]);
    assert!(!e.contains("HNSW32,Flat"), "suggests a kind that does not build: {e}");
    // Ground truth with ids beyond the base: an error, not recall 0.000.
    let bad_gt = p(dir, "bad_gt.ivecs");
    let mut b = Vec::new();
    for _ in 0..30 {
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend_from_slice(&999_999i32.to_le_bytes());
    }
    std::fs::write(&bad_gt, b).unwrap();
    refused(&["search", "--index", &f.idx, "--queries", &f.q, "--gt", &bad_gt], 2, &["999999", "another base"]);
    // A missing segment is damage, said as such.
    std::fs::remove_file(Path::new(&f.idx).join("seg-000000.qvs")).unwrap();
    refused(
        &["search", "--index", &f.idx, "--queries", &f.q, "--gt", &f.gt],
        1,
        &["seg-000000.qvs", "missing", "damaged"],
    );
}

/// Class 10: ids and ground truth are not vectors, and the tool says what each format is for.
#[test]
fn id_files_are_refused_as_vectors_with_the_reason() {
    let f = fixture();
    refused(&["build", "--input", &f.gt, "--index", &p(f._dir.path(), "n")], 2, &["int32", "ids", ".fvecs"]);
    let help = ok(&["--help"]);
    assert!(help.contains("Ids and ground truth: .ivecs"), "{help}");
}
