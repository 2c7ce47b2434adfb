use std::io::Write;

use quiver::Index;

use super::CmdResult;
pub use super::IndexArgs as Args;
use crate::output::json_str;

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let index = Index::open(&a.index)?;
    let i = index.info();
    let s = index.list_stats();
    let files = index.files();
    if a.json {
        let files_json: Vec<String> = files
            .iter()
            .map(|(n, k, b)| format!("{{\"name\":{},\"kind\":{},\"bytes\":{b}}}", json_str(n), json_str(k)))
            .collect();
        writeln!(
            out,
            "{{\"factory\":{},\"dim\":{},\"metric\":\"{}\",\"ntotal\":{},\"nlist\":{},\"pq_m\":{},\"hnsw_m\":{},\"ef_construction\":{},\"ef_search\":{},\"niter\":{},\"train_size\":{},\"seed\":{},\"generation\":{},\"lists\":{{\"empty\":{},\"min\":{},\"max\":{},\"mean\":{:.3},\"p50\":{},\"p90\":{},\"p99\":{},\"imbalance\":{:.4}}},\"files\":[{}]}}",
            json_str(&i.factory), i.dim, i.metric, i.ntotal, i.nlist, i.pq_m, i.hnsw_m, i.ef_construction, i.ef_search, i.niter, i.train_size, i.seed, i.generation,
            s.empty, s.min, s.max, s.mean, s.p50, s.p90, s.p99, s.imbalance, files_json.join(",")
        )?;
        return Ok(());
    }
    writeln!(out, "index      {}", a.index.display())?;
    writeln!(out, "factory    {}  (metric {}, dim {}, generation {})", i.factory, i.metric, i.dim, i.generation)?;
    writeln!(out, "vectors    {}", i.ntotal)?;
    writeln!(
        out,
        "coarse     nlist {}, HNSW M {}, efConstruction {}, efSearch {}, k-means niter {}, trained on {}",
        i.nlist, i.hnsw_m, i.ef_construction, i.ef_search, i.niter, i.train_size
    )?;
    writeln!(out, "codes      PQ m = {} x 8 bits ({} bytes per vector + 8-byte id)", i.pq_m, i.pq_m)?;
    writeln!(out, "seed       {}", i.seed)?;
    writeln!(
        out,
        "lists      empty {}, min {}, p50 {}, p90 {}, p99 {}, max {}, mean {:.1}, imbalance {:.3}",
        s.empty, s.min, s.p50, s.p90, s.p99, s.max, s.mean, s.imbalance
    )?;
    writeln!(out, "files")?;
    for (n, k, b) in files {
        writeln!(out, "  {n:<20} {k:<15} {b:>14} bytes")?;
    }
    Ok(())
}
