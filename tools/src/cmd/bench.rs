//! `quiver bench`: builds each factory (and each HNSW setting of the study), searches it at a
//! sweep of settings, optionally runs faiss on the same files and settings, and writes
//! `results.jsonl`, `report.md` and the pictures into `--out`. Each build and each search runs
//! as its own `quiver` process (so a build's peak RSS is its own), and each finished setting is
//! appended to `results.jsonl` at once: run again with the same `--out`, it skips what is done.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use quiver::{IndexSpec, Metric};
use serde_json::{json, Value};

use super::CmdResult;
use crate::args::{self, usage, CountList};
use crate::plot::{Chart, Series};

#[derive(clap::Args)]
pub struct Args {
    /// Base vectors (any supported format). With --gen, left out.
    #[arg(long, required_unless_present = "gen", conflicts_with = "gen")]
    base: Option<PathBuf>,
    /// Query vectors.
    #[arg(long, required_unless_present = "gen", conflicts_with = "gen")]
    queries: Option<PathBuf>,
    /// Exact ground truth of the queries (.ivecs or .ibin, at least 10 deep) [default:
    /// computed by brute force into --out/data].
    #[arg(long, conflicts_with = "gen")]
    gt: Option<PathBuf>,
    /// Generate N,D synthetic data instead (base N x D, 1,000 queries, exact ground truth)
    /// into --out/data, as `quiver gen` and `quiver gt` do.
    #[arg(long, value_parser = gen_spec)]
    gen: Option<(u64, usize)>,
    /// A factory string to build and search; repeat for several (e.g. --factory
    /// IVF4096_HNSW32,PQ32 --factory HNSW32,Flat).
    #[arg(long = "factory", required = true)]
    factories: Vec<String>,
    /// Distance: l2, ip or cosine (faiss: l2 or ip).
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// IVF kinds: the nprobe sweep [default: 1,4,16,64,128,256, up to nlist]. An error when
    /// no factory is an IVF kind.
    #[arg(long)]
    nprobe: Option<CountList>,
    /// HNSW kinds: the efSearch sweep [default: 16,32,64,128,256]. IVF kinds: efSearch over
    /// the centroids, one value [default: 16].
    #[arg(long)]
    ef: Option<CountList>,
    /// The HNSW study: build every HNSW{M},Flat factory with each of these M instead of its own.
    #[arg(long)]
    hnsw_m: Option<CountList>,
    /// HNSW{M},Flat kinds: efConstruction values to build with, each a build [default: 40].
    /// IVF kinds build their coarse graph with 40.
    #[arg(long)]
    ef_construction: Option<CountList>,
    /// Search threads (each query timed on its own).
    #[arg(long, default_value_t = 1, value_parser = args::threads)]
    threads: usize,
    /// Build threads (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = args::threads)]
    build_threads: usize,
    /// Search IVF indexes with their lists read from the device every query, instead of
    /// cached in RAM after a warm-up pass (faiss's indexes are in RAM).
    #[arg(long)]
    no_cache: bool,
    /// Also run faiss on the same files and settings (needs python3 with faiss-cpu and
    /// numpy; without them, says so and goes on), through the script benches/faiss_bench.py.
    #[arg(long)]
    faiss: bool,
    /// Output directory: results.jsonl, report.md, the pictures, and indexes/ and data/. A
    /// setting already in its results.jsonl (system, factory, efConstruction, nprobe, ef) is
    /// taken as done: use a fresh directory for other data, metric or threads.
    #[arg(long)]
    out: PathBuf,
}

fn gen_spec(s: &str) -> Result<(u64, usize), String> {
    let (n, d) = s.split_once(',').ok_or_else(|| format!("{s:?}: write N,D (e.g. 100000,128)"))?;
    Ok((args::count64(n)?, args::dim(d)?))
}

/// The faiss script, shipped inside the binary so that an installed `quiver` finds it.
const FAISS_SCRIPT: &str = include_str!("../../../benches/faiss_bench.py");

