use std::io::Write;
use std::path::PathBuf;

use quiver::{build_index, BuildOptions, Metric, VectorFile};

use super::{pool, CmdResult};
use crate::args::{self, usage};
use crate::output::json_str;
use crate::progress::Reporter;

#[derive(clap::Args)]
pub struct Args {
    /// Base vectors (.fvecs .bvecs .fbin .u8bin .i8bin .npy).
    #[arg(long)]
    input: PathBuf,
    /// Index directory to create; must not exist or be empty.
    #[arg(long)]
    index: PathBuf,
    /// faiss factory string: IVF{nlist}_HNSW{M},PQ{m} (nlist 1 ..= 2^24, M 2 ..= 256, m
    /// must divide the dimension).
    #[arg(long, default_value = "IVF4096_HNSW32,PQ32")]
    factory: String,
    /// Distance: l2 (squared Euclidean), ip (inner product) or cosine (normalised inner product).
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// Vectors sampled for training [default: max(100000, 40 x nlist), at most the input size].
    #[arg(long, value_parser = args::count)]
    train_size: Option<usize>,
    /// k-means iterations for the coarse centroids (faiss's niter), 1 ..= 10000.
    #[arg(long, default_value_t = 10, value_parser = args::count)]
    niter: usize,
    /// HNSW efConstruction of the graph over the centroids, 1 ..= 65536.
    #[arg(long, default_value_t = 40, value_parser = args::count)]
    ef_construction: usize,
    /// HNSW efSearch used to assign vectors to lists (and stored as the default for search),
    /// 1 ..= 65536.
    #[arg(long = "ef", default_value_t = 16, value_parser = args::count)]
    ef_search: usize,
    /// Seed of every random choice: the same input and seed give a byte-identical index.
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = args::threads)]
    threads: usize,
    /// Vectors per streamed chunk (bounds the builder's working memory: about
    /// chunk x (4·dim + m + 12) bytes).
    #[arg(long, default_value_t = 262_144, value_parser = args::count)]
    chunk_size: usize,
    /// Close a segment file once it reaches this many MiB, 1 ..= 1048576 (1 TiB).
    #[arg(long, default_value_t = 1024, value_parser = args::count)]
    segment_mib: usize,
    /// Print a JSON summary on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let input = VectorFile::open(&a.input)?;
    if input.elem() == quiver::input::Elem::I32 {
        return usage(format!(
            "--input {}: holds int32 rows (ids or ground truth); vectors come as .fvecs, .bvecs, .fbin, .u8bin, .i8bin or .npy",
            a.input.display()
        ));
    }
    let opts = BuildOptions {
        factory: a.factory.clone(),
        metric: a.metric,
        train_size: a.train_size,
        niter: a.niter,
        ef_construction: a.ef_construction,
        ef_search: a.ef_search,
        seed: a.seed,
        chunk_size: a.chunk_size,
        segment_bytes: (a.segment_mib as u64) << 20,
    };
    // Checked here, before any work, so a bad flag is a usage error (status 2) naming it.
    opts.check_input(input.len(), input.dim()).map_err(|e| {
        let flag = match &e {
            quiver::Error::TrainingSetTooSmall { .. } => "--train-size",
            quiver::Error::OutOfRange { name, .. } => match *name {
                "niter" => "--niter",
                "efConstruction" => "--ef-construction",
                "efSearch" => "--ef",
                "chunk_size" => "--chunk-size",
                "segment_bytes" => "--segment-mib",
                _ => "--train-size",
            },
            quiver::Error::Input(_) => "--input",
            _ => "--factory",
        };
        args::Usage(format!("{flag}: {e}"))
    })?;
    if std::fs::read_dir(&a.index).is_ok_and(|mut d| d.next().is_some()) {
        return usage(format!(
            "--index {} exists and is not empty; quiver builds only into a new or empty directory and never overwrites",
            a.index.display()
        ));
    }
    let progress = Reporter::new(a.quiet);
    let r = pool(a.threads)?.install(|| build_index(&input, &a.index, &opts, &progress))?;
    if a.json {
        writeln!(
            out,
            "{{\"index\":{},\"factory\":{},\"metric\":\"{}\",\"ntotal\":{},\"dim\":{},\"nlist\":{},\"train_size\":{},\"train_s\":{:.3},\"add_s\":{:.3},\"merge_s\":{:.3},\"build_s\":{:.3},\"index_bytes\":{},\"segments\":{}}}",
            json_str(&a.index.display().to_string()),
            json_str(&a.factory),
            a.metric,
            r.ntotal,
            r.dim,
            r.nlist,
            r.train_size,
            r.train_s,
            r.add_s,
            r.merge_s,
            r.total_s,
            r.index_bytes,
            r.segments
        )?;
    } else {
        writeln!(
            out,
            "built {} ({}, {}): {} x {} vectors, trained on {}, {:.1} s (train {:.1} s, assign+encode {:.1} s, merge {:.1} s), {:.1} MB in {} segment(s)",
            a.index.display(),
            a.factory,
            a.metric,
            r.ntotal,
            r.dim,
            r.train_size,
            r.total_s,
            r.train_s,
            r.add_s,
            r.merge_s,
            r.index_bytes as f64 / 1e6,
            r.segments
        )?;
    }
    Ok(())
}
