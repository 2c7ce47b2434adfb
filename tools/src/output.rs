//! Output: a human table, or JSON Lines (one compact object per setting, nothing else on stdout).
//! Every command writes to an injected `Write`, so tests can read what it printed.

use std::io::Write;

use crate::eval::Row;

/// One JSON object per row, keys as documented in the README.
pub fn json_row(out: &mut dyn Write, r: &Row) -> std::io::Result<()> {
    let mut o = serde_json::json!({
        "nprobe": r.nprobe,
        "ef": r.ef,
        "k_factor": r.k_factor,
        "coarse": r.coarse,
        "k": r.k,
        "recall_at_1": r.recall_at_1,
        "one_recall_at_3": r.one_recall_at_3,
        "recall_at_10": r.recall_at_10,
        "ms_mean": r.ms_mean,
        "ms_p50": r.ms_p50,
        "ms_p99": r.ms_p99,
        "qps": r.qps,
        "bytes_read_per_query": r.bytes_read_per_query,
        "io": r.io,
        "cache_hit_rate": r.cache_hit_rate,
    });
    if let Some(d) = r.recall_depth {
        o["recall_at_10_depth"] = d.into();
    }
    writeln!(out, "{o}")
}

pub fn table_header(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>6} {:>4} {:>4} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10} {:>8}",
        "nprobe", "ef", "kf", "R@1", "1-R@3", "R@10", "ms/q", "p50 ms", "p99 ms", "QPS", "KiB read/q", "io"
    )
}

pub fn table_row(out: &mut dyn Write, r: &Row) -> std::io::Result<()> {
    let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.3}"));
    writeln!(
        out,
        "{:>6} {:>4} {:>4} {:>6} {:>7} {:>7} {:>8.3} {:>8} {:>8} {:>9.0} {:>10.1} {:>8}",
        r.nprobe.map_or("-".into(), |n| n.to_string()),
        r.ef,
        r.k_factor.map_or("-".into(), |f| f.to_string()),
        f(r.recall_at_1),
        f(r.one_recall_at_3),
        f(r.recall_at_10),
        r.ms_mean,
        f(r.ms_p50),
        f(r.ms_p99),
        r.qps,
        r.bytes_read_per_query / 1024.0,
        r.io
    )
}
