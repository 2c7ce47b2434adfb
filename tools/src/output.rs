//! Output: a human table, or JSON Lines (one compact object per setting, nothing else on stdout).
//! Every command writes to an injected `Write`, so tests can read what it printed.

use std::io::Write;

use crate::eval::Row;

fn num(v: Option<f64>) -> String {
    v.map_or("null".into(), |x| format!("{x:.6}"))
}

/// One JSON object per row, keys as documented in the README.
pub fn json_row(out: &mut dyn Write, r: &Row) -> std::io::Result<()> {
    let depth = r.recall_depth.map_or(String::new(), |d| format!(",\"recall_at_10_depth\":{d}"));
    writeln!(
        out,
        "{{\"nprobe\":{},\"ef\":{},\"k\":{},\"recall_at_1\":{},\"one_recall_at_3\":{},\"recall_at_10\":{}{depth},\"ms_mean\":{:.6},\"ms_p50\":{:.6},\"ms_p99\":{:.6},\"qps\":{:.3},\"bytes_read_per_query\":{:.1},\"io\":\"{}\"}}",
        r.nprobe,
        r.ef,
        r.k,
        num(r.recall_at_1),
        num(r.one_recall_at_3),
        num(r.recall_at_10),
        r.ms_mean,
        r.ms_p50,
        r.ms_p99,
        r.qps,
        r.bytes_read_per_query,
        r.io
    )
}

pub fn table_header(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>6} {:>4} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10} {:>8}",
        "nprobe", "ef", "R@1", "1-R@3", "R@10", "ms/q", "p50 ms", "p99 ms", "QPS", "KiB read/q", "io"
    )
}

pub fn table_row(out: &mut dyn Write, r: &Row) -> std::io::Result<()> {
    let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.3}"));
    writeln!(
        out,
        "{:>6} {:>4} {:>6} {:>7} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>9.0} {:>10.1} {:>8}",
        r.nprobe,
        r.ef,
        f(r.recall_at_1),
        f(r.one_recall_at_3),
        f(r.recall_at_10),
        r.ms_mean,
        r.ms_p50,
        r.ms_p99,
        r.qps,
        r.bytes_read_per_query / 1024.0,
        r.io
    )
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