/// One index to build and sweep.
struct Job {
    factory: String,
    ef_construction: usize,
    graph: bool,
    hnsw_m: Option<usize>,
    /// (nprobe, ef) settings.
    settings: Vec<(Option<usize>, usize)>,
}

impl Job {
    fn slug(&self) -> String {
        let f: String = self.factory.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        format!("{f}-efc{}", self.ef_construction)
    }
}

/// A result row's identity: system, factory, efConstruction, nprobe, ef.
type Key = (String, String, usize, Option<usize>, usize);

fn key_of(v: &Value) -> Option<Key> {
    Some((
        v["system"].as_str()?.to_string(),
        v["factory"].as_str()?.to_string(),
        v["ef_construction"].as_u64()? as usize,
        v["nprobe"].as_u64().map(|n| n as usize),
        v["ef"].as_u64()? as usize,
    ))
}

fn plan_jobs(a: &Args) -> Result<Vec<Job>, Box<dyn std::error::Error>> {
    let mut jobs = Vec::new();
    let mut any_ivf = false;
    for f in &a.factories {
        let spec: IndexSpec = f.parse().map_err(|e| args::flag_error("--factory", e))?;
        match spec {
            IndexSpec::Ivf { nlist, .. } => {
                any_ivf = true;
                let sweep = a.nprobe.as_ref().map_or_else(
                    || [1, 4, 16, 64, 128, 256].into_iter().filter(|&p| p <= nlist).collect(),
                    |l| l.0.clone(),
                );
                if let Some(bad) = sweep.iter().find(|&&p| p > nlist) {
                    return usage(format!("--nprobe {bad} is above the nlist of {f} ({nlist})"));
                }
                let ef = a.ef.as_ref().map_or(16, |l| l.0[0]);
                let settings = sweep.into_iter().map(|p| (Some(p), ef)).collect();
                jobs.push(Job { factory: spec.to_string(), ef_construction: 40, graph: false, hnsw_m: None, settings });
            }
            IndexSpec::Hnsw { m, payload } => {
                let efs = a.ef.as_ref().map_or(vec![16, 32, 64, 128, 256], |l| l.0.clone());
                let ms = a.hnsw_m.as_ref().map_or(vec![m], |l| l.0.clone());
                for &m in &ms {
                    let spec = IndexSpec::Hnsw { m, payload };
                    let factory = spec.to_string();
                    factory.parse::<IndexSpec>().map_err(|e| args::flag_error("--hnsw-m", e))?;
                    for &efc in a.ef_construction.as_ref().map_or(&vec![40], |l| &l.0) {
                        let settings = efs.iter().map(|&e| (None, e)).collect();
                        jobs.push(Job {
                            factory: factory.clone(),
                            ef_construction: efc,
                            graph: true,
                            hnsw_m: Some(m),
                            settings,
                        });
                    }
                }
            }
        }
    }
    if a.nprobe.is_some() && !any_ivf {
        return usage("--nprobe sweeps the lists of IVF indexes, and no --factory is one: sweep --ef for HNSW kinds");
    }
    Ok(jobs)
}

