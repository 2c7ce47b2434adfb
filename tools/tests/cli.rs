//! The `quiver` binary end to end: gen -> gt -> build -> search/inspect/verify, JSON output that
//! scripts can rely on, exit codes, and --help that explains every flag.

mod common;

use common::{ok, quiver};

use std::path::Path;

/// The value of `"key":` in one compact JSON object (numbers, strings and null).
fn field<'a>(obj: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let i = obj.find(&pat).unwrap_or_else(|| panic!("no {key} in {obj}")) + pat.len();
    let rest = &obj[i..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}

/// `quiver tune --json` on `idx` with queries `q` and ground truth `gt` for `target`, plus
/// `more` flags; its one JSON object.
fn tune_json(idx: &str, q: &str, gt: &str, target: &str, more: &[&str]) -> String {
    let mut args = vec!["tune", "--index", idx, "--queries", q, "--gt", gt, "--target-recall", target, "--json"];
    args.extend_from_slice(more);
    ok(&args)
}

fn fixture(dir: &Path) -> (String, String, String, String) {
    let p = |n: &str| dir.join(n).display().to_string();
    let (base, q, gt, idx) = (p("base.fbin"), p("q.fvecs"), p("gt.ivecs"), p("idx"));
    ok(&["gen", "--n", "6000", "--dim", "16", "--out", &base]);
    ok(&["gen", "--n", "50", "--dim", "16", "--first-row", "6000", "--out", &q]);
    ok(&["gt", "--base", &base, "--queries", &q, "--k", "20", "--out", &gt, "--quiet"]);
    ok(&["build", "--input", &base, "--index", &idx, "--factory", "IVF16_HNSW8,PQ8", "--quiet"]);
    (base, q, gt, idx)
}

