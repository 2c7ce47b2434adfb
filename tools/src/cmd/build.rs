use std::io::Write;
use std::path::PathBuf;

use quiver::{
    build_index, human_bytes, plan_build, BudgetPlan, BuildOptions, BuildPlan, DiskPlan, KMeansKind, Metric,
    Unfinished, VectorFiles, VectorSource,
};
use serde_json::json;

use super::{pool, CmdResult};
use crate::args::{self, usage};
use crate::progress::Reporter;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kmeans {
    Auto,
    Flat,
    TwoLevel,
}

#[derive(clap::Args)]
pub struct Args {
    /// Base vectors (.fvecs .bvecs .fbin .u8bin .i8bin .npy: float32, float16, uint8, int8).
    /// Several files, or a quoted glob such as 'shards/part-*.fbin' (expanded in sorted order),
    /// are read as one dataset in the order given; ids number the rows across all of them.
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<String>,
    /// Index directory to create; must not exist or be empty (or hold an unfinished build:
    /// see --resume).
    #[arg(long)]
    index: PathBuf,
    /// Continue the unfinished build in --index from its last checkpoint (the trained
    /// quantizer and codebooks, then each sorted run), with the same input and options; the
    /// result is byte-identical to an uninterrupted build. A missing or empty --index starts
    /// from the beginning; a finished index or a directory of other files is refused.
    #[arg(long, conflicts_with = "discard_unfinished")]
    resume: bool,
    /// Delete the unfinished build in --index (its staging area and partial files) and start over.
    #[arg(long)]
    discard_unfinished: bool,
    /// Where the sorted runs go (about n x (m + 4) bytes; a subdirectory named after the build
    /// is created and removed) [default: the staging area inside --index]. The free space of
    /// each file system is checked before any work.
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Print what the build would need and exit without building: the memory split under
    /// --memory, temporary and final disk bytes, the RAM of the served index, and an
    /// estimate of each stage's time (work per stage x costs measured on a 2-core reference
    /// machine, divided by --threads where the stage is parallel). Reads only the input's
    /// header and its first and last rows.
    #[arg(long)]
    dry_run: bool,
    /// faiss factory string: IVF{nlist}_HNSW{M},PQ{m} (8-bit codes, m bytes per vector),
    /// …,PQ{m}x4fs (4-bit fast-scan codes of the vectors, m / 2 bytes, m even), …,PQ{m}x4fsr
    /// (the same for residuals from the list centroid), …,Flat (the vectors themselves in the
    /// lists), any PQ kind with ,RFlat (full vectors kept for re-ranking); HNSW{M},Flat (one
    /// graph over the vectors, built in RAM) or HNSW{M}_PQ{m} (the graph walked with PQ codes
    /// held in RAM). nlist 1 ..= 2^24, M 2 ..= 256, m must divide the dimension.
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
    /// Hard bound on the build's peak memory (resident set): 512MiB, 2GiB, 1.5G or bytes
    /// [default: half of this machine's memory]. Every buffer is sized from it; the training
    /// sample shrinks (with a warning) when it cannot hold the one asked for, and a budget that
    /// cannot hold the factory's minimum is refused before any work, naming that minimum.
    #[arg(long, value_parser = args::size)]
    memory: Option<u64>,
    /// Coarse k-means: flat (exact Lloyd over all nlist centroids), two-level (sqrt(nlist)
    /// cells, then k-means inside each: far faster for large nlist), or auto (two-level from
    /// nlist 8192).
    #[arg(long, value_enum, default_value = "auto")]
    kmeans: Kmeans,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = args::threads)]
    threads: usize,
    /// Most vectors per streamed chunk; the memory budget lowers it when two chunks of
    /// 8·dim + m + 8 bytes per vector would not fit.
    #[arg(long, default_value_t = 262_144, value_parser = args::count)]
    chunk_size: usize,
    /// Most sorted runs the merge reads at once (at least 2) [default: as many as the memory
    /// budget and the open-file limit allow]; more runs are first merged in passes, which
    /// gives the same index.
    #[arg(long, value_parser = args::count)]
    merge_fan_in: Option<usize>,
    /// Close a segment file once it reaches this many MiB, 1 ..= 1048576 (1 TiB).
    #[arg(long, default_value_t = 1024, value_parser = args::count)]
    segment_mib: usize,
    /// Print one JSON object on stdout instead of text: index, input, factory, metric, ntotal,
    /// dim, nlist, train_size (as used), train_size_requested, kmeans, memory_budget, budget
    /// (the split), stages_s (per stage), train_s, add_s, merge_s, build_s, peak_rss_bytes (the
    /// kernel's high-water mark), index_bytes, segments, resumed, disk (runs_bytes, temp_bytes,
    /// merge_passes, segments_bytes, quantizer_bytes, codebooks_bytes, directory_bytes,
    /// final_bytes, serving_ram_bytes: the plan's upper bounds). With --dry-run: dry_run,
    /// ntotal, dim, nlist, kmeans, memory_budget, budget, disk, runs_dir, threads,
    /// estimate_s (per stage), estimate_total_s, estimate_basis.
    #[arg(long)]
    json: bool,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

