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

use quiver::kmeans::{self, KMeansParams, TwoLevelParams};
use quiver::Synthetic;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let nlists: Vec<usize> = arg("--nlist")
        .unwrap_or_else(|| "4096,16384,65536".into())
        .split(',')
        .map(|v| v.parse().expect("--nlist takes comma-separated numbers"))
        .collect();
    let flat_max: usize = arg("--flat-max").map_or(16384, |v| v.parse().expect("--flat-max"));
    let per: usize = arg("--points-per-centroid").map_or(40, |v| v.parse().expect("--points-per-centroid"));
    let d: usize = arg("--dim").map_or(128, |v| v.parse().expect("--dim"));
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
