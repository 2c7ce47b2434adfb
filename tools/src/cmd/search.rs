use std::io::Write;
use std::path::PathBuf;

use quiver::{CachePolicy, CoarseSearch, Contents, Index, IndexInfo, IoMode, OpenOptions, Searcher, VectorWriter};

use super::{load_ground_truth, load_queries, CmdResult, SearchTarget};
use crate::args::{self, usage, CountList};
use crate::eval;
use crate::output;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Io {
    /// io_uring where the kernel offers it, else pread.
    Auto,
    /// io_uring with O_DIRECT, or fail.
    Uring,
    /// Positional reads.
    Pread,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CachePolicyArg {
    Frequency,
    Lru,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: SearchTarget,
    /// Exact ground truth (.ivecs or .ibin, nearest first) for recall figures.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Neighbours per query (at most the vectors in the index).
    #[arg(long, default_value_t = 10, value_parser = args::count)]
    k: usize,
    /// Lists probed per query, 1 ..= nlist; a comma-separated list runs each setting in turn
    /// [default: 1,4,16,64, leaving out settings above the index's nlist and adding nlist].
    #[arg(long)]
    nprobe: Option<CountList>,
    /// HNSW efSearch; a comma-separated list runs each setting in turn. HNSW{M},Flat: the
    /// search width over the vectors [default: 16,32,64,128]. IVF indexes: the width over the
    /// centroids [default: the index's]; with nprobe above it, the walk keeps nprobe
    /// candidates and stops as faiss's does (once efSearch of them are closer than the next to
    /// expand).
    #[arg(long)]
    ef: Option<CountList>,
    /// Indexes built with ,RFlat: the codes choose k x k_factor candidates, re-ranked by exact
    /// distance from their full vectors read from disk (faiss's k_factor); a comma-separated
    /// list runs each with every --nprobe [default: 1]. An error for an index without full
    /// vectors.
    #[arg(long)]
    k_factor: Option<CountList>,
    /// IVF indexes: how each query's nprobe lists are found. graph: a walk of the HNSW graph
    /// over the centroids, --ef wide (what the factory string names). exact: every
    /// centroid's distance, so the lists are the true nprobe closest (faiss's flat
    /// quantizer); on CPUs with AMX, queries screen all centroids in bfloat16 tiles and
    /// measure the few that can be among the closest in float32 — faster than the walk for
    /// batches (--batch, --inflight) where nlist x d is at most a few million.
    #[arg(long, default_value = "graph")]
    coarse: CoarseSearch,
    /// Search threads (0 = one per core); queries run in parallel, each timed on its own.
    #[arg(long, default_value_t = 1, value_parser = args::threads)]
    threads: usize,
    /// Queries each search thread keeps in flight over its io_uring: their reads outstanding
    /// together, each list scanned as it arrives, and as one query is answered the next
    /// starts (1 = one query at a time, the lowest latency; more = more QPS from a device that
    /// has queue depth to spare). Each query's latency is its own. Same results for any N.
    #[arg(long, default_value_t = 1, value_parser = args::count, conflicts_with = "batch")]
    inflight: usize,
    /// I/O engine.
    #[arg(long, value_enum, default_value = "auto")]
    io: Io,
    /// RAM for faiss's precomputed tables (L2 indexes of 8-bit residual codes whose PQ
    /// sub-vectors have 8 or more dimensions: nlist x m x 1 KiB, built at open), which hold each
    /// list's part of a distance so that a list read from the device need not compute it; 0
    /// turns them off (same results). Same size syntax as build --memory [default: 256MiB].
    #[arg(long, value_parser = args::size_or_zero)]
    precomputed_table_max_bytes: Option<u64>,
    /// RAM for a cache of lists (extents), same size syntax as build --memory, e.g. 2GiB
    /// [default: none]. Extents enter checksum-verified after a read; the cache keeps those
    /// that save the most device reads per byte (--cache-policy). L2 indexes of residual
    /// codes (PQ{m}, PQ{m}x4fsr) keep 4 more bytes per cached vector, the list's part of each
    /// distance: all of one takes its segments + 4 x ntotal. 8-bit PQ{m} on a CPU with AVX-512
    /// VBMI keeps m more, its codes transposed for in-register look-ups: segments + (4 + m) x ntotal.
    #[arg(long, value_parser = args::size)]
    cache_bytes: Option<u64>,
    /// Fill the cache at open, lists in order, until it is full.
    #[arg(long, requires = "cache_bytes")]
    cache_preload: bool,
    /// frequency (most accesses per byte, with admission: a cold scan does not flush hot lists)
    /// or lru.
    #[arg(long, value_enum, default_value = "frequency")]
    cache_policy: CachePolicyArg,
    /// HNSW{M},Flat: read the graph and the vectors into RAM at open, checking every page's
    /// checksum, instead of mapping them (the default: opens at once, pages in what queries
    /// touch, and leaves the checksums to `quiver verify`).
    #[arg(long)]
    load_into_ram: bool,
    /// Run all the queries once, untimed, before each setting is timed, so that a cached run
    /// measures the warm state.
    #[arg(long)]
    warmup: bool,
    /// Answer the queries as one batch grouped by list, as faiss's batch search does: each
    /// probed list is scanned once for all the queries that probe it. The same results at a
    /// higher QPS; queries have no latency of their own (p50/p99 are left out, ms/q is wall
    /// time / queries).
    #[arg(long)]
    batch: bool,
    /// JSON Lines on stdout: one object per setting with nprobe, ef, k_factor (null where the
    /// index does not re-rank), coarse ("graph" or "exact"; null for HNSW{M} indexes), k, recall_at_1,
    /// one_recall_at_3, recall_at_10, ms_mean, ms_p50, ms_p99 (null with --batch), qps, bytes_read_per_query (device
    /// bytes only), io, cache_hit_rate (of extents, in the timed pass; null without a cache).
    #[arg(long)]
    json: bool,
    /// Write each query's top-k ids (.npy: int64; .ivecs, .ibin: int32, refused before any
    /// work for an index whose ids do not fit; -1 where fewer than k were found). Needs a single setting (one --nprobe, or --ef for HNSW{M},Flat). Written whole or not at all.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write each query's top-k distances (.fvecs, .fbin or .npy). Needs a single setting.
    #[arg(long)]
    out_distances: Option<PathBuf>,
    /// Return only these ids (an allow-list: .ivecs, .ibin or .npy of int32 or int64 ids, any
    /// shape; -1 entries are ignored). A query still gets k results where its probed lists hold
    /// k allowed vectors. IVF indexes only. Recall is against --gt as given (give the filtered
    /// ground truth).
    #[arg(long, value_name = "FILE")]
    filter_ids: Option<PathBuf>,
}

/// The allow-list of `--filter-ids`, checked before any search.
fn load_filter(
    path: &std::path::Path,
    info: &IndexInfo,
) -> Result<std::sync::Arc<quiver::IdFilter>, Box<dyn std::error::Error>> {
    if info.is_graph() {
        return usage(format!(
            "--filter-ids: {} searches a graph, which cannot pass over vectors yet; filtered search is for IVF indexes",
            info.factory
        ));
    }
    let ids = quiver::VectorFile::open(path)
        .and_then(|f| f.read_all_i64())
        .map_err(|e| args::flag_error("--filter-ids", e))?;
    let filter = quiver::IdFilter::new(ids.into_iter().filter(|&id| id >= 0).map(|id| id as u64));
    if filter.is_empty() {
        return usage(format!("--filter-ids {}: holds no ids, so no search could return anything", path.display()));
    }
    Ok(std::sync::Arc::new(filter))
}

/// The k_factor settings to run: the user's, where the index re-ranks (each at most
/// [`quiver::MAX_K_FACTOR`]); `[1]` by default.
fn k_factor_settings(given: Option<&CountList>, info: &IndexInfo) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    let Some(list) = given else { return Ok(vec![1]) };
    if info.refine.is_none() {
        return usage(format!(
            "--k-factor re-ranks with full vectors, and this index ({}) keeps none: build it with ',RFlat' at the end of the factory string",
            info.factory
        ));
    }
    if let Some(bad) = list.0.iter().find(|&&f| f > quiver::MAX_K_FACTOR) {
        return usage(format!("--k-factor {bad} is out of range: 1 ..= {}", quiver::MAX_K_FACTOR));
    }
    Ok(list.0.clone())
}

