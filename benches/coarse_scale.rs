//! The coarse quantizer at the sizes of a 10^9 build: HNSW construction over nlist centroids
//! and the assignment of streamed vectors through it (k = 1, efSearch 16), against nlist.
//! These two carry the build-time projection to nlist 2^20 (benches/README.md): the graph's
//! build grows faster than nlist·log(nlist) once the centroids leave the caches, and so does
//! the per-vector assignment.
//!
//!     cargo bench --bench coarse_scale -- --nlist 65536,262144,1048576 --dim 128
//!
//! The "centroids" are SyntheticDataset rows (k-means would take hours at 2^20 on two cores
//! and does not change the graph's cost); queries are rows from beyond them. Prints a Markdown
//! table and one JSON object per nlist. Not a criterion bench: one run per setting.

#[path = "support/args.rs"]
mod args;

use std::time::Instant;

use quiver::hnsw::{Hnsw, HnswParams, Points};
use quiver::ivf::CoarseQuantizer;
use quiver::{Metric, Synthetic};

fn main() {
    let nlists = args::numbers("--nlist", "65536,262144");
    let d = args::number("--dim", 128);
    let nq = args::number("--queries", 200_000);
    let threads = rayon::current_num_threads();
    let gen = Synthetic::new(d, 1338);
    let mut queries = Vec::new();
    gen.rows(1 << 31, nq, &mut queries);
    println!(
        "| nlist | HNSW build s ({threads} threads) | assign µs/vector ({threads} threads) | assign µs/vector·thread |"
    );
    println!("|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for &nlist in &nlists {
        let mut centroids = Vec::new();
        gen.rows(0, nlist, &mut centroids);
        let t = Instant::now();
        let hnsw = Hnsw::build(
            &Points { data: &centroids, d, metric: Metric::L2 },
            &HnswParams { m: 32, ef_construction: 40, seed: 7 },
        );
        let build_s = t.elapsed().as_secs_f64();
        let q = CoarseQuantizer::new(d, Metric::L2, centroids, hnsw);
        let t = Instant::now();
        let lists = q.assign_batch(&queries, 16);
        let us = t.elapsed().as_secs_f64() * 1e6 / nq as f64;
        assert_eq!(lists.len(), nq);
        println!("| {nlist} | {build_s:.1} | {us:.2} | {:.2} |", us * threads as f64);
        json.push(format!(
            "{{\"nlist\":{nlist},\"dim\":{d},\"threads\":{threads},\"hnsw_build_s\":{build_s:.3},\"assign_us_per_vector\":{us:.3}}}"
        ));
    }
    json.iter().for_each(|j| println!("{j}"));
}
