use std::io::Write;
use std::path::PathBuf;

use quiver::{Contents, ExactKnn, Metric, Progress, VectorFile, VectorWriter};

use super::{pool, CmdResult};
use crate::args::{self, usage};
use crate::progress::Reporter;

#[derive(clap::Args)]
pub struct Args {
    /// Base vectors; streamed in blocks, never loaded whole.
    #[arg(long)]
    base: PathBuf,
    /// Query vectors.
    #[arg(long)]
    queries: PathBuf,
    /// Neighbours per query (at most the base size).
    #[arg(long, default_value_t = 100, value_parser = args::count)]
    k: usize,
    /// l2, ip or cosine.
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// Output: .ivecs, .ibin (int32) or .npy (int64); k ids per query, nearest first. Written whole or
    /// not at all: an existing file is replaced only when the new one is complete.
    #[arg(long)]
    out: PathBuf,
    /// Threads (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = args::threads)]
    threads: usize,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

/// Base rows read at a time: about 64 MiB of float32, whatever the dimension.
fn block_rows(dim: usize) -> usize {
    ((64 << 20) / (4 * dim)).clamp(1, 32_768)
}

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let base = VectorFile::open(&a.base)?;
    let q = VectorFile::open(&a.queries)?;
    if q.dim() != base.dim() {
        return usage(format!("--queries have dimension {}, --base has {}", q.dim(), base.dim()));
    }
    if a.k > base.len() {
        return usage(format!("--k {} is above the base size ({})", a.k, base.len()));
    }
    if base.len() > i32::MAX as usize {
        return usage(format!("--base holds {} vectors, past the ids int32 ground-truth files hold", base.len()));
    }
    // One heap entry (12 bytes) per query and neighbour: refuse what cannot be held before
    // reading anything.
    let heap = q.len().saturating_mul(a.k).saturating_mul(12);
    if !quiver::io::fits_in_memory(heap as u64) {
        return usage(format!("--k {} for {} queries needs {heap} bytes of memory; lower --k", a.k, q.len()));
    }
    let mut w = VectorWriter::create_for(&a.out, a.k, Contents::Ids).map_err(|e| args::flag_error("--out", e))?;
    let mut knn = ExactKnn::new(&q.read_all_f32()?, q.dim(), a.k, a.metric);
    let progress = Reporter::new(a.quiet);
    progress.begin("exact search", base.len() as u64);
    let mut block = Vec::new();
    let rows = block_rows(base.dim());
    pool(a.threads)?.install(|| -> quiver::Result<()> {
        for start in (0..base.len()).step_by(rows) {
            block.clear();
            base.read_f32(start, rows, &mut block)?;
            knn.add(&block, start as u64);
            progress.advance((block.len() / base.dim()) as u64);
        }
        Ok(())
    })?;
    progress.end();
    let ids: Vec<i32> = knn.finish().into_iter().flat_map(|v| v.into_iter().map(|n| n.id as i32)).collect();
    w.write_i32(&ids)?;
    w.finish()?;
    writeln!(
        out,
        "wrote exact top-{} of {} queries against {} vectors to {}",
        a.k,
        q.len(),
        base.len(),
        a.out.display()
    )?;
    Ok(())
}