/// The nprobe settings to run: the user's, each checked against nlist; or the default sweep
/// cut to what the index has, with a note.
fn nprobe_settings(given: Option<&CountList>, nlist: usize) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    match given {
        Some(CountList(v)) => {
            if let Some(bad) = v.iter().find(|&&p| p > nlist) {
                return usage(format!("--nprobe {bad} is above the index's nlist ({nlist}); use 1 ..= {nlist}"));
            }
            Ok(v.clone())
        }
        None => {
            let mut v: Vec<usize> = [1, 4, 16, 64].into_iter().filter(|&p| p <= nlist).collect();
            if v.len() < 4 {
                if !v.contains(&nlist) {
                    v.push(nlist);
                }
                eprintln!(
                    "note: the index has nlist = {nlist}; running --nprobe {} instead of the default 1,4,16,64",
                    CountList(v.clone())
                );
            }
            Ok(v)
        }
    }
}

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    // Everything is checked, and the output files started, before any search or output.
    let io = match a.io {
        Io::Auto => IoMode::Auto,
        Io::Uring => IoMode::Uring,
        Io::Pread => IoMode::Pread,
    };
    let mut open = OpenOptions {
        io,
        cache_bytes: a.cache_bytes.unwrap_or(0),
        cache_preload: a.cache_preload,
        cache_policy: match a.cache_policy {
            CachePolicyArg::Frequency => CachePolicy::Frequency,
            CachePolicyArg::Lru => CachePolicy::Lru,
        },
        load_into_ram: a.load_into_ram,
        ..Default::default()
    };
    if let Some(b) = a.precomputed_table_max_bytes {
        open.precomputed_table_max_bytes = b;
    }
    let index = Index::open_with(&a.target.index, open)?;
    let info = index.info().clone();
    if a.load_into_ram && !info.is_graph() {
        return usage(format!(
            "--load-into-ram reads the graph and vectors of an HNSW index into RAM; {} reads its lists per query: keep them in RAM with --cache-bytes",
            info.factory
        ));
    }
    let (nprobes, efs) = if info.is_graph() {
        if a.nprobe.is_some() {
            return usage(format!(
                "--nprobe applies to IVF indexes; {} searches its graph: sweep --ef (efSearch) instead",
                info.factory
            ));
        }
        (vec![1], a.ef.as_ref().map_or(vec![16, 32, 64, 128], |l| l.0.clone()))
    } else {
        (nprobe_settings(a.nprobe.as_ref(), info.nlist)?, a.ef.as_ref().map_or(vec![info.ef_search], |l| l.0.clone()))
    };
    let k_factors = k_factor_settings(a.k_factor.as_ref(), &info)?;
    if (a.out.is_some() || a.out_distances.is_some()) && nprobes.len() * efs.len() * k_factors.len() != 1 {
        return usage(
            "--out and --out-distances need a single setting: one --nprobe (HNSW: --ef) and --k-factor value",
        );
    }
    if a.k as u64 > info.ntotal {
        return usage(format!("--k {} is above the {} vectors in the index", a.k, info.ntotal));
    }
    let filter = a.filter_ids.as_deref().map(|p| load_filter(p, &info)).transpose()?;
    let queries = load_queries(&a.target.queries, info.dim)?;
    let nq = queries.len() / info.dim;
    let gt = a.gt.as_deref().map(|p| load_ground_truth(p, nq, info.next_id)).transpose()?;
    let mut ids_out = a
        .out
        .as_ref()
        .map(|p| VectorWriter::create_for(p, a.k, Contents::Ids).map_err(|e| args::flag_error("--out", e)))
        .transpose()?;
    if ids_out.as_ref().is_some_and(|w| w.elem() == quiver::input::Elem::I32) && info.next_id > i32::MAX as u64 + 1 {
        return usage(format!(
            "--out: the index's ids go up to {}, past what int32 files (.ivecs, .ibin) hold; write .npy (int64)",
            info.next_id - 1
        ));
    }
    let mut dist_out = a
        .out_distances
        .as_ref()
        .map(|p| {
            VectorWriter::create_for(p, a.k, Contents::Vectors).map_err(|e| args::flag_error("--out-distances", e))
        })
        .transpose()?;
    if dist_out.as_ref().is_some_and(|w| w.elem() != quiver::input::Elem::F32) {
        return usage("--out-distances needs a float32 file: .fvecs, .fbin or .npy");
    }
    if let Some(g) = &gt {
        let depth = g.depth.min(a.k).min(10);
        if depth < 10 {
            eprintln!("note: recall@10 is computed at depth {depth} (k = {}, ground-truth depth {})", a.k, g.depth);
        }
    }
    let searcher = Searcher::new(&index, a.threads)?.with_inflight(a.inflight)?;
    if !a.json {
        writeln!(
            out,
            "index {} ({}, {} x {}, {}), {nq} queries, k = {}, {} thread(s)",
            a.target.index.display(),
            info.factory,
            info.ntotal,
            info.dim,
            info.metric,
            a.k,
            searcher.threads()
        )?;
        output::table_header(out)?;
    }
    let mut settings = Vec::new();
    for &n in &nprobes {
        for &e in &efs {
            settings.extend(k_factors.iter().map(|&f| (n, e, f)));
        }
    }
    for (nprobe, ef, k_factor) in settings {
        let setting = eval::Setting {
            k: a.k,
            nprobe,
            ef,
            k_factor,
            warmup: a.warmup,
            grouped: a.batch,
            filter: filter.clone(),
            coarse: a.coarse,
        };
        let row = eval::run(&searcher, &queries, gt.as_ref(), &setting)?;
        if a.json {
            output::json_row(out, &row)?;
        } else {
            output::table_row(out, &row)?;
        }
        if let Some(mut w) = ids_out.take() {
            w.write_i64(&row.ids)?;
            w.finish()?;
        }
        if let Some(mut w) = dist_out.take() {
            w.write_f32(&row.distances)?;
            w.finish()?;
        }
    }
    Ok(())
}