/// Runs `quiver` (this binary) with `args`; its stdout, or an error with its stderr.
fn quiver(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let o = Command::new(exe).args(args).stderr(Stdio::piped()).output()?;
    if !o.status.success() {
        return Err(format!("quiver {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()).into());
    }
    Ok(String::from_utf8(o.stdout)?)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Writes `name` in `dir` under a temporary name, renamed over it when whole: a kill or a full
/// disk leaves the previous report or picture as it was.
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> CmdResult {
    quiver::io::durable::write_atomic(dir, name, bytes)?;
    Ok(())
}

/// The files to measure with: the user's, or generated (and ground truth computed) once.
fn data_files(a: &Args) -> Result<(PathBuf, PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let data = a.out.join("data");
    std::fs::create_dir_all(&data)?;
    let (base, queries) = match (a.gen, &a.base, &a.queries) {
        (Some((n, d)), ..) => {
            let (b, q) = (data.join("base.fbin"), data.join("queries.fbin"));
            let ds = d.to_string();
            if !b.exists() {
                quiver(&["gen", "--n", &n.to_string(), "--dim", &ds, "--out", &s(&b)])?;
            }
            if !q.exists() {
                quiver(&["gen", "--n", "1000", "--dim", &ds, "--first-row", &n.to_string(), "--out", &s(&q)])?;
            }
            (b, q)
        }
        (None, Some(b), Some(q)) => (b.clone(), q.clone()),
        _ => return usage("give --base and --queries, or --gen N,D"),
    };
    let gt = match &a.gt {
        Some(g) => g.clone(),
        None => {
            let g = data.join("gt.ivecs");
            if !g.exists() {
                eprintln!("computing exact ground truth into {}", g.display());
                let metric = a.metric.to_string();
                let args = ["gt", "--base", &s(&base), "--queries", &s(&queries), "--k", "100", "--metric", &metric];
                quiver(&[&args[..], &["--out", &s(&g), "--quiet"]].concat())?;
            }
            g
        }
    };
    Ok((base, queries, gt))
}

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let jobs = plan_jobs(&a)?;
    if a.faiss && a.metric == Metric::Cosine {
        return usage("--faiss compares l2 or ip; normalise the vectors and use ip for cosine");
    }
    std::fs::create_dir_all(a.out.join("indexes"))?;
    let (base, queries, gt) = data_files(&a)?;
    let results = a.out.join("results.jsonl");
    let mut rows = read_rows(&results)?;
    let mut done: BTreeSet<Key> = rows.iter().filter_map(key_of).collect();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&results)?;
    // A kill mid-line left a fragment (dropped by `read_rows`): end it, so that the next row
    // starts a line of its own.
    if std::fs::read(&results).is_ok_and(|b| b.last().is_some_and(|&c| c != b'\n')) {
        writeln!(file)?;
    }
    let mut record = |row: Value, rows: &mut Vec<Value>, done: &mut BTreeSet<Key>| -> CmdResult {
        writeln!(file, "{row}")?;
        file.flush()?;
        if let Some(k) = key_of(&row) {
            done.insert(k);
        }
        rows.push(row);
        Ok(())
    };
    let faiss = a.faiss && faiss_available(&a.out)?;
    for job in &jobs {
        let missing = |system: &str, done: &BTreeSet<Key>| -> Vec<(Option<usize>, usize)> {
            let key =
                |&(n, e): &(Option<usize>, usize)| (system.to_string(), job.factory.clone(), job.ef_construction, n, e);
            job.settings.iter().filter(|s| !done.contains(&key(s))).copied().collect()
        };
        let todo = missing("quiver", &done);
        if todo.is_empty() {
            eprintln!("{} (efConstruction {}): done, skipped", job.factory, job.ef_construction);
        } else {
            let build = build_once(&a, job, &base)?;
            let dir = a.out.join("indexes").join(job.slug());
            for (nprobe, ef) in todo {
                let row = search_once(&a, job, &dir, &queries, &gt, nprobe, ef, &build)?;
                eprintln!(
                    "quiver {} {}: recall@10 {:.3}, {:.3} ms",
                    job.factory,
                    setting_name(nprobe, ef),
                    row["recall_at_10"].as_f64().unwrap_or(0.0),
                    row["ms_mean"].as_f64().unwrap_or(0.0)
                );
                record(row, &mut rows, &mut done)?;
            }
        }
        if faiss {
            let todo = missing("faiss", &done);
            if !todo.is_empty() {
                run_faiss(&a, job, &todo, (&base, &queries, &gt), &mut |row| record(row, &mut rows, &mut done))?;
            }
        }
    }
    let pictures = draw(&a.out, &rows)?;
    write_report(&a, &rows, &pictures)?;
    writeln!(out, "{} settings in {}; report {}", rows.len(), results.display(), a.out.join("report.md").display())?;
    Ok(())
}

fn setting_name(nprobe: Option<usize>, ef: usize) -> String {
    match nprobe {
        Some(p) => format!("nprobe {p}"),
        None => format!("efSearch {ef}"),
    }
}

fn read_rows(path: &Path) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    // A line cut short by a kill is dropped (its setting runs again).
    Ok(text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| key_of(v).is_some()).collect())
}

