//! The query executor against the device: QPS, latency and the device's request rate of cold
//! searches (no cache: every list and every re-rank page from the device, O_DIRECT) as the
//! queries each thread keeps in flight (`--inflight`) and the threads grow. Compare its
//! `reads/s` with fio's IOPS at the same queue depth (benches/README.md has the command).
//!
//!     cargo bench --bench executor -- --index DIR --queries q.fbin --nprobe 16 \
//!         [--k-factor 1] [--inflight 1,2,4,8,16] [--threads 1,2] [--coarse graph|exact] [--passes 1]
//!
//! Prints a Markdown table and one JSON object per setting. Not a criterion bench: each
//! setting is one timed run over the queries `--passes` times (after an untimed warm-up of 64):
//! 1,000 queries at 5,000 QPS last a fifth of a second, of which the first and last waves, with
//! fewer reads in flight, are a visible part; ten passes compare with fio's seconds of steady
//! state.

#[path = "support/args.rs"]
mod args;

use quiver::{Index, SearchParams, Searcher, VectorFile};

fn main() {
    let Some(dir) = args::arg("--index") else {
        eprintln!("usage: cargo bench --bench executor -- --index DIR --queries FILE [--nprobe 16] [--k-factor 1] [--inflight 1,2,4,8,16] [--threads 1,2] [--coarse graph|exact] [--passes 1]");
        return;
    };
    let queries = args::arg("--queries").expect("--queries FILE");
    let index = Index::open(&dir).expect("open the index");
    let q = VectorFile::open(&queries).expect("open the queries").read_all_f32().expect("read the queries");
    let q = q.repeat(args::number("--passes", 1).max(1));
    let nq = q.len() / index.info().dim;
    let p = SearchParams {
        k: 10,
        nprobe: args::number("--nprobe", 16),
        ef_search: index.info().ef_search,
        k_factor: args::number("--k-factor", 1),
        coarse: args::arg("--coarse").map_or(Default::default(), |c| c.parse().expect("--coarse graph|exact")),
        ..Default::default()
    };
    println!("| threads | inflight | QPS | p50 ms | p99 ms | KiB/query | reads/query | reads/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for threads in args::numbers("--threads", "1,2") {
        for inflight in args::numbers("--inflight", "1,2,4,8,16") {
            let s = Searcher::new(&index, threads).unwrap().with_inflight(inflight).unwrap();
            s.search(&q[..q.len().min(64 * index.info().dim)], &p).unwrap();
            let b = s.search(&q, &p).unwrap();
            let mut lat = b.latencies_ms.clone();
            lat.sort_by(f64::total_cmp);
            let pct = |f: f64| lat[((lat.len() - 1) as f64 * f).round() as usize];
            let st = b.results.stats;
            let (qps, kib, reads) =
                (nq as f64 / b.wall_s, st.bytes_read as f64 / 1024.0 / nq as f64, st.reads as f64 / nq as f64);
            let rate = st.reads as f64 / b.wall_s;
            println!(
                "| {threads} | {inflight} | {qps:.0} | {:.3} | {:.3} | {kib:.1} | {reads:.1} | {rate:.0} |",
                pct(0.5),
                pct(0.99)
            );
            json.push(format!(
                "{{\"threads\":{threads},\"inflight\":{inflight},\"nprobe\":{},\"k_factor\":{},\"qps\":{qps:.1},\"ms_p50\":{:.4},\"ms_p99\":{:.4},\"kib_per_query\":{kib:.2},\"reads_per_query\":{reads:.2},\"reads_per_s\":{rate:.0}}}",
                p.nprobe,
                p.k_factor,
                pct(0.5),
                pct(0.99)
            ));
        }
    }
    for j in json {
        println!("{j}");
    }
}
