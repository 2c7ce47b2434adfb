//! The build's memory budget is a hard bound: the kernel's high-water mark of a real build, and
//! of an addition (VmHWM, read by the process itself and reported as `peak_rss_bytes`), stays
//! under `--memory` on input several times larger than the budget, and a budget below the
//! factory's minimum is refused before any work.

mod common;

use common::{ok, quiver};

use std::path::Path;

#[test]
fn a_build_stays_under_a_budget_four_times_smaller_than_its_input() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.fbin").display().to_string();
    let idx = d.path().join("idx").display().to_string();
    ok(&["gen", "--n", "400000", "--dim", "64", "--out", &base]);
    let input_bytes = std::fs::metadata(&base).unwrap().len();
    let budget: u64 = 24 << 20;
    assert!(input_bytes > 4 * budget);
    let out = ok(&[
        "build",
        "--input",
        &base,
        "--index",
        &idx,
        "--factory",
        "IVF256_HNSW16,PQ8",
        "--memory",
        "24MiB",
        "--json",
        "--quiet",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peak = r["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    assert!(peak <= budget, "peak RSS {peak} over the budget {budget}");
    assert_eq!(r["memory_budget"].as_u64(), Some(budget));
    // The requested sample (100,000 x 64 float32 = 25.6 MB) cannot fit: it shrank, and says so.
    let used = r["train_size"].as_u64().unwrap();
    assert!(used < r["train_size_requested"].as_u64().unwrap(), "{r}");
    assert!(r["budget"]["chunk_rows"].as_u64().unwrap() < 262_144, "the chunk follows the budget: {r}");
    assert!(ok(&["verify", "--index", &idx]).starts_with("ok:"));
    let q = d.path().join("q.fbin").display().to_string();
    ok(&["gen", "--n", "20", "--dim", "64", "--first-row", "400000", "--out", &q]);
    assert_eq!(ok(&["search", "--index", &idx, "--queries", &q, "--nprobe", "8", "--json"]).lines().count(), 1);

    // An addition as large as the build's input stays under the same budget.
    let more = d.path().join("more.fbin").display().to_string();
    ok(&["gen", "--n", "400000", "--dim", "64", "--seed", "3", "--out", &more]);
    let out = ok(&["add", "--index", &idx, "--input", &more, "--memory", "24MiB", "--json", "--quiet"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peak = r["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    assert!(peak <= budget, "add: peak RSS {peak} over the budget {budget}");
    assert_eq!(r["ntotal"].as_u64(), Some(800_000));
    assert!(ok(&["verify", "--index", &idx]).starts_with("ok:"));
}

#[test]
fn a_budget_below_the_minimum_is_refused_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.fbin").display().to_string();
    let idx = d.path().join("idx");
    ok(&["gen", "--n", "20000", "--dim", "32", "--out", &base]);
    for (mem, needle) in
        [("4MiB", "needs at least"), ("0", "at least 1 byte"), ("lots", "not a size"), ("12XB", "unknown unit")]
    {
        let o = quiver(&[
            "build",
            "--input",
            &base,
            "--index",
            idx.to_str().unwrap(),
            "--factory",
            "IVF64_HNSW8,PQ8",
            "--memory",
            mem,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{mem}: {err}");
        assert!(err.contains("--memory") && err.contains(needle), "{mem}: {err}");
        assert!(!Path::new(&idx).exists(), "{mem}: nothing may be created");
    }
}

/// Shards given as several files or a glob are one dataset: the same index, byte for byte, as
/// the concatenated file; mismatched shards and empty globs are refused.
#[test]
fn shards_build_the_same_index_as_their_concatenation() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).display().to_string();
    ok(&["gen", "--n", "6000", "--dim", "16", "--out", &p("all.fbin")]);
    ok(&["gen", "--n", "2500", "--dim", "16", "--out", &p("part-0.fbin")]);
    ok(&["gen", "--n", "3500", "--dim", "16", "--first-row", "2500", "--out", &p("part-1.fbin")]);
    let common = ["--factory", "IVF16_HNSW8,PQ4", "--quiet"];
    let build = |inputs: &[String], idx: &str| {
        let mut a = vec!["build".to_string(), "--input".into()];
        a.extend(inputs.iter().cloned());
        a.extend(["--index".into(), p(idx)]);
        a.extend(common.iter().map(|s| s.to_string()));
        let args: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        ok(&args);
    };
    build(&[p("all.fbin")], "one");
    build(&[p("part-0.fbin"), p("part-1.fbin")], "two");
    build(&[p("part-*.fbin")], "glob");
    for name in ["MANIFEST-000001", "quantizer.qvq", "codebooks.qvc", "lists.qvd", "seg-000000.qvs"] {
        let one = std::fs::read(Path::new(&p("one")).join(name)).unwrap();
        assert_eq!(one, std::fs::read(Path::new(&p("two")).join(name)).unwrap(), "{name}");
        assert_eq!(one, std::fs::read(Path::new(&p("glob")).join(name)).unwrap(), "{name}");
    }
    ok(&["gen", "--n", "100", "--dim", "8", "--out", &p("other.fbin")]);
    let o = quiver(&["build", "--input", &p("part-0.fbin"), &p("other.fbin"), "--index", &p("x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("other.fbin"));
    let o = quiver(&["build", "--input", &p("nothing-*.fbin"), "--index", &p("x")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("matches no file"));
    assert!(!Path::new(&p("x")).exists());
}
