//! `quiver`: build, search, inspect and verify disk-resident IVF-PQ indexes; generate data and
//! exact ground truth; run a self-contained demo.

mod cmd;
mod eval;
mod output;
mod progress;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Disk-resident approximate nearest-neighbour search (IVF-PQ with an HNSW coarse quantizer).
///
/// Vector files are read by extension: .fvecs .bvecs .ivecs (texmex), .fbin .u8bin .i8bin .ibin
/// (big-ann-benchmarks), .npy (float32, uint8, int8, int32).
#[derive(Parser)]
#[command(name = "quiver", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from a vector file (train on a sample, then stream everything to disk).
    Build(cmd::build::Args),
    /// Search an index with a query file; report recall, latency, QPS and bytes read.
    Search(cmd::search::Args),
    /// Describe an index: parameters, files, list sizes.
    Inspect(cmd::inspect::Args),
    /// Check every checksum and every id of an index, reading all of it.
    Verify(cmd::verify::Args),
    /// Write synthetic vectors shaped like faiss's SyntheticDataset.
    Gen(cmd::gen::Args),
    /// Compute exact top-k ground truth by brute force (streams the base file).
    Gt(cmd::gt::Args),
    /// Generate data, build, search and print recall and latency (no downloads, < 1 minute).
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(a, &mut out),
        Command::Search(a) => cmd::search::run(a, &mut out),
        Command::Inspect(a) => cmd::inspect::run(a, &mut out),
        Command::Verify(a) => cmd::verify::run(a, &mut out),
        Command::Gen(a) => cmd::gen::run(a, &mut out),
        Command::Gt(a) => cmd::gt::run(a, &mut out),
        Command::Demo(a) => cmd::demo::run(a, &mut out),
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
