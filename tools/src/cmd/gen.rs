use std::io::Write;
use std::path::PathBuf;

use quiver::{Contents, Synthetic, VectorWriter};

use super::CmdResult;
use crate::args::{self, usage};

#[derive(clap::Args)]
pub struct Args {
    /// Number of vectors (at least 1).
    #[arg(long, value_parser = args::count64)]
    n: u64,
    /// Dimension, 1 ..= 65536.
    #[arg(long, value_parser = args::dim)]
    dim: usize,
    /// Seed: the same seed gives the same vectors.
    #[arg(long, default_value_t = 1338)]
    seed: u64,
    /// Index of the first row. Rows depend only on (seed, row index): generate a base with
    /// `--n 1000000` and disjoint queries from the same distribution with
    /// `--n 1000 --first-row 1000000`.
    #[arg(long, default_value_t = 0)]
    first_row: u64,
    /// Output file: .fbin, .fvecs or .npy (float32 in [-1, 1]); .u8bin or .bvecs (scaled to
    /// 0..255); .i8bin (scaled to -127..127). Written whole or not at all.
    #[arg(long)]
    out: PathBuf,
}

/// Rows per generated block: about 32 MiB of float32, so memory is bounded whatever --n and
/// --dim are.
fn block_rows(dim: usize) -> usize {
    ((32 << 20) / (4 * dim)).clamp(1, 65_536)
}

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    if a.first_row.checked_add(a.n).is_none() {
        return usage("--first-row + --n overflows: row numbers must stay below 2^64");
    }
    let mut w = VectorWriter::create_for(&a.out, a.dim, Contents::Vectors).map_err(|e| args::flag_error("--out", e))?;
    if a.n > w.max_rows() {
        return usage(format!(
            "--n {} is more rows than {} can record ({}); use .fvecs or .npy",
            a.n,
            a.out.display(),
            w.max_rows()
        ));
    }
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let (scale, offset) = match ext.as_str() {
        "u8bin" | "bvecs" => (127.5, 127.5),
        "i8bin" => (127.0, 0.0),
        _ => (1.0, 0.0),
    };
    let g = Synthetic::new(a.dim, a.seed);
    let mut buf = Vec::new();
    let mut done = 0u64;
    while done < a.n {
        let count = (a.n - done).min(block_rows(a.dim) as u64) as usize;
        buf.clear();
        g.rows(a.first_row + done, count, &mut buf);
        if scale != 1.0 {
            buf.iter_mut().for_each(|v| *v = *v * scale + offset);
        }
        w.write_f32(&buf)?;
        done += count as u64;
    }
    w.finish()?;
    writeln!(out, "wrote {} x {} vectors to {}", a.n, a.dim, a.out.display())?;
    Ok(())
}
