//! `quiver bench` on a tiny generated set: it writes parseable JSON rows with every key, a
//! report, and SVG pictures that parse as XML; run again it skips what is done; bad flags are
//! refused before any work.

mod common;

use common::{ok, quiver};

const KEYS: [&str; 18] = [
    "system",
    "factory",
    "hnsw_m",
    "ef_construction",
    "nprobe",
    "ef",
    "k",
    "recall_at_1",
    "one_recall_at_3",
    "recall_at_10",
    "ms_mean",
    "ms_p50",
    "ms_p99",
    "qps",
    "index_bytes",
    "build_s",
    "peak_rss_bytes",
    "threads",
];

fn rows(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_tiny_bench_writes_rows_report_and_pictures_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("b");
    let out_s = out.display().to_string();
    let args = [
        "bench",
        "--gen",
        "1500,16",
        "--factory",
        "IVF16_HNSW8,PQ4",
        "--factory",
        "HNSW8,Flat",
        "--nprobe",
        "1,4",
        "--ef",
        "16,32",
        "--hnsw-m",
        "4,8",
        "--out",
        &out_s,
    ];
    ok(&args);
    let r = rows(&out);
    // IVF: 2 nprobe settings; HNSW: 2 M x 2 efSearch.
    assert_eq!(r.len(), 2 + 4, "{r:?}");
    for row in &r {
        for k in KEYS {
            assert!(row.get(k).is_some(), "{k} missing from {row}");
        }
        let recall = row["recall_at_10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&recall) && row["qps"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["index_bytes"].as_u64().unwrap() > 0 && row["build_s"].as_f64().is_some());
    }
    assert!(r.iter().any(|row| row["factory"] == "HNSW4,Flat" && row["nprobe"].is_null()));
    let hnsw = r.iter().find(|row| row["factory"] == "HNSW8,Flat" && row["ef"] == 32).unwrap();
    assert!(hnsw["recall_at_10"].as_f64().unwrap() > 0.8, "{hnsw}");
    for svg in ["recall_latency.svg", "bubble.svg", "hnsw_build.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{svg}: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(doc.descendants().filter(|n| n.has_tag_name("circle")).count() >= 2, "{svg}: no points");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("HNSW8,Flat") && report.contains("bubble.svg"), "{report}");
    // Again, after a kill mid-line: nothing to do, the fragment ended on a line of its own
    // (so that rows appended later parse), the pictures drawn anew.
    let results = out.join("results.jsonl");
    let mut text = std::fs::read_to_string(&results).unwrap();
    text.push_str("{\"system\":\"qui");
    std::fs::write(&results, &text).unwrap();
    let o = quiver(&args);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped"));
    let after = std::fs::read_to_string(&results).unwrap();
    assert!(after.ends_with('\n'));
    let parsed = after.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count();
    assert_eq!((parsed, after.lines().count()), (r.len(), r.len() + 1));
}

#[test]
fn bad_flags_are_refused_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("b");
    let out_s = out.display().to_string();
    for (args, needle) in [
        (vec!["--factory", "HNSW8,Flat", "--nprobe", "4"], "--nprobe"),
        (vec!["--factory", "IVF8_HNSW8,SQ8"], "SQ8"),
        (vec!["--factory", "HNSW1,Flat"], "HNSW M 1"),
        (vec!["--factory", "IVF8_HNSW8,PQ4", "--nprobe", "9"], "nlist"),
    ] {
        let mut a = vec!["bench", "--gen", "500,8", "--out", &out_s];
        a.extend(args);
        let o = quiver(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{a:?}: {err}");
        assert!(!out.exists(), "{a:?}: created the output before refusing");
    }
}
