//! `quiver`: build, search, inspect and verify disk-resident IVF-PQ indexes; generate data and
//! exact ground truth; run a self-contained demo.

mod args;
mod cmd;
mod eval;
mod output;
mod plot;
mod progress;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Disk-resident approximate nearest-neighbour search (IVF-PQ with an HNSW coarse quantizer).
///
/// Files are read by extension. Vectors: .fvecs .bvecs (texmex), .fbin .u8bin .i8bin
/// (big-ann-benchmarks), .npy (float32, uint8, int8). Ids and ground truth: .ivecs, .ibin,
/// .npy (int32; ids to add, delete or filter also int64).
///
/// Exit status: 0 on success, 1 when the work failed (bad data, a damaged index, I/O), 2 when
/// the command line is wrong (nothing was done).
#[derive(Parser)]
#[command(name = "quiver", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from a vector file (train on a sample, then stream everything to disk).
    Build(cmd::build::Args),
    /// Add vectors to an IVF index as a new generation (encoded with its trained quantizer and codebooks).
    Add(cmd::change::AddArgs),
    /// Delete ids from an IVF index as a new generation (searches no longer return them).
    Delete(cmd::change::DeleteArgs),
    /// Rewrite lists with several extents or deleted entries into one extent each; remove unused files.
    Compact(cmd::change::CompactArgs),
    /// Search an index with a query file; report recall, latency, QPS and bytes read.
    Search(cmd::search::Args),
    /// Serve an index over HTTP (POST /v1/search, GET /v1/info, /healthz, /metrics; reload on SIGHUP).
    Serve(cmd::serve::Args),
    /// Describe an index: parameters, files, list sizes.
    Inspect(cmd::inspect::Args),
    /// Find the cheapest nprobe (HNSW: efSearch) that reaches a target recall@10 on queries with ground truth.
    Tune(cmd::tune::Args),
    /// Check every checksum, every byte and every id of an index, reporting every fault found.
    Verify(cmd::verify::Args),
    /// Write synthetic vectors shaped like faiss's SyntheticDataset.
    Gen(cmd::gen::Args),
    /// Compute exact top-k ground truth by brute force (streams the base file).
    Gt(cmd::gt::Args),
    /// Generate data, build, search and print recall and latency (no downloads, < 1 minute).
    Demo(cmd::demo::Args),
    /// Build and search several factory strings (and the HNSW study), optionally faiss beside
    /// them; write results.jsonl, report.md and pictures.
    Bench(cmd::bench::Args),
}

/// The library reports through `log`; the tool prints warnings and errors on stderr, and for
/// `serve` also the server's notices (info), plain.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            match r.level() {
                log::Level::Error => eprintln!("error: {}", r.args()),
                log::Level::Warn => eprintln!("warning: {}", r.args()),
                _ => eprintln!("{}", r.args()),
            }
        }
    }
    fn flush(&self) {}
}

/// Whether the error is a write to a closed pipe (`quiver inspect … | head -1`), which ends
/// the command quietly as it does for `ls | head`.
fn broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        cur = err.source();
    }
    false
}

fn main() -> ExitCode {
    static LOG: StderrLog = StderrLog;
    let _ = log::set_logger(&LOG).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(a, &mut out),
        Command::Add(a) => cmd::change::add(a, &mut out),
        Command::Delete(a) => cmd::change::delete(a, &mut out),
        Command::Compact(a) => cmd::change::compact(a, &mut out),
        Command::Search(a) => cmd::search::run(a, &mut out),
        Command::Serve(a) => {
            log::set_max_level(log::LevelFilter::Info);
            cmd::serve::run(a, &mut out)
        }
        Command::Inspect(a) => cmd::inspect::run(a, &mut out),
        Command::Tune(a) => cmd::tune::run(a, &mut out),
        Command::Verify(a) => cmd::verify::run(a, &mut out),
        Command::Gen(a) => cmd::gen::run(a, &mut out),
        Command::Gt(a) => cmd::gt::run(a, &mut out),
        Command::Demo(a) => cmd::demo::run(a, &mut out),
        Command::Bench(a) => cmd::bench::run(a, &mut out),
    };
    let flushed = out.flush();
    match result.and_then(|()| flushed.map_err(Into::into)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<args::Usage>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