/// Builds the job's index unless a finished build of it is there; returns its build report
/// (kept beside the index, so a resumed bench still knows the build's time and memory).
fn build_once(a: &Args, job: &Job, base: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let dir = a.out.join("indexes").join(job.slug());
    let report = a.out.join("indexes").join(format!("{}.build.json", job.slug()));
    if let Ok(text) = std::fs::read_to_string(&report) {
        if dir.join("MANIFEST-000001").exists() {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                return Ok(v);
            }
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    eprintln!("building {} (efConstruction {}) ...", job.factory, job.ef_construction);
    let (efc, threads, metric) = (job.ef_construction.to_string(), a.build_threads.to_string(), a.metric.to_string());
    let text = quiver(&[
        "build",
        "--input",
        &s(base),
        "--index",
        &s(&dir),
        "--factory",
        &job.factory,
        "--metric",
        &metric,
        "--ef-construction",
        &efc,
        "--threads",
        &threads,
        "--json",
        "--quiet",
    ])?;
    write_whole(&a.out.join("indexes"), &format!("{}.build.json", job.slug()), text.as_bytes())?;
    Ok(serde_json::from_str(&text)?)
}

#[allow(clippy::too_many_arguments)]
fn search_once(
    a: &Args,
    job: &Job,
    dir: &Path,
    queries: &Path,
    gt: &Path,
    nprobe: Option<usize>,
    ef: usize,
    build: &Value,
) -> Result<Value, Box<dyn std::error::Error>> {
    let (ef_s, threads) = (ef.to_string(), a.threads.to_string());
    let (dir_s, queries_s, gt_s) = (s(dir), s(queries), s(gt));
    let mut args = vec!["search", "--index", &dir_s, "--queries", &queries_s];
    let np_s;
    args.extend(["--gt", &gt_s, "--ef", &ef_s, "--threads", &threads, "--json", "--warmup"]);
    if let Some(p) = nprobe {
        np_s = p.to_string();
        args.extend(["--nprobe", &np_s]);
    }
    let cache;
    if !job.graph && !a.no_cache {
        // Lists and their per-vector terms, all of them: searched as faiss's in-RAM index is.
        let bytes = build["index_bytes"].as_u64().unwrap_or(0) + 4 * build["ntotal"].as_u64().unwrap_or(0) + (1 << 20);
        cache = bytes.to_string();
        args.extend(["--cache-bytes", &cache, "--cache-preload"]);
    }
    let text = quiver(&args)?;
    let r: Value = serde_json::from_str(text.lines().next().unwrap_or(""))?;
    Ok(json!({
        "system": "quiver",
        "factory": job.factory,
        "hnsw_m": job.hnsw_m,
        "ef_construction": job.ef_construction,
        "nprobe": nprobe,
        "ef": ef,
        "k": r["k"],
        "recall_at_1": r["recall_at_1"],
        "one_recall_at_3": r["one_recall_at_3"],
        "recall_at_10": r["recall_at_10"],
        "ms_mean": r["ms_mean"],
        "ms_p50": r["ms_p50"],
        "ms_p99": r["ms_p99"],
        "qps": r["qps"],
        "index_bytes": build["index_bytes"],
        "build_s": build["build_s"],
        "peak_rss_bytes": build["peak_rss_bytes"],
        "threads": a.threads,
    }))
}

/// Whether python3 with faiss and numpy can run; writes the script into `out` when it can.
fn faiss_available(out: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let ok = Command::new("python3")
        .args(["-c", "import faiss, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: --faiss: python3 with faiss-cpu and numpy is not available (pip install faiss-cpu numpy); going on without faiss");
        return Ok(false);
    }
    write_whole(out, "faiss_bench.py", FAISS_SCRIPT.as_bytes())?;
    Ok(true)
}

fn run_faiss(
    a: &Args,
    job: &Job,
    todo: &[(Option<usize>, usize)],
    (base, queries, gt): (&Path, &Path, &Path),
    record: &mut dyn FnMut(Value) -> CmdResult,
) -> CmdResult {
    let list = |v: Vec<usize>| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    let nprobes = list(todo.iter().filter_map(|t| t.0).collect());
    let efs = list(todo.iter().map(|t| t.1).collect::<BTreeSet<_>>().into_iter().collect());
    let metric = if a.metric == Metric::L2 { "l2" } else { "ip" };
    eprintln!("faiss: building {} (efConstruction {}) ...", job.factory, job.ef_construction);
    let mut cmd = Command::new("python3");
    cmd.arg(a.out.join("faiss_bench.py"))
        .args(["--base", &s(base), "--queries", &s(queries), "--gt", &s(gt), "--factory", &job.factory])
        .args(["--metric", metric, "--ef-construction", &job.ef_construction.to_string()])
        .args(["--ef", &efs, "--threads", &a.threads.to_string(), "--build-threads", &a.build_threads.to_string()]);
    if !nprobes.is_empty() {
        cmd.args(["--nprobe", &nprobes]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let stdout = child.stdout.take().ok_or("faiss_bench.py: no stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let row: Value = serde_json::from_str(&line?)?;
        eprintln!(
            "faiss {} {}: recall@10 {:.3}, {:.3} ms",
            job.factory,
            setting_name(row["nprobe"].as_u64().map(|n| n as usize), row["ef"].as_u64().unwrap_or(0) as usize),
            row["recall_at_10"].as_f64().unwrap_or(0.0),
            row["ms_mean"].as_f64().unwrap_or(0.0)
        );
        record(row)?;
    }
    if !child.wait()?.success() {
        return Err(format!("faiss_bench.py failed on {}", job.factory).into());
    }
    Ok(())
}

/// A build's rows of one system, in sweep order.
fn series_of<'a>(rows: &'a [Value], system: &str, factory: &str, efc: u64) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = rows
        .iter()
        .filter(|r| r["system"] == system && r["factory"] == factory && r["ef_construction"].as_u64() == Some(efc))
        .collect();
    v.sort_by_key(|r| (r["nprobe"].as_u64(), r["ef"].as_u64()));
    v
}

/// The (system, factory, efConstruction) builds present in `rows`.
fn builds(rows: &[Value]) -> Vec<(String, String, u64)> {
    let set: BTreeSet<(String, String, u64)> = rows
        .iter()
        .filter_map(|r| {
            Some((r["system"].as_str()?.into(), r["factory"].as_str()?.into(), r["ef_construction"].as_u64()?))
        })
        .collect();
    set.into_iter().collect()
}

fn label(system: &str, factory: &str, efc: u64, study: bool) -> String {
    if study {
        format!("{system} {factory} efC {efc}")
    } else {
        format!("{system} {factory}")
    }
}

/// The article's setting of a build: nprobe 128 (or the largest below) for IVF kinds, efSearch
/// 16 (or the smallest above) for HNSW kinds.
fn headline<'a>(series: &[&'a Value]) -> Option<&'a Value> {
    let ivf: Vec<&&Value> = series.iter().filter(|r| r["nprobe"].is_u64()).collect();
    if !ivf.is_empty() {
        return ivf
            .iter()
            .filter(|r| r["nprobe"].as_u64() <= Some(128))
            .max_by_key(|r| r["nprobe"].as_u64())
            .map(|r| **r);
    }
    series.iter().min_by_key(|r| (r["ef"].as_u64().unwrap_or(0) < 16, r["ef"].as_u64())).copied()
}

