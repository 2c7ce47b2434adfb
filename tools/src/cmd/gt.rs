use std::io::Write;
use std::path::PathBuf;

use quiver::{ExactKnn, Metric, Progress, VectorFile, VectorWriter};

use super::{pool, CmdResult};
use crate::progress::Reporter;

#[derive(clap::Args)]
pub struct Args {
    /// Base vectors; streamed in blocks, never loaded whole.
    #[arg(long)]
    base: PathBuf,
    /// Query vectors.
    #[arg(long)]
    queries: PathBuf,
    /// Neighbours per query.
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// l2, ip or cosine.
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// Output: .ivecs or .ibin (k ids per query, nearest first).
    #[arg(long)]
    out: PathBuf,
    /// Threads [default: one per core].
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

const BLOCK: usize = 32_768;

pub fn run(a: Args, out: &mut dyn Write) -> CmdResult {
    let base = VectorFile::open(&a.base)?;
    let q = VectorFile::open(&a.queries)?;
    if q.dim() != base.dim() {
        return Err(format!("queries have dimension {}, base has {}", q.dim(), base.dim()).into());
    }
    if a.k == 0 || a.k > base.len() {
        return Err(format!("--k must be in 1..={} (the base size)", base.len()).into());
    }
    let mut knn = ExactKnn::new(&q.read_all_f32()?, q.dim(), a.k, a.metric);
    let progress = Reporter::new(a.quiet);
    progress.begin("exact search", base.len() as u64);
    let mut block = Vec::new();
    pool(a.threads)?.install(|| -> quiver::Result<()> {
        for start in (0..base.len()).step_by(BLOCK) {
            block.clear();
            base.read_f32(start, BLOCK, &mut block)?;
            knn.add(&block, start as u64);
            progress.advance((block.len() / base.dim()) as u64);
        }
        Ok(())
    })?;
    progress.end();
    let ids: Vec<i32> = knn.finish().into_iter().flat_map(|v| v.into_iter().map(|n| n.id as i32)).collect();
    let mut w = VectorWriter::create(&a.out, a.k)?;
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
