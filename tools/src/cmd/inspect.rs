use std::io::Write;

use quiver::Index;

use super::CmdResult;
pub use super::IndexArgs as Args;

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let index = Index::open(&a.index)?;
    let i = index.info();
    let files = index.files();
    let Some(s) = index.list_stats() else { return graph(&a, &index, out) };
    let c = index.compaction_stats().unwrap_or_default();
    if a.json {
        let mut report = common_json(i, &files);
        let more = serde_json::json!({
            "nlist": i.nlist,
            "pq_m": i.pq_m,
            "pq_nbits": i.pq_nbits,
            "code_layout": layout_name(i),
            "by_residual": i.by_residual,
            "refine": refine_name(i),
            "ids": if index.ids_with_vectors() { "with_vectors" } else { "in_lists" },
            "niter": i.niter,
            "train_size": i.train_size,
            "lists": {
                "empty": s.empty, "min": s.min, "max": s.max, "mean": s.mean,
                "p50": s.p50, "p90": s.p90, "p99": s.p99, "imbalance": s.imbalance,
            },
            "deleted": i.deleted,
            "next_id": i.next_id,
            "storage": {
                "extents": c.extents, "lists_split": c.lists_split,
                "max_extents_per_list": c.max_extents_per_list, "lists_with_deleted": c.lists_with_deleted,
                "lists_to_compact": c.lists_to_compact, "reclaimable_bytes": c.reclaimable_bytes,
            },
        });
        extend(&mut report, more);
        writeln!(out, "{report}")?;
        return Ok(());
    }
    writeln!(out, "index      {}", a.index.display())?;
    writeln!(out, "factory    {}  (metric {}, dim {}, generation {})", i.factory, i.metric, i.dim, i.generation)?;
    writeln!(out, "vectors    {} (next id {})", i.ntotal, i.next_id)?;
    writeln!(
        out,
        "storage    {} extents; {} lists in several (at most {}); {} deleted vectors in {} lists; compact would rewrite {} lists and free {}",
        c.extents,
        c.lists_split,
        c.max_extents_per_list,
        c.deleted,
        c.lists_with_deleted,
        c.lists_to_compact,
        quiver::human_bytes(c.reclaimable_bytes)
    )?;
    writeln!(
        out,
        "coarse     nlist {}, HNSW M {}, efConstruction {}, efSearch {}, k-means niter {}, trained on {}",
        i.nlist, i.hnsw_m, i.ef_construction, i.ef_search, i.niter, i.train_size
    )?;
    if i.pq_m == 0 {
        writeln!(
            out,
            "vectors    float32 in the lists ({} bytes per vector + 8-byte id), row-major, exact distances",
            i.code_layout().code_size()
        )?;
    } else {
        writeln!(
            out,
            "codes      PQ m = {} x {} bits ({} bytes per vector{}), {}, of {}",
            i.pq_m,
            i.pq_nbits,
            i.code_layout().code_size(),
            if index.ids_with_vectors() { "" } else { " + 8-byte id" },
            layout_name(i),
            if i.by_residual { "residuals from the list centroid" } else { "the vectors themselves" }
        )?;
    }
    if let Some(r) = refine_name(i) {
        writeln!(
            out,
            "re-rank    full vectors as {r} ({} bytes each) in vec-*.qvv, read per query for the k x k_factor best",
            i.refine.map_or(0, |k| k.vector_bytes(i.dim))
        )?;
        if index.ids_with_vectors() {
            writeln!(out, "ids        beside each full vector (the lists hold codes alone; a candidate's id is read with its vector)")?;
        }
    }
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

/// An index without lists: `HNSW{M},Flat`.
fn graph(a: &Args, index: &Index, out: &mut dyn Write) -> CmdResult {
    let i = index.info();
    let files = index.files();
    if a.json {
        let mut report = common_json(i, &files);
        let layout = if i.pq_m > 0 { "PQ codes in id order" } else { "float32 vectors" };
        let pq = (i.pq_m > 0).then_some(i.pq_m);
        extend(&mut report, serde_json::json!({"nlist": null, "code_layout": layout, "pq_m": pq}));
        writeln!(out, "{report}")?;
        return Ok(());
    }
    writeln!(out, "index      {}", a.index.display())?;
    writeln!(out, "factory    {}  (metric {}, dim {}, generation {})", i.factory, i.metric, i.dim, i.generation)?;
    if i.pq_m > 0 {
        writeln!(
            out,
            "vectors    {} as PQ codes, m = {} x 8 bits ({} bytes each; codebooks.qvc), in id order, held in RAM",
            i.ntotal, i.pq_m, i.pq_m
        )?;
    } else {
        writeln!(out, "vectors    {} as float32 ({} bytes each), in id order", i.ntotal, 4 * i.dim)?;
    }
    writeln!(
        out,
        "graph      HNSW M {} ({} links on level 0), efConstruction {}, default efSearch {}; mapped at open unless loaded into RAM",
        i.hnsw_m,
        2 * i.hnsw_m,
        i.ef_construction,
        i.ef_search
    )?;
    writeln!(out, "seed       {}", i.seed)?;
    writeln!(out, "files")?;
    for (n, k, b) in files {
        writeln!(out, "  {n:<20} {k:<15} {b:>14} bytes")?;
    }
    Ok(())
}

/// The keys every kind of index has, its files (name, kind, bytes) among them.
fn common_json(i: &quiver::IndexInfo, files: &[(String, &str, u64)]) -> serde_json::Value {
    let files: Vec<_> = files.iter().map(|(n, k, b)| serde_json::json!({"name": n, "kind": k, "bytes": b})).collect();
    serde_json::json!({
        "factory": i.factory,
        "dim": i.dim,
        "metric": i.metric.to_string(),
        "ntotal": i.ntotal,
        "hnsw_m": i.hnsw_m,
        "ef_construction": i.ef_construction,
        "ef_search": i.ef_search,
        "seed": i.seed,
        "generation": i.generation,
        "files": files,
    })
}

/// Adds `more`'s keys to the object `report`.
fn extend(report: &mut serde_json::Value, more: serde_json::Value) {
    if let (Some(r), serde_json::Value::Object(m)) = (report.as_object_mut(), more) {
        r.extend(m);
    }
}

/// How an `,RFlat` index keeps its full vectors (None: it keeps none).
fn refine_name(i: &quiver::IndexInfo) -> Option<&'static str> {
    i.refine.map(|r| match r {
        quiver::RefineVectors::Float32 => "float32",
        quiver::RefineVectors::Uint8 => "uint8",
    })
}

/// How the lists' codes are laid out, in words.
fn layout_name(i: &quiver::IndexInfo) -> &'static str {
    match i.code_layout() {
        quiver::format::CodeLayout::RowMajor { .. } if i.pq_m == 0 => "float32 vectors",
        quiver::format::CodeLayout::RowMajor { .. } => "row-major",
        quiver::format::CodeLayout::Blocks32 { .. } => "fast-scan blocks of 32",
    }
}