/// Expands globs (in sorted order) and keeps plain paths as given.
fn input_paths(args: &[String]) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut paths = Vec::new();
    for a in args {
        if a.contains(['*', '?', '[']) {
            let mut hits: Vec<PathBuf> = glob::glob(a)
                .map_err(|e| args::Usage(format!("--input {a:?}: not a valid pattern: {e}")))?
                .filter_map(|p| p.ok())
                .collect();
            if hits.is_empty() {
                return usage(format!("--input {a:?} matches no file"));
            }
            hits.sort();
            paths.extend(hits);
        } else {
            paths.push(PathBuf::from(a));
        }
    }
    Ok(paths)
}

/// The kernel's high-water mark of this process's resident memory (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let paths = input_paths(&a.input)?;
    let input = VectorFiles::open(&paths)?;
    if input.elem().is_id() {
        return usage(format!(
            "--input {}: holds {} rows (ids or ground truth); vectors come as .fvecs, .bvecs, .fbin, .u8bin, .i8bin or .npy",
            paths[0].display(),
            input.elem().name()
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
        memory_budget: a.memory,
        kmeans: match a.kmeans {
            Kmeans::Auto => KMeansKind::Auto,
            Kmeans::Flat => KMeansKind::Flat,
            Kmeans::TwoLevel => KMeansKind::TwoLevel,
        },
        merge_fan_in: a.merge_fan_in,
        tmp_dir: a.tmp_dir.clone(),
        unfinished: if a.resume {
            Unfinished::Resume
        } else if a.discard_unfinished {
            Unfinished::Discard
        } else {
            Unfinished::Refuse
        },
    };
    let flag_of = |e: quiver::Error| -> Box<dyn std::error::Error> {
        let flag = match &e {
            quiver::Error::TrainingSetTooSmall { .. } => "--train-size",
            quiver::Error::BudgetTooSmall { .. } => "--memory",
            quiver::Error::OutOfRange { name, .. } => match *name {
                "niter" => "--niter",
                "efConstruction" => "--ef-construction",
                "efSearch" => "--ef",
                "chunk_size" => "--chunk-size",
                "segment_bytes" => "--segment-mib",
                "memory_budget" => "--memory",
                "merge_fan_in" => "--merge-fan-in",
                _ => "--train-size",
            },
            quiver::Error::Input(_) => "--input",
            quiver::Error::DirectoryNotEmpty { .. }
            | quiver::Error::UnfinishedBuild { .. }
            | quiver::Error::ResumeRefused { .. } => "--index",
            quiver::Error::DiskTooSmall { .. } => "--tmp-dir",
            _ => "--factory",
        };
        args::flag_error(flag, e)
    };
    // Checked here, before any work, so a bad flag is a usage error (status 2) naming it.
    let pool = pool(a.threads)?;
    let mem = pool.install(|| opts.memory_plan(&input)).map_err(flag_of)?;
    if a.dry_run {
        let plan = pool.install(|| plan_build(&input, &a.index, &opts)).map_err(flag_of)?;
        return dry_run(&a, &paths, &plan, out);
    }
    let graph = matches!(a.factory.parse(), Ok(quiver::IndexSpec::Hnsw { .. }));
    if !a.quiet && graph {
        eprintln!(
            "memory budget {}: {} held while the graph is built (every vector and the graph, in RAM)",
            human_bytes(mem.total),
            human_bytes(mem.resident)
        );
    } else if !a.quiet {
        eprintln!(
            "memory budget {}: resident {} (process, quantizer, codebooks) + the largest of training {}, streaming {} ({} vectors per chunk), merge {}, writing the index files {}",
            human_bytes(mem.total),
            human_bytes(mem.resident),
            human_bytes(mem.training),
            human_bytes(mem.streaming),
            mem.chunk_rows,
            human_bytes(mem.merging),
            human_bytes(mem.finishing)
        );
    }
    let progress = Reporter::new(a.quiet);
    let r = pool.install(|| build_index(&input, &a.index, &opts, &progress)).map_err(|e| match e {
        quiver::Error::DirectoryNotEmpty { .. }
        | quiver::Error::UnfinishedBuild { .. }
        | quiver::Error::ResumeRefused { .. }
        | quiver::Error::DiskTooSmall { .. } => flag_of(e),
        e => e.into(),
    })?;
    let peak = peak_rss_bytes();
    if a.json {
        let report = json!({
            "index": a.index.display().to_string(),
            "input": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "factory": a.factory,
            "metric": a.metric.to_string(),
            "ntotal": r.ntotal,
            "dim": r.dim,
            "nlist": r.nlist,
            "train_size": r.train_size,
            "train_size_requested": r.train_size_requested,
            "kmeans": if r.two_level_kmeans { "two-level" } else { "flat" },
            "memory_budget": r.budget.total,
            "budget": budget_json(&r.budget),
            "stages_s": {
                "sample": r.sample_s,
                "kmeans": r.kmeans_s,
                "hnsw": r.hnsw_s,
                "pq": r.pq_s,
                "add": r.add_s,
                "merge": r.merge_s,
            },
            "train_s": r.train_s,
            "add_s": r.add_s,
            "merge_s": r.merge_s,
            "build_s": r.total_s,
            "peak_rss_bytes": peak,
            "index_bytes": r.index_bytes,
            "segments": r.segments,
            "resumed": r.resumed,
            "disk": disk_json(&r.disk),
        });
        writeln!(out, "{report}")?;
    } else if graph {
        writeln!(
            out,
            "built {} ({}, {}): {} x {} vectors, {:.1} s (read {:.1} s, HNSW {:.1} s, write {:.1} s), peak memory {} of {}, {:.1} MB",
            a.index.display(),
            a.factory,
            a.metric,
            r.ntotal,
            r.dim,
            r.total_s,
            r.sample_s,
            r.hnsw_s,
            r.merge_s,
            peak.map_or("?".into(), human_bytes),
            human_bytes(r.budget.total),
            r.index_bytes as f64 / 1e6
        )?;
    } else {
        writeln!(
            out,
            "built {} ({}, {}): {} x {} vectors, trained on {}, {:.1} s (sample {:.1} s, k-means {:.1} s, HNSW {:.1} s, PQ {:.1} s, assign+encode {:.1} s, merge {:.1} s), peak memory {} of {}, {:.1} MB in {} segment(s)",
            a.index.display(),
            a.factory,
            a.metric,
            r.ntotal,
            r.dim,
            r.train_size,
            r.total_s,
            r.sample_s,
            r.kmeans_s,
            r.hnsw_s,
            r.pq_s,
            r.add_s,
            r.merge_s,
            peak.map_or("?".into(), human_bytes),
            human_bytes(r.budget.total),
            r.index_bytes as f64 / 1e6,
            r.segments
        )?;
    }
    Ok(())
}

fn budget_json(b: &BudgetPlan) -> serde_json::Value {
    json!({
        "resident": b.resident,
        "training": b.training,
        "streaming": b.streaming,
        "merging": b.merging,
        "finishing": b.finishing,
        "chunk_rows": b.chunk_rows,
        "merge_buffer": b.merge_buffer,
        "merge_fan_in": b.merge_fan_in,
    })
}

fn disk_json(d: &DiskPlan) -> serde_json::Value {
    json!({
        "runs_bytes": d.runs_bytes,
        "temp_bytes": d.temp_bytes,
        "merge_passes": d.merge_passes,
        "segments_bytes": d.segments_bytes,
        "quantizer_bytes": d.quantizer_bytes,
        "codebooks_bytes": d.codebooks_bytes,
        "directory_bytes": d.directory_bytes,
        "final_bytes": d.final_bytes,
        "serving_ram_bytes": d.serving_ram,
    })
}

fn dry_run(a: &Args, paths: &[PathBuf], p: &BuildPlan, out: &mut dyn Write) -> CmdResult {
    let b = &p.budget;
    if a.json {
        let stages: serde_json::Map<String, serde_json::Value> =
            p.stages.iter().map(|s| (s.stage.to_string(), json!(s.seconds))).collect();
        let report = json!({
            "dry_run": true,
            "index": a.index.display().to_string(),
            "input": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "factory": a.factory,
            "metric": a.metric.to_string(),
            "ntotal": p.ntotal,
            "dim": p.dim,
            "nlist": p.nlist,
            "train_size": b.train_rows,
            "kmeans": if p.two_level_kmeans { "two-level" } else { "flat" },
            "memory_budget": b.total,
            "budget": budget_json(b),
            "disk": disk_json(&p.disk),
            "runs_dir": p.runs_dir.display().to_string(),
            "threads": p.threads,
            "estimate_s": stages,
            "estimate_total_s": p.estimated_s(),
            "estimate_basis": p.estimate_basis,
        });
        writeln!(out, "{report}")?;
        return Ok(());
    }
    let h = human_bytes;
    let d = &p.disk;
    writeln!(
        out,
        "dry run: {} x {} vectors into {} ({}), nothing written",
        p.ntotal,
        p.dim,
        a.index.display(),
        a.factory
    )?;
    if p.nlist == 0 {
        writeln!(out, "memory budget {}:", h(b.total))?;
        writeln!(out, "  resident     {:>10}  every vector and the graph, while the graph is built", h(b.resident))?;
        writeln!(out, "disk:")?;
        writeln!(out, "  final        {:>10}  graph.qvg and vectors.qvv (no temporary files)", h(d.final_bytes))?;
        writeln!(
            out,
            "serving RAM    {:>10}  if loaded into RAM; mapped (the default), only what queries touch",
            h(d.serving_ram)
        )?;
        return Ok(());
    }
    writeln!(out, "memory budget {}:", h(b.total))?;
    writeln!(out, "  resident     {:>10}  process, quantizer (nlist {}), codebooks", h(b.resident), p.nlist)?;
    writeln!(
        out,
        "  training     {:>10}  {} sample vectors, {} k-means",
        h(b.training),
        b.train_rows,
        if p.two_level_kmeans { "two-level" } else { "flat" }
    )?;
    writeln!(out, "  streaming    {:>10}  {} vectors per chunk, two in flight", h(b.streaming), b.chunk_rows)?;
    writeln!(
        out,
        "  merging      {:>10}  up to {} runs at once, {} each",
        h(b.merging),
        b.merge_fan_in,
        h(b.merge_buffer as u64)
    )?;
    writeln!(out, "  finishing    {:>10}  encoding the list directory", h(b.finishing))?;
    writeln!(out, "disk (upper bounds):")?;
    writeln!(
        out,
        "  temporary    {:>10}  sorted runs in {} ({} merge pass(es) before the last)",
        h(d.temp_bytes),
        p.runs_dir.display(),
        d.merge_passes
    )?;
    writeln!(
        out,
        "  final        {:>10}  segments{} {}, quantizer {}, codebooks {}, list directory {}",
        h(d.final_bytes),
        if p.refine { " and vectors files" } else { "" },
        h(d.segments_bytes),
        h(d.quantizer_bytes),
        h(d.codebooks_bytes),
        h(d.directory_bytes)
    )?;
    writeln!(
        out,
        "serving RAM    {:>10}  quantizer, codebooks and list directory (lists stay on disk)",
        h(d.serving_ram)
    )?;
    writeln!(out, "time estimate on {} thread(s): {}", p.threads, fmt_s(p.estimated_s()))?;
    for s in &p.stages {
        writeln!(out, "  {:<12} {:>10}", s.stage, fmt_s(s.seconds))?;
    }
    writeln!(out, "  (work per stage x costs measured on a {}; scale by your CPU and disk)", p.estimate_basis)?;
    Ok(())
}

fn fmt_s(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}
