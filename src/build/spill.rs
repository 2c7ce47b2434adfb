//! Streaming pass: read a chunk (a reader thread prefetches the next one), assign each vector
//! through the HNSW, encode its residual, sort the chunk by (list, id) and write it as one sorted
//! run file. Records are `list u32 LE | id u64 LE | code (code_size bytes)`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{prepare_rows, BuildOptions, Progress};
use crate::error::{Error, IoContext, Result};
use crate::input::VectorSource;
use crate::ivf::CoarseQuantizer;
use crate::pq::ProductQuantizer;

pub(super) fn spill_runs(
    source: &dyn VectorSource,
    coarse: &CoarseQuantizer,
    pq: &ProductQuantizer,
    opts: &BuildOptions,
    chunk: usize,
    tmp: &Path,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>> {
    let (n, d) = (source.len(), source.dim());
    progress.begin("assign + encode", n as u64);
    let mut runs = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        // A rendezvous channel: the reader fills the next chunk while this thread works on the
        // current one, and hands it over only when taken, so at most two chunks exist at once.
        let (tx, rx) = crossbeam::channel::bounded::<Result<(usize, Vec<f32>)>>(0);
        s.spawn(move || {
            for start in (0..n).step_by(chunk) {
                let rows = chunk.min(n - start);
                let r = crate::error::try_vec(
                    rows * d,
                    || format!("a chunk of {rows} × {d} float32"),
                    "lower --chunk-size",
                )
                .and_then(|mut buf| source.read_f32(start, chunk, &mut buf).map(|_| (start, buf)).map_err(Error::from));
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    break;
                }
            }
        });
        for msg in rx {
            let (start, mut x) = msg?;
            prepare_rows(opts.metric, &mut x, d);
            let path = tmp.join(format!("run-{:06}.tmp", runs.len()));
            write_run(&path, start as u64, &mut x, coarse, pq, opts.ef_search)?;
            runs.push(path);
            progress.advance((x.len() / d) as u64);
        }
        Ok(())
    })?;
    progress.end();
    Ok(runs)
}

fn write_run(
    path: &Path,
    first_id: u64,
    x: &mut [f32],
    coarse: &CoarseQuantizer,
    pq: &ProductQuantizer,
    ef: usize,
) -> Result<()> {
    let lists = coarse.assign_batch(x, ef);
    let cs = pq.code_size();
    coarse.to_residuals(x, &lists);
    let mut codes = vec![0u8; lists.len() * cs];
    pq.encode_batch(x, &mut codes);
    let mut order: Vec<u32> = (0..lists.len() as u32).collect();
    order.sort_by_key(|&i| (lists[i as usize], i));
    let f = File::create(path).at(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for i in order {
        let i = i as usize;
        w.write_all(&lists[i].to_le_bytes()).at(path)?;
        w.write_all(&(first_id + i as u64).to_le_bytes()).at(path)?;
        w.write_all(&codes[i * cs..(i + 1) * cs]).at(path)?;
    }
    w.flush().at(path)
}