#[test]
fn pipeline_and_json_contract() {
    let d = tempfile::tempdir().unwrap();
    let (_, q, gt, idx) = fixture(d.path());
    let out = ok(&["search", "--index", &idx, "--queries", &q, "--gt", &gt, "--k", "10", "--nprobe", "1,16", "--json"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one object per nprobe and nothing else: {out}");
    for (line, nprobe) in lines.iter().zip(["1", "16"]) {
        assert!(line.starts_with('{') && line.ends_with('}'));
        for key in [
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
            "bytes_read_per_query",
            "io",
        ] {
            field(line, key);
        }
        assert_eq!(field(line, "nprobe"), nprobe);
        assert!(["io_uring", "pread"].contains(&field(line, "io")), "{line}");
        let bytes: f64 = field(line, "bytes_read_per_query").parse().unwrap();
        assert!(bytes > 0.0, "{line}");
    }
    // nprobe = nlist reads every extent once: exactly the segment's extent area.
    let area = std::fs::metadata(Path::new(&idx).join("seg-000000.qvs")).unwrap().len() - 4096;
    assert_eq!(field(lines[1], "bytes_read_per_query").parse::<f64>().unwrap(), area as f64);
    let r16: f64 = field(lines[1], "recall_at_10").parse().unwrap();
    assert!(r16 > 0.5, "recall at nprobe = nlist: {r16}");

    let pread =
        ok(&["search", "--index", &idx, "--queries", &q, "--gt", &gt, "--nprobe", "16", "--io", "pread", "--json"]);
    assert_eq!(field(&pread, "io"), "pread");
    assert_eq!(field(&pread, "recall_at_10"), field(lines[1], "recall_at_10"), "engines must agree");
    assert_eq!(field(lines[1], "coarse"), "graph");
    // An exact coarse search at nprobe = nlist probes what the walk does: every list.
    let exact =
        ok(&["search", "--index", &idx, "--queries", &q, "--gt", &gt, "--nprobe", "16", "--coarse", "exact", "--json"]);
    assert_eq!(field(&exact, "coarse"), "exact");
    assert_eq!(field(&exact, "recall_at_10"), field(lines[1], "recall_at_10"));
    // --batch: the same answers and no per-query latency; 8-bit codes run query by query
    // (their tables outweigh a list), fast-scan lists are read once per batch.
    let batch = |idx: &str| {
        ok(&["search", "--index", idx, "--queries", &q, "--gt", &gt, "--nprobe", "16", "--batch", "--json"])
    };
    let eight = batch(&idx);
    assert_eq!(field(&eight, "recall_at_10"), field(lines[1], "recall_at_10"));
    assert_eq!((field(&eight, "ms_p50"), field(&eight, "ms_p99")), ("null", "null"));
    assert_eq!(field(&eight, "bytes_read_per_query"), field(lines[1], "bytes_read_per_query"));
    let fs = d.path().join("fs").display().to_string();
    let base = d.path().join("base.fbin").display().to_string();
    ok(&["build", "--input", &base, "--index", &fs, "--factory", "IVF16_HNSW8,PQ8x4fs", "--quiet"]);
    let one = ok(&["search", "--index", &fs, "--queries", &q, "--gt", &gt, "--nprobe", "16", "--json"]);
    let grouped = batch(&fs);
    assert_eq!(field(&grouped, "recall_at_10"), field(&one, "recall_at_10"));
    let fs_area = std::fs::metadata(Path::new(&fs).join("seg-000000.qvs")).unwrap().len() - 4096;
    let batch_bytes: f64 = field(&grouped, "bytes_read_per_query").parse().unwrap();
    assert_eq!((batch_bytes * 50.0).round(), fs_area as f64, "each of the 16 lists read once for the 50 queries");

    let ids = d.path().join("ids.ivecs");
    let dist = d.path().join("d.fbin");
    ok(&[
        "search",
        "--index",
        &idx,
        "--queries",
        &q,
        "--nprobe",
        "4",
        "--k",
        "7",
        "--out",
        ids.to_str().unwrap(),
        "--out-distances",
        dist.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::metadata(&ids).unwrap().len(), 50 * (4 + 7 * 4));
    assert_eq!(std::fs::metadata(&dist).unwrap().len(), 8 + 50 * 7 * 4);
    // .npy ids are numpy's int64, the same ids.
    let npy = d.path().join("ids.npy");
    ok(&["search", "--index", &idx, "--queries", &q, "--nprobe", "4", "--k", "7", "--out", npy.to_str().unwrap()]);
    let bytes = std::fs::read(&npy).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'descr': '<i8'"), "an int64 array");
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'shape': (50, 7)"));
    let wide: Vec<i64> = bytes[128..].chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let narrow = ::quiver::VectorFile::open(&ids).unwrap().read_all_i32().unwrap();
    assert_eq!(wide, narrow.iter().map(|&x| x as i64).collect::<Vec<_>>());
    assert_eq!(::quiver::VectorFile::open(&npy).unwrap().read_all_i32().unwrap(), narrow, "read back as ground truth");

    let inspect = ok(&["inspect", "--index", &idx, "--json"]);
    assert_eq!(field(&inspect, "ntotal"), "6000");
    assert!(ok(&["verify", "--index", &idx]).starts_with("ok:"));
}

#[test]
fn a_warm_cache_reads_nothing_from_the_device() {
    let d = tempfile::tempdir().unwrap();
    let (_, q, gt, idx) = fixture(d.path());
    let base = ["search", "--index", &idx, "--queries", &q, "--gt", &gt, "--nprobe", "16", "--json"];
    let plain = ok(&base);
    assert_eq!(field(&plain, "cache_hit_rate"), "null");
    let warm = ok(&[&base[..], &["--cache-bytes", "64MiB", "--warmup"]].concat());
    assert_eq!(field(&warm, "cache_hit_rate"), "1.0");
    assert_eq!(field(&warm, "bytes_read_per_query"), "0.0");
    assert_eq!(field(&warm, "recall_at_10"), field(&plain, "recall_at_10"));
    let o = quiver(&[&base[..], &["--cache-bytes", "1000TiB"]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("more than this machine's memory"));
    for bad in [&["--cache-bytes", "lots"][..], &["--cache-bytes", "0"], &["--cache-preload"]] {
        let o = quiver(&[&base[..], bad].concat());
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn shallow_k_is_reported_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let (_, q, gt, idx) = fixture(d.path());
    let o = quiver(&["search", "--index", &idx, "--queries", &q, "--gt", &gt, "--k", "2", "--nprobe", "4", "--json"]);
    assert!(o.status.success());
    let line = String::from_utf8(o.stdout).unwrap();
    assert_eq!(field(&line, "recall_at_10_depth"), "2");
    assert!(String::from_utf8_lossy(&o.stderr).contains("depth 2"));
}

#[test]
fn errors_exit_nonzero_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let (base, q, gt, idx) = fixture(d.path());
    // Status 2: the command line is wrong and nothing was done; 1: the work failed.
    for (args, needle, code) in [
        (vec!["search", "--index", &idx, "--queries", &q, "--nprobe", "0"], "nprobe", 2),
        (vec!["search", "--index", &idx, "--queries", &q, "--nprobe", "17"], "nprobe", 2),
        (vec!["search", "--index", &idx, "--queries", &q, "--k", "0"], "--k", 2),
        (
            vec!["search", "--index", &idx, "--queries", &base, "--nprobe", "1,2", "--out", "x.ivecs"],
            "single setting",
            2,
        ),
        (vec!["build", "--input", "/nonexistent.fvecs", "--index", &idx], "nonexistent", 1),
        (vec!["build", "--input", &base, "--index", &idx, "--factory", "IVF16_HNSW8,PQ8"], "not empty", 2),
        (vec!["search", "--index", "/nonexistent-index", "--queries", &q], "does not exist", 1),
        (vec!["build", "--input", &base, "--index", "fs-idx", "--factory", "IVF16_HNSW8,PQ7x4fs"], "even m", 2),
        (vec!["build", "--input", &base, "--index", "fs-idx", "--factory", "IVF16_HNSW8,PQ8x6"], "not supported", 2),
        (vec!["build", "--input", &base, "--index", "fs-idx", "--factory", "IVF16_HNSW8,PQ6x4fs"], "divisible", 2),
        (vec!["tune", "--index", &idx, "--queries", &q, "--gt", &gt, "--target-recall", "0"], "(0, 1]", 2),
        (vec!["tune", "--index", &idx, "--queries", &q, "--gt", &gt, "--target-recall", "1.5"], "(0, 1]", 2),
        (vec!["tune", "--index", &idx, "--queries", &q, "--gt", &gt, "--target-recall", "x"], "not a number", 2),
        (vec!["search", "--index", &idx, "--queries", &q, "--k-factor", "0"], "--k-factor", 2),
        (vec!["search", "--index", &idx, "--queries", &q, "--inflight", "0"], "--inflight", 2),
        (
            vec!["tune", "--index", &idx, "--queries", &q, "--gt", &gt, "--target-recall", "0.5", "--inflight", "0"],
            "--inflight",
            2,
        ),
        (vec!["search", "--index", &idx, "--queries", &q, "--coarse", "brute"], "graph or exact", 2),
        (vec!["search", "--index", &idx, "--queries", &q, "--k-factor", "4"], ",RFlat", 2),
        (vec!["search", "--index", &idx, "--queries", &q, "--load-into-ram"], "--cache-bytes", 2),
        (vec!["build", "--input", &base, "--index", "fs-idx", "--factory", "IVF16_HNSW8,Flat,RFlat"], "RFlat", 2),
    ] {
        let o = quiver(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("error:") && err.contains(needle), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new("fs-idx").exists(), "refused before any work");
    let shallow = d.path().join("gt5.ivecs").display().to_string();
    ok(&["gt", "--base", &base, "--queries", &q, "--k", "5", "--out", &shallow, "--quiet"]);
    let o = quiver(&["tune", "--index", &idx, "--queries", &q, "--gt", &shallow, "--target-recall", "0.5"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("recall@10 needs 10"));
    let other_dim = d.path().join("q8.fvecs");
    ok(&["gen", "--n", "3", "--dim", "8", "--out", other_dim.to_str().unwrap()]);
    let o = quiver(&["search", "--index", &idx, "--queries", other_dim.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("dimension 8"));
}

/// `tune` finds the smallest nprobe that meets the target (the one below it does not, as
/// `search` confirms), reports it as one JSON object, and says so when no setting can.
#[test]
fn tune_finds_the_cheapest_nprobe_that_meets_the_target() {
    let d = tempfile::tempdir().unwrap();
    let (_, q, gt, idx) = fixture(d.path());
    // Recall as `search --coarse C` measures it, and the setting `tune --coarse C` finds.
    let recall_with = |nprobe: usize, coarse: &str| -> f64 {
        let n = nprobe.to_string();
        let args =
            ["search", "--index", &idx, "--queries", &q, "--gt", &gt, "--nprobe", &n, "--coarse", coarse, "--json"];
        field(&ok(&args), "recall_at_10").parse().unwrap()
    };
    let tune = |target: &str, coarse: &str| tune_json(&idx, &q, &gt, target, &["--coarse", coarse]);
    let recall = |nprobe: usize| recall_with(nprobe, "graph");
    let target = (recall(1) + recall(16)) / 2.0;
    let t = format!("{target:.3}");
    let out = tune(&t, "graph");
    assert_eq!(out.lines().count(), 1, "{out}");
    let nprobe: usize = field(&out, "nprobe").parse().unwrap();
    assert_eq!(field(&out, "k_factor"), "null", "this index does not re-rank");
    let got: f64 = field(&out, "recall_at_10").parse().unwrap();
    let t: f64 = t.parse().unwrap();
    assert!(got >= t && recall(nprobe) == got, "{out}");
    assert!(nprobe > 1 && recall(nprobe - 1) < t, "nprobe {nprobe} is the cheapest");
    for key in ["ms_p50", "qps"] {
        assert!(field(&out, key).parse::<f64>().unwrap() > 0.0, "{out}");
    }
    // With the exact coarse search: the cheapest nprobe as `search --coarse exact` measures it.
    let exact = |nprobe: usize| recall_with(nprobe, "exact");
    let out = tune(&format!("{t}"), "exact");
    let np: usize = field(&out, "nprobe").parse().unwrap();
    assert!(exact(np) >= t && (np == 1 || exact(np - 1) < t), "{out}");
    // 8-byte codes of 16-d vectors cannot rank every query perfectly, even with every list.
    assert!(recall(16) < 1.0);
    let o = quiver(&["tune", "--index", &idx, "--queries", &q, "--gt", &gt, "--target-recall", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("out of this index's reach"), "{err}");
}

/// An `,RFlat` index: `search --k-factor` sweeps with each --nprobe, its JSON rows carry
/// k_factor, and `tune` reaches a recall the codes alone cannot, naming the k_factor it chose.
#[test]
fn rflat_search_and_tune() {
    let d = tempfile::tempdir().unwrap();
    let (base, q, gt, idx) = fixture(d.path());
    let rf = d.path().join("rf").display().to_string();
    ok(&["build", "--input", &base, "--index", &rf, "--factory", "IVF16_HNSW8,PQ8,RFlat", "--quiet"]);
    let search = |nprobe: &str, k_factor: &str| {
        ok(&[
            "search",
            "--index",
            &rf,
            "--queries",
            &q,
            "--gt",
            &gt,
            "--nprobe",
            nprobe,
            "--k-factor",
            k_factor,
            "--json",
        ])
    };
    let rows = search("4,16", "1,8");
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 4);
    assert_eq!((field(rows[0], "nprobe"), field(rows[0], "k_factor")), ("4", "1"));
    assert_eq!((field(rows[3], "nprobe"), field(rows[3], "k_factor")), ("16", "8"));
    let r = |row: &str| field(row, "recall_at_10").parse::<f64>().unwrap();
    assert!(r(rows[3]) > r(rows[2]) && r(rows[3]) >= 0.99, "{rows:?}");
    let plain = ok(&["search", "--index", &idx, "--queries", &q, "--nprobe", "4", "--json"]);
    assert_eq!(field(&plain, "k_factor"), "null");
    // The codes alone stop short of 0.95 here (see the test above); the re-rank reaches it.
    let tune = |more: &[&str]| tune_json(&rf, &q, &gt, "0.95", more);
    let out = tune(&[]);
    let kf: usize = field(&out, "k_factor").parse().unwrap();
    let got: f64 = field(&out, "recall_at_10").parse().unwrap();
    assert!(got >= 0.95 && kf >= 1, "{out}");
    let again = search(field(&out, "nprobe"), &kf.to_string());
    assert_eq!(field(&again, "recall_at_10").parse::<f64>().unwrap(), got);
    // And it is the fewest lists that reach the target at that k_factor.
    let nprobe: usize = field(&out, "nprobe").parse().unwrap();
    if nprobe > 1 {
        let fewer = search(&(nprobe - 1).to_string(), &kf.to_string());
        assert!(field(&fewer, "recall_at_10").parse::<f64>().unwrap() < 0.95, "{fewer}");
    }
    // Timed with queries in flight, the candidates are judged by QPS; whichever wins, it
    // still reaches the target, as the fewest lists at its k_factor.
    let busy = tune(&["--threads", "2", "--inflight", "4"]);
    let (np, kf) = (field(&busy, "nprobe"), field(&busy, "k_factor"));
    let at = search(np, kf);
    assert!(field(&at, "recall_at_10").parse::<f64>().unwrap() >= 0.95, "{busy}");
    if np != "1" {
        let fewer = search(&(np.parse::<usize>().unwrap() - 1).to_string(), kf);
        assert!(field(&fewer, "recall_at_10").parse::<f64>().unwrap() < 0.95, "{fewer}");
    }
    let info = ok(&["inspect", "--index", &rf, "--json"]);
    assert_eq!(field(&info, "refine"), "float32");
    assert_eq!(field(&info, "ids"), "with_vectors");
    assert!(ok(&["verify", "--index", &rf]).starts_with("ok"));
}

#[test]
fn help_explains_every_command_and_flag() {
    let top = ok(&["--help"]);
    for cmd in ["build", "search", "tune", "inspect", "verify", "gen", "gt", "demo"] {
        assert!(top.contains(cmd), "{cmd} missing from --help");
        // clap puts a flag's explanation after it on the same line, or on the next line when any
        // explanation of the command is long.
        let h = ok(&[cmd, "--help"]);
        let lines: Vec<&str> = h.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.trim_start().starts_with("--")) {
            let inline = line.trim().split("  ").filter(|p| !p.trim().is_empty()).count() >= 2;
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            let below = !next.is_empty() && !next.starts_with('-');
            assert!(inline || below, "{cmd}: {} has no explanation", line.trim());
        }
    }
}

/// An HNSW{M},Flat index through the tool: search sweeps --ef (rows carry ef, nprobe null) and
/// refuses --nprobe; tune finds the efSearch that reaches the target; inspect and verify
/// describe and pass it.
#[test]
fn hnsw_flat_through_the_tool() {
    let d = tempfile::tempdir().unwrap();
    let (base, q, gt, _) = fixture(d.path());
    let idx = d.path().join("hnsw").display().to_string();
    ok(&["build", "--input", &base, "--index", &idx, "--factory", "HNSW8,Flat", "--quiet"]);
    let out = ok(&["search", "--index", &idx, "--queries", &q, "--gt", &gt, "--ef", "8,64", "--json"]);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["nprobe"].is_null()));
    assert_eq!((rows[0]["ef"].as_u64(), rows[1]["ef"].as_u64()), (Some(8), Some(64)));
    assert!(rows[1]["recall_at_10"].as_f64().unwrap() >= rows[0]["recall_at_10"].as_f64().unwrap());
    let o = quiver(&["search", "--index", &idx, "--queries", &q, "--nprobe", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--ef"));
    let o =
        quiver(&["tune", "--index", &idx, "--queries", &q, "--gt", &gt, "--target-recall", "0.9", "--coarse", "exact"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--coarse applies to IVF indexes"));
    let t: serde_json::Value = serde_json::from_str(&tune_json(&idx, &q, &gt, "0.95", &[])).unwrap();
    assert!(t["nprobe"].is_null() && t["k_factor"].is_null(), "{t}");
    assert!(t["ef_search"].as_u64().unwrap() >= 10 && t["recall_at_10"].as_f64().unwrap() >= 0.95, "{t}");
    let info: serde_json::Value = serde_json::from_str(&ok(&["inspect", "--index", &idx, "--json"])).unwrap();
    assert_eq!((info["factory"].as_str(), info["nlist"].is_null()), (Some("HNSW8,Flat"), true));
    assert!(ok(&["verify", "--index", &idx]).starts_with("ok"));
}

/// `search --filter-ids` returns only allowed ids (an int32 .ibin allow-list here), k of them;
/// a file of vectors or an empty list is refused before any search.
#[test]
fn filter_ids_restricts_the_results() {
    let d = tempfile::tempdir().unwrap();
    let (base, q, _, idx) = fixture(d.path());
    let allow = d.path().join("allow.ibin");
    let ids: Vec<i32> = (0..6000).filter(|i| i % 5 == 1).collect();
    let mut bytes = [(ids.len() as i32).to_le_bytes(), 1i32.to_le_bytes()].concat();
    ids.iter().for_each(|i| bytes.extend_from_slice(&i.to_le_bytes()));
    std::fs::write(&allow, bytes).unwrap();
    let out = d.path().join("ids.ivecs");
    let (allow_s, out_s) = (allow.to_str().unwrap(), out.to_str().unwrap());
    let search = ["search", "--index", &idx, "--queries", &q, "--nprobe", "8", "--k", "5"];
    ok(&[&search[..], &["--filter-ids", allow_s, "--out", out_s]].concat());
    let got = ::quiver::VectorFile::open(&out).unwrap().read_all_i32().unwrap();
    assert_eq!(got.len(), 50 * 5);
    assert!(got.iter().all(|&id| id % 5 == 1), "only allowed ids: {got:?}");
    for bad in [base.as_str(), d.path().join("none.ibin").to_str().unwrap()] {
        if bad.ends_with("none.ibin") {
            std::fs::write(bad, [0i32.to_le_bytes(), 1i32.to_le_bytes()].concat()).unwrap();
        }
        let o = quiver(&[&search[..], &["--filter-ids", bad]].concat());
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("--filter-ids"), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// `add`, `delete` and `compact` through the tool: each commits a generation and says so in
/// JSON; `inspect` reports what a compaction would do; deleted ids (int64 .npy here) never
/// come back from `search`; a live id given to `add --ids` is refused.
#[test]
fn add_delete_compact_through_the_tool() {
    let d = tempfile::tempdir().unwrap();
    let (base, q, _, idx) = fixture(d.path());
    let more = d.path().join("more.fbin");
    let more_s = more.to_str().unwrap();
    ok(&["gen", "--n", "500", "--dim", "16", "--seed", "77", "--out", more_s]);
    let added = ok(&["add", "--index", &idx, "--input", more_s, "--json", "--quiet"]);
    assert_eq!((field(&added, "generation"), field(&added, "added"), field(&added, "ntotal")), ("2", "500", "6500"));
    // The five nearest of every query, as int64 .npy, deleted.
    let near = d.path().join("near.npy");
    let near_s = near.to_str().unwrap();
    ok(&["search", "--index", &idx, "--queries", &q, "--nprobe", "8", "--k", "5", "--out", near_s]);
    let deleted = ok(&["delete", "--index", &idx, "--ids", near_s, "--json"]);
    assert_eq!(field(&deleted, "generation"), "3");
    let inspect = ok(&["inspect", "--index", &idx, "--json"]);
    assert_eq!(field(&inspect, "deleted"), field(&deleted, "deleted"));
    assert!(field(&inspect, "reclaimable_bytes").parse::<u64>().unwrap() > 0, "{inspect}");
    let after = d.path().join("after.npy");
    let after_s = after.to_str().unwrap();
    ok(&["search", "--index", &idx, "--queries", &q, "--nprobe", "8", "--k", "5", "--out", after_s]);
    let gone: Vec<i64> = ::quiver::VectorFile::open(&near).unwrap().read_all_i64().unwrap();
    let now: Vec<i64> = ::quiver::VectorFile::open(&after).unwrap().read_all_i64().unwrap();
    assert!(now.iter().all(|id| *id >= 0 && !gone.contains(id)), "a deleted id came back");
    let compacted = ok(&["compact", "--index", &idx, "--json"]);
    assert_eq!(field(&compacted, "generation"), "4");
    assert_eq!(field(&compacted, "dropped"), field(&deleted, "deleted"));
    ok(&["verify", "--index", &idx]);
    let again = d.path().join("again.npy");
    let again_s = again.to_str().unwrap();
    ok(&["search", "--index", &idx, "--queries", &q, "--nprobe", "8", "--k", "5", "--out", again_s]);
    assert_eq!(std::fs::read(&after).unwrap(), std::fs::read(&again).unwrap(), "compaction changed results");
    // A live id cannot be added again; the index stays at its generation.
    let one = d.path().join("one.npy");
    let ids = d.path().join("ids.ibin");
    ok(&["gen", "--n", "1", "--dim", "16", "--out", one.to_str().unwrap()]);
    std::fs::write(&ids, [1i32.to_le_bytes(), 1i32.to_le_bytes(), 7i32.to_le_bytes()].concat()).unwrap();
    let o = quiver(&["add", "--index", &idx, "--input", one.to_str().unwrap(), "--ids", ids.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already in the index"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = quiver(&["add", "--index", &idx, "--input", &base, "--ids", ids.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(field(&ok(&["inspect", "--index", &idx, "--json"]), "generation"), "4");
}

/// One HTTP/1.1 request to `addr`; the status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}

/// `quiver serve`: answers on the address it prints, moves to a new generation on SIGHUP,
/// stops cleanly on SIGTERM; listening beyond loopback without a token is refused.
#[test]
fn serve_answers_reloads_on_sighup_and_stops_on_sigterm() {
    use std::io::BufRead;
    let d = tempfile::tempdir().unwrap();
    let (_, _, _, idx) = fixture(d.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["serve", "--index", &idx, "--addr", "127.0.0.1:0", "--threads", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    assert!(line.contains("generation 1"), "{line}");
    let q = format!("{{\"vectors\": [[{}]], \"k\": 3}}", vec!["0.1"; 16].join(","));
    let (status, body) = http(&addr, "POST", "/v1/search", &q);
    assert_eq!(status, 200, "{body}");
    let first: i64 = body.split("[[").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    let ids = d.path().join("one.ibin");
    std::fs::write(&ids, [1i32.to_le_bytes(), 1i32.to_le_bytes(), (first as i32).to_le_bytes()].concat()).unwrap();
    ok(&["delete", "--index", &idx, "--ids", ids.to_str().unwrap()]);
    // SAFETY: kill(2) on the child's pid with a valid signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    line.clear();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("now serving generation 2"), "{line}");
    let (_, body) = http(&addr, "POST", "/v1/search", &q);
    assert!(!body.contains(&format!("[[{first},")), "{body}");
    assert!(http(&addr, "GET", "/metrics", "").1.contains("quiver_generation 2"));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    let o = quiver(&["serve", "--index", &idx, "--addr", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--token-file"), "{}", String::from_utf8_lossy(&o.stderr));
}