/// Draws the pictures; returns their file names.
fn draw(out: &Path, rows: &[Value]) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let all = builds(rows);
    let study = all.iter().map(|b| b.2).collect::<BTreeSet<_>>().len() > 1;
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut curves = Vec::new();
    let mut bubbles = Vec::new();
    let kinds: Vec<(&String, u64)> = all.iter().map(|b| (&b.1, b.2)).collect::<BTreeSet<_>>().into_iter().collect();
    let color = |factory: &String, efc: u64| kinds.iter().position(|k| *k == (factory, efc)).unwrap_or(0);
    let biggest = rows.iter().filter_map(|r| r["index_bytes"].as_f64()).fold(1.0, f64::max);
    for (system, factory, efc) in &all {
        let ser = series_of(rows, system, factory, *efc);
        curves.push(Series {
            name: label(system, factory, *efc, study),
            points: ser.iter().map(|r| (f(r, "recall_at_10"), f(r, "ms_mean"))).collect(),
            dashed: system == "faiss",
            radii: None,
            labels: Vec::new(),
            line: true,
            color: color(factory, *efc),
        });
        if let Some(h) = headline(&ser) {
            let bytes = f(h, "index_bytes");
            bubbles.push(Series {
                name: label(system, factory, *efc, study),
                points: vec![(f(h, "ms_mean"), f(h, "one_recall_at_3"))],
                dashed: system == "faiss",
                // Area in proportion to the size: radius by the square root.
                radii: Some(vec![5.0 + 45.0 * (bytes / biggest).sqrt()]),
                labels: vec![quiver::human_bytes(bytes as u64)],
                line: false,
                color: color(factory, *efc),
            });
        }
    }
    let mut pictures = Vec::new();
    let mut save = |name: &str, what: &str, chart: Chart| -> CmdResult {
        write_whole(out, name, chart.to_svg().as_bytes())?;
        pictures.push((name.to_string(), what.to_string()));
        Ok(())
    };
    save(
        "recall_latency.svg",
        "recall@10 against search time, every setting of every build",
        Chart {
            title: "recall@10 vs search time".into(),
            x_label: "recall@10".into(),
            y_label: "ms per query (log)".into(),
            x_log: false,
            y_log: true,
            series: curves,
        },
    )?;
    save(
        "bubble.svg",
        "the article's chart: search time against 1-recall@3 at nprobe 128 (IVF) or efSearch 16 (HNSW); bubble area = index size",
        Chart {
            title: "search time vs 1-recall@3 (bubble area = index size)".into(),
            x_label: "ms per query (log)".into(),
            y_label: "1-recall@3".into(),
            x_log: true,
            y_log: false,
            series: bubbles,
        },
    )?;
    // The HNSW study: build time and size against M, one line per (system, efConstruction).
    let graphs: Vec<&Value> = rows.iter().filter(|r| r["nprobe"].is_null() && r["hnsw_m"].is_u64()).collect();
    let ms: BTreeSet<u64> = graphs.iter().filter_map(|r| r["hnsw_m"].as_u64()).collect();
    if ms.len() > 1 {
        let mut lines = Vec::new();
        let keys: BTreeSet<(String, u64)> = graphs
            .iter()
            .filter_map(|r| Some((r["system"].as_str()?.to_string(), r["ef_construction"].as_u64()?)))
            .collect();
        let efcs: Vec<u64> = keys.iter().map(|k| k.1).collect::<BTreeSet<_>>().into_iter().collect();
        for (system, efc) in keys {
            let mut pts: Vec<(f64, f64)> = ms
                .iter()
                .filter_map(|&m| {
                    graphs
                        .iter()
                        .find(|r| r["system"] == system.as_str() && r["ef_construction"] == efc && r["hnsw_m"] == m)
                        .map(|r| (m as f64, f(r, "build_s")))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            lines.push(Series {
                name: format!("{system} efConstruction {efc}"),
                points: pts,
                dashed: system == "faiss",
                radii: None,
                labels: Vec::new(),
                line: true,
                // One colour per efConstruction; faiss dashed.
                color: efcs.iter().position(|&e| e == efc).unwrap_or(0),
            });
        }
        save(
            "hnsw_build.svg",
            "the HNSW study: build time against M, per efConstruction",
            Chart {
                title: "HNSW{M},Flat build time vs M".into(),
                x_label: "M (log)".into(),
                y_label: "build s (log)".into(),
                x_log: true,
                y_log: true,
                series: lines,
            },
        )?;
    }
    Ok(pictures)
}

fn write_report(a: &Args, rows: &[Value], pictures: &[(String, String)]) -> CmdResult {
    let mut r = String::new();
    use std::fmt::Write as _;
    let cmd: Vec<String> = std::env::args().collect();
    let _ = writeln!(r, "# quiver bench\n\n`{}`\n", cmd.join(" "));
    let _ = writeln!(
        r,
        "{} search thread(s); IVF indexes searched {}; recall against exact ground truth; ms = mean per query, each timed on its own.\n",
        a.threads,
        if a.no_cache { "with every list read from the device" } else { "with their lists cached in RAM after a warm-up pass, as faiss's are in RAM" }
    );
    for (name, what) in pictures {
        let _ = writeln!(r, "![{what}]({name})\n");
    }
    let mb = |v: &Value| v.as_f64().map_or("-".into(), |b| format!("{:.1}", b / 1e6));
    let num = |v: &Value, p: usize| v.as_f64().map_or("-".into(), |x| format!("{x:.p$}"));
    let _ = writeln!(r, "## At the article's settings (nprobe 128 for IVF kinds, efSearch 16 for HNSW kinds)\n");
    let _ =
        writeln!(r, "| system | factory | efC | setting | ms/query | 1-R@3 | R@10 | size MB | build s | peak RSS MB |");
    let _ = writeln!(r, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for (system, factory, efc) in builds(rows) {
        if let Some(h) = headline(&series_of(rows, &system, &factory, efc)) {
            let setting =
                setting_name(h["nprobe"].as_u64().map(|n| n as usize), h["ef"].as_u64().unwrap_or(0) as usize);
            let _ = writeln!(
                r,
                "| {system} | {factory} | {efc} | {setting} | {} | {} | {} | {} | {} | {} |",
                num(&h["ms_mean"], 4),
                num(&h["one_recall_at_3"], 3),
                num(&h["recall_at_10"], 3),
                mb(&h["index_bytes"]),
                num(&h["build_s"], 1),
                mb(&h["peak_rss_bytes"])
            );
        }
    }
    let _ = writeln!(r, "\n## Every setting\n");
    let _ = writeln!(r, "| system | factory | efC | nprobe | ef | R@1 | 1-R@3 | R@10 | ms mean | p50 | p99 | QPS |");
    let _ = writeln!(r, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (system, factory, efc) in builds(rows) {
        for h in series_of(rows, &system, &factory, efc) {
            let _ = writeln!(
                r,
                "| {system} | {factory} | {efc} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                h["nprobe"].as_u64().map_or("-".into(), |n| n.to_string()),
                h["ef"],
                num(&h["recall_at_1"], 3),
                num(&h["one_recall_at_3"], 3),
                num(&h["recall_at_10"], 3),
                num(&h["ms_mean"], 4),
                num(&h["ms_p50"], 4),
                num(&h["ms_p99"], 4),
                num(&h["qps"], 0)
            );
        }
    }
    write_whole(&a.out, "report.md", r.as_bytes())?;
    Ok(())
}
