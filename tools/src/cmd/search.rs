use std::io::Write;
use std::path::PathBuf;

use quiver::{Index, IoMode, OpenOptions, VectorFile, VectorWriter};

use super::{load_ground_truth, parse_list, pool, CmdResult};
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

#[derive(clap::Args)]
pub struct Args {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Query vectors (any supported format).
    #[arg(long)]
    queries: PathBuf,
    /// Exact ground truth (.ivecs or .ibin, nearest first) for recall figures.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Lists probed per query; a comma-separated list runs each setting in turn.
    #[arg(long, default_value = "1,4,16,64")]
    nprobe: String,
    /// HNSW efSearch over the centroids (raised to nprobe when smaller) [default: the index's].
    #[arg(long)]
    ef: Option<usize>,
    /// Search threads; queries run in parallel, each timed on its own.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// I/O engine.
    #[arg(long, value_enum, default_value = "auto")]
    io: Io,
    /// JSON Lines on stdout: one object per nprobe with nprobe, ef, k, recall_at_1,
    /// one_recall_at_3, recall_at_10, ms_mean, ms_p50, ms_p99, qps, bytes_read_per_query, io.
    #[arg(long)]
    json: bool,
    /// Write each query's top-k ids (.ivecs or .ibin; -1 where fewer than k were found).
    /// Needs a single --nprobe.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write each query's top-k distances (.fvecs or .fbin). Needs a single --nprobe.
    #[arg(long)]
    out_distances: Option<PathBuf>,
}

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let nprobes = parse_list(&a.nprobe)?;
    if (a.out.is_some() || a.out_distances.is_some()) && nprobes.len() != 1 {
        return Err("--out and --out-distances need a single --nprobe value".into());
    }
    let io = match a.io {
        Io::Auto => IoMode::Auto,
        Io::Uring => IoMode::Uring,
        Io::Pread => IoMode::Pread,
    };
    let index = Index::open_with(&a.index, OpenOptions { io })?;
    let info = index.info().clone();
    let qfile = VectorFile::open(&a.queries)?;
    if qfile.dim() != info.dim {
        return Err(format!(
            "{}: queries have dimension {}, the index holds {}-dimensional vectors",
            a.queries.display(),
            qfile.dim(),
            info.dim
        )
        .into());
    }
    let queries = qfile.read_all_f32()?;
    let nq = qfile.len();
    let gt = a.gt.as_deref().map(load_ground_truth).transpose()?;
    if let Some(g) = &gt {
        if g.ids.len() / g.depth.max(1) < nq {
            return Err(format!("ground truth has {} rows for {nq} queries", g.ids.len() / g.depth.max(1)).into());
        }
        let depth = g.depth.min(a.k).min(10);
        if depth < 10 {
            eprintln!("note: recall@10 is computed at depth {depth} (k = {}, ground-truth depth {})", a.k, g.depth);
        }
    }
    let ef = a.ef.unwrap_or(info.ef_search);
    let pool = pool(a.threads)?;
    if !a.json {
        writeln!(
            out,
            "index {} ({}, {} x {}, {}), {nq} queries, k = {}, {} thread(s)",
            a.index.display(),
            info.factory,
            info.ntotal,
            info.dim,
            info.metric,
            a.k,
            a.threads
        )?;
        output::table_header(out)?;
    }
    for &nprobe in &nprobes {
        let row = eval::run(&index, &queries, gt.as_ref(), a.k, nprobe, ef, &pool)?;
        if a.json {
            output::json_row(out, &row)?;
        } else {
            output::table_row(out, &row)?;
        }
        if let Some(p) = &a.out {
            let mut w = VectorWriter::create(p, a.k)?;
            w.write_i32(&row.ids.iter().map(|&v| v as i32).collect::<Vec<_>>())?;
            w.finish()?;
        }
        if let Some(p) = &a.out_distances {
            let mut w = VectorWriter::create(p, a.k)?;
            w.write_f32(&row.distances)?;
            w.finish()?;
        }
    }
    Ok(())
}
