//! Coarse-quantizer training time against nlist: flat k-means against two-level k-means (with
//! its refinement), on SyntheticDataset-shaped data, 40 training points per centroid as faiss
//! asks for, niter 10, all cores. Flat k-means is run only up to `--flat-max` (its cost grows
//! with nlist × points = 40 · nlist², days at 2^20); above it the table shows the flat time
//! projected from the largest measured one at that per-(point × centroid) rate.
//!
//!     cargo bench --bench train_nlist -- --nlist 4096,16384,65536,262144 --flat-max 16384
//!
//! Prints a Markdown table and one JSON object per nlist. Not a criterion bench: one run per
//! setting takes seconds to minutes.

use std::time::Instant;

#[path = "support/args.rs"]
mod args;

use quiver::kmeans::{self, KMeansParams, TwoLevelParams};
use quiver::Synthetic;

fn main() {
    let nlists = args::numbers("--nlist", "4096,16384,65536");
    let flat_max = args::number("--flat-max", 16384);
    let per = args::number("--points-per-centroid", 40);
    let d = args::number("--dim", 128);
    let km = KMeansParams { niter: 10, seed: 5, ..Default::default() };
    let mut rate: Option<f64> = None; // flat seconds per (point × centroid)
    println!("| nlist | training points | flat k-means s | two-level s | speed-up |");
    println!("|---:|---:|---:|---:|---:|");
    for &nlist in &nlists {
        let n = per * nlist;
        let mut x = Vec::new();
        Synthetic::new(d, 1338).rows(0, n, &mut x);
        let t = Instant::now();
        kmeans::train_two_level(&x, d, nlist, &TwoLevelParams { kmeans: km.clone(), ..Default::default() }, &|_, _| {})
            .expect("two-level");
        let two = t.elapsed().as_secs_f64();
        let (flat, measured) = if nlist <= flat_max {
            let t = Instant::now();
            kmeans::train(&x, d, nlist, &km).expect("flat");
            let s = t.elapsed().as_secs_f64();
            rate = Some(s / (n as f64 * nlist as f64));
            (Some(s), true)
        } else {
            (rate.map(|r| r * n as f64 * nlist as f64), false)
        };
        let mark = if measured { "" } else { " (projected)" };
        match flat {
            Some(f) => println!("| {nlist} | {n} | {f:.1}{mark} | {two:.1} | {:.0}× |", f / two),
            None => println!("| {nlist} | {n} | not run | {two:.1} | |"),
        }
        let flat_json = flat.map_or("null".to_string(), |f| format!("{f:.3}"));
        println!(
            "{{\"nlist\":{nlist},\"points\":{n},\"dim\":{d},\"flat_s\":{flat_json},\"flat_measured\":{measured},\"two_level_s\":{two:.3}}}"
        );
    }
}
