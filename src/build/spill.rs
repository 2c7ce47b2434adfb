//! Streaming pass: read a chunk (a reader thread prefetches the next one), assign each vector
//! through the HNSW, encode its residual, sort the chunk by (list, id) and write it as one sorted
//! run (`run.rs`), a durable checkpoint. Only the row ranges no run covers yet are streamed, so a
//! resumed build picks up where the last finished run ended.

use std::path::{Path, PathBuf};

use super::run::RunWriter;
use super::{failpoint, prepare_rows, BuildOptions, Progress};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::input::VectorSource;
use crate::ivf::CoarseQuantizer;

/// A run on disk and the input rows it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RunFile {
    pub first: u64,
    pub end: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

/// Where the runs go and what they belong to.
pub(super) struct SpillTarget<'a> {
    pub dir: &'a Path,
    pub index_id: [u8; 16],
    pub nlist: usize,
    /// Encode residuals from the assigned centroid (else the rows themselves).
    pub by_residual: bool,
    /// Keep each full vector after its code in the run (`,RFlat`).
    pub refine: Option<super::RefineElem>,
}

/// Streams the rows of every range in `gaps` (ascending, disjoint) in chunks of at most
/// `chunk` rows and writes one run per chunk; returns the new runs in row order.
#[allow(clippy::too_many_arguments)]
pub(super) fn spill_runs(
    source: &dyn VectorSource,
    coarse: &CoarseQuantizer,
    codec: &Codec,
    opts: &BuildOptions,
    chunk: usize,
    gaps: &[(u64, u64)],
    target: &SpillTarget,
    progress: &dyn Progress,
) -> Result<Vec<RunFile>> {
    let d = source.dim();
    let chunks: Vec<(usize, usize)> = gaps
        .iter()
        .flat_map(|&(a, b)| (a..b).step_by(chunk).map(move |s| (s as usize, (b - s).min(chunk as u64) as usize)))
        .collect();
    let total: usize = chunks.iter().map(|c| c.1).sum();
    progress.begin("assign + encode", total as u64);
    let mut runs = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        // A rendezvous channel: the reader fills the next chunk while this thread works on the
        // current one, and hands it over only when taken, so at most two chunks exist at once.
        let (tx, rx) = crossbeam::channel::bounded::<Result<(usize, Vec<f32>)>>(0);
        let chunks = &chunks;
        s.spawn(move || {
            for &(start, rows) in chunks {
                let r = crate::error::try_vec(
                    rows * d,
                    || format!("a chunk of {rows} × {d} float32"),
                    "lower --chunk-size",
                )
                .and_then(|mut buf| source.read_f32(start, rows, &mut buf).map(|_| (start, buf)).map_err(Error::from));
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    break;
                }
            }
        });
        for msg in rx {
            let (start, mut x) = msg?;
            prepare_rows(opts.metric, &mut x, d);
            let rows = x.len() / d;
            let run = write_run(target, start as u64, &mut x, coarse, codec, opts.ef_search)?;
            runs.push(run);
            failpoint::hit("run");
            progress.advance(rows as u64);
        }
        Ok(())
    })?;
    progress.end();
    Ok(runs)
}

fn write_run(
    target: &SpillTarget,
    first_row: u64,
    x: &mut [f32],
    coarse: &CoarseQuantizer,
    codec: &Codec,
    ef: usize,
) -> Result<RunFile> {
    let lists = coarse.assign_batch(x, ef);
    let cs = codec.code_size();
    // The full vectors as the index keeps them, taken before `x` becomes residuals: uint8
    // input arrives as exact small integers in `x`, so it is written back as its bytes.
    let vb = target.refine.map_or(0, |r| r.vector_bytes);
    let mut vectors = Vec::with_capacity(lists.len() * vb);
    match target.refine {
        Some(r) if r.code == crate::format::REFINE_U8 => vectors.extend(x.iter().map(|&v| v as u8)),
        Some(_) => x.iter().for_each(|v| vectors.extend_from_slice(&v.to_le_bytes())),
        None => {}
    }
    if target.by_residual {
        coarse.to_residuals(x, &lists);
    }
    let mut codes = vec![0u8; lists.len() * cs];
    codec.encode_batch(x, &mut codes);
    let mut order: Vec<u32> = (0..lists.len() as u32).collect();
    order.sort_by_key(|&i| (lists[i as usize], i));
    let end = first_row + lists.len() as u64;
    let mut w = RunWriter::create(target.dir, first_row, end, target.nlist, cs + vb)?;
    for group in order.chunk_by(|&a, &b| lists[a as usize] == lists[b as usize]) {
        w.group(lists[group[0] as usize], group.len() as u32)?;
        for &i in group {
            let i = i as usize;
            w.record(first_row + i as u64, &codes[i * cs..(i + 1) * cs], &vectors[i * vb..(i + 1) * vb])?;
        }
    }
    let (path, bytes) = w.finish(target.index_id)?;
    Ok(RunFile { first: first_row, end, path, bytes })
}
