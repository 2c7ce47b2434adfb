use std::io::Write;
use std::path::PathBuf;

use quiver::{Synthetic, VectorWriter};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// Number of vectors.
    #[arg(long)]
    n: u64,
    /// Dimension.
    #[arg(long)]
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
    /// 0..255); .i8bin (scaled to -127..127).
    #[arg(long)]
    out: PathBuf,
}

/// Rows per generated block: bounds memory whatever --n is.
const BLOCK: usize = 65_536;

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    if a.n == 0 || a.dim == 0 {
        return Err("--n and --dim must be at least 1".into());
    }
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let (scale, offset) = match ext.as_str() {
        "u8bin" | "bvecs" => (127.5, 127.5),
        "i8bin" => (127.0, 0.0),
        _ => (1.0, 0.0),
    };
    let g = Synthetic::new(a.dim, a.seed);
    let mut w = VectorWriter::create(&a.out, a.dim)?;
    let mut buf = Vec::new();
    let mut done = 0u64;
    while done < a.n {
        let count = (a.n - done).min(BLOCK as u64) as usize;
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
