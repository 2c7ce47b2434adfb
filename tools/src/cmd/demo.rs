use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use quiver::{build_index, BuildOptions, ExactKnn, Index, Metric, SliceSource, Synthetic};

use super::CmdResult;
use crate::args::{self, usage};
use crate::eval::{self, GroundTruth};
use crate::output;
use crate::progress::Reporter;

#[derive(clap::Args)]
pub struct Args {
    /// Base vectors to generate (enough to train the factory: at least max(nlist, 256)).
    #[arg(long, default_value_t = 100_000, value_parser = args::count)]
    n: usize,
    /// Dimension, 1 ..= 65536 (PQ's m must divide it).
    #[arg(long, default_value_t = 64, value_parser = args::dim)]
    dim: usize,
    /// Queries (at least 1).
    #[arg(long, default_value_t = 500, value_parser = args::count)]
    nq: usize,
    /// Factory string, IVF{nlist}_HNSW{M},PQ{m}.
    #[arg(long, default_value = "IVF256_HNSW32,PQ16")]
    factory: String,
    /// Keep the index in this directory (new or empty) instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print JSON Lines (one object per nprobe) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Generates SyntheticDataset-shaped data, computes exact ground truth, builds an index on disk,
/// searches it at nprobe 1, 4, 16, 64 and prints recall against the exact answer and latency.
pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let t0 = Instant::now();
    let opts = BuildOptions { factory: a.factory.clone(), ..Default::default() };
    opts.check_input(a.n, a.dim)
        .map_err(|e| args::Usage(format!("--n {} --dim {} --factory {}: {e}", a.n, a.dim, a.factory)))?;
    if let Some(k) = &a.keep {
        if std::fs::read_dir(k).is_ok_and(|mut d| d.next().is_some()) {
            return usage(format!("--keep {}: the directory is not empty; give a new or empty one", k.display()));
        }
    }
    let bytes = (a.n as u64 + a.nq as u64) * a.dim as u64 * 4;
    if !quiver::io::fits_in_memory(bytes) {
        return usage(format!(
            "--n {} --dim {} needs {bytes} bytes of memory for the generated data; lower --n",
            a.n, a.dim
        ));
    }
    let g = Synthetic::new(a.dim, 1338);
    let (mut base, mut queries) = (Vec::new(), Vec::new());
    g.rows(0, a.n, &mut base);
    g.rows(a.n as u64, a.nq, &mut queries);
    let mut knn = ExactKnn::new(&queries, a.dim, 10, Metric::L2);
    knn.add(&base, 0);
    let gt = GroundTruth {
        depth: 10,
        ids: knn.finish().into_iter().flat_map(|v| v.into_iter().map(|n| n.id as i32)).collect(),
    };
    let tmp = tempfile::tempdir()?;
    let dir = a.keep.clone().unwrap_or_else(|| tmp.path().join("index"));
    let report = build_index(&SliceSource { data: &base, dim: a.dim }, &dir, &opts, &Reporter::new(a.json))?;
    let index = Index::open(&dir)?;
    if !a.json {
        writeln!(out, "quiver demo: {} synthetic {}-d vectors (SyntheticDataset-shaped), {} queries, exact ground truth by brute force", a.n, a.dim, a.nq)?;
        writeln!(
            out,
            "built {} in {:.1} s ({:.1} MB on disk at {}), searching with 1 thread, k = 10:",
            a.factory,
            report.total_s,
            report.index_bytes as f64 / 1e6,
            dir.display()
        )?;
        output::table_header(out)?;
    }
    let searcher = quiver::Searcher::new(&index, 1)?;
    let nlist = index.info().nlist;
    let mut nprobes: Vec<usize> = [1, 4, 16, 64].iter().map(|&p| p.min(nlist)).collect();
    nprobes.dedup();
    for nprobe in nprobes {
        let setting = eval::Setting {
            k: 10,
            nprobe,
            ef: 16,
            k_factor: 1,
            warmup: false,
            grouped: false,
            filter: None,
            coarse: Default::default(),
        };
        let row = eval::run(&searcher, &queries, Some(&gt), &setting)?;
        if a.json {
            output::json_row(out, &row)?;
        } else {
            output::table_row(out, &row)?;
        }
    }
    if !a.json {
        writeln!(
            out,
            "done in {:.1} s. Next: `quiver build --help`, `quiver search --help`.",
            t0.elapsed().as_secs_f64()
        )?;
    }
    Ok(())
}
