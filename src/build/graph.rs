//! Building an `HNSW{M},Flat` index: every vector is read into RAM, the graph is built over them
//! on all cores (the builder of the coarse quantizer, over the base instead of the centroids),
//! then the vectors file and the graph file are written and the manifest commits them.
//!
//! Unlike an IVF build this cannot stream: each insertion searches the graph built so far,
//! anywhere in the base, so the vectors and the graph are held whole while it is built. The
//! memory budget is checked up front against what that takes, and a build that does not fit
//! is refused before any work (an HNSW over 10^9 vectors needs about 1 TB of RAM for its
//! vectors and graph: that is what the IVF kinds are for).
//!
//! The graph is built over the vectors in float16, scaled into its range: a build spends most
//! of its time waiting for rows from memory, and half the bytes per row took a tenth off it
//! (1M × 128, M 32: 118 s → 105 s on 2 cores). The index keeps the float32 vectors, which
//! searches use.

use std::path::Path;
use std::time::Instant;

use super::paged::PagedWriter;
use super::{budget, failpoint, prepare_rows, BudgetPlan, BuildOptions, BuildReport, Progress, Unfinished};
use crate::distance::F16;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, FileEntry, FileKind, GraphFile, GraphHeader, Manifest, ManifestBody, Params, VectorsFile};
use crate::hnsw::{HalfPoints, Hnsw, HnswParams};
use crate::input::VectorSource;
use crate::io::durable;
use crate::pq::ProductQuantizer;
use crate::rng::Rng;
use crate::spec::{IndexSpec, Payload};
use crate::store;

/// Rows read from the input at a time (and floats written to the vectors file at a time).
const CHUNK_ROWS: usize = 1 << 14;

/// RAM a graph build of `n` vectors of dimension `d` with links `m` holds at its peak, with
/// `payload` bytes (PQ codes and training rows) beside the float32 vectors while they are
/// encoded. The vectors are read as float32, the payload written, then they are converted to
/// float16 (both copies held for a moment) and the float32 copy is dropped before the graph's
/// neighbour slots (2·M on level 0, and M per level above, 1/(M−1) levels on average: rounded
/// up to 2·M + 2), each node's slot offset and level, and one byte per node of visited marks
/// per thread are allocated.
pub fn graph_memory(n: usize, d: usize, m: usize, threads: usize, payload: u64) -> u64 {
    let n = n as u64;
    let (f32s, f16s) = (n * d as u64 * 4, n * d as u64 * 2);
    let slots = n * (2 * m as u64 + 2) * 4;
    let per_node = n * (8 + 1 + threads as u64);
    budget::RUNTIME + (f32s + payload).max(f32s + f16s).max(f16s + slots + per_node)
}

/// The graph file's and the vectors' (or codes' and codebooks') bytes, for the disk check and
/// `--dry-run`.
pub fn graph_disk_bytes(n: usize, d: usize, m: usize, payload: Payload) -> u64 {
    let slots = n as u64 * (2 * m as u64 + 2);
    let graph_pages = GraphHeader::levels_page_for(slots) + (n as u64).div_ceil(format::PAGE);
    let (row_bytes, codebooks) = match payload {
        Payload::Pq { m: pm } => (pm as u64, 256 * d as u64 * 4 + format::PAGE),
        _ => (4 * d as u64, 0),
    };
    let row_pages = (n as u64 * row_bytes).div_ceil(format::PAGE);
    format::file_len(graph_pages) + format::file_len(row_pages) + codebooks + format::PAGE
}

/// The checks of an `HNSW{M},Flat` build of `n` × `d` vectors before any work (input shape,
/// options, node count) and its memory: all of it resident, refused when over the budget.
pub(super) fn memory_plan(opts: &BuildOptions, n: usize, d: usize, m: usize, payload: Payload) -> Result<BudgetPlan> {
    let spec = IndexSpec::Hnsw { m, payload };
    super::check_shape(n, d)?;
    opts.validate()?;
    if n as u64 > format::MAX_GRAPH_NODES {
        return Err(Error::Unsupported(format!(
            "{spec} holds at most {} vectors (u32 node ids); use an IVF index for {n}",
            format::MAX_GRAPH_NODES
        )));
    }
    let codes = match payload {
        Payload::Pq { m: pm } => {
            ProductQuantizer::with_nbits(d, pm, 8)?;
            // The codes, and PQ's training rows.
            (n * pm) as u64 + (budget::PQ_TRAIN_ROWS.min(n) * d * 4) as u64
        }
        _ => 0,
    };
    let need = graph_memory(n, d, m, rayon::current_num_threads(), codes);
    let total = opts.memory_budget.unwrap_or_else(budget::default_budget);
    if need > total {
        return Err(Error::BudgetTooSmall {
            what: format!("{spec} over {n} vectors (its vectors and graph are held whole while the graph is built)"),
            need,
            budget: total,
        });
    }
    Ok(BudgetPlan { total, resident: need, ..Default::default() })
}

pub(super) fn build_graph_index(
    source: &dyn VectorSource,
    dir: &Path,
    opts: &BuildOptions,
    m: usize,
    payload: Payload,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    let t0 = Instant::now();
    let (n, d) = (source.len(), source.dim());
    let spec = IndexSpec::Hnsw { m, payload };
    let budget = memory_plan(opts, n, d, m, payload)?;
    let final_bytes = graph_disk_bytes(n, d, m, payload);
    let (_, free) = crate::io::disk_space(dir).at(dir)?;
    if final_bytes > free {
        return Err(Error::DiskTooSmall {
            path: dir.to_owned(),
            need: final_bytes,
            available: free,
            detail: format!("{} of graph and vectors", crate::error::human_bytes(final_bytes)),
        });
    }
    if store::dir_state(dir)? == store::DirState::Unfinished {
        if opts.unfinished == Unfinished::Refuse {
            return Err(Error::UnfinishedBuild { path: dir.to_owned(), checkpoints: "none".into() });
        }
        log::info!(
            "{}: an HNSW build keeps no checkpoints; the unfinished build is removed and starts over",
            dir.display()
        );
        store::Staging::discard(dir)?;
    }
    let staging = store::Staging::begin(dir)?;
    failpoint::hit("start");
    let index_id = super::index_id(opts, &spec, n, d);

    let metric = opts.metric;
    let what = || format!("{n} vectors of dimension {d}");
    let (mut buf, skip) = line_aligned::<f32>(n * d, what, "lower the input size, or use an IVF index")?;
    progress.begin("read vectors", n as u64);
    for start in (0..n).step_by(CHUNK_ROWS) {
        let count = CHUNK_ROWS.min(n - start);
        source.read_f32(start, count, &mut buf)?;
        progress.advance(count as u64);
    }
    progress.end();
    let data = &mut buf[skip..];
    prepare_rows(metric, data, d);
    let data = &*data;
    let read_s = t0.elapsed().as_secs_f64();

    // The payload first: after it only the graph needs the vectors, and it takes them as
    // float16, so the float32 copy is gone before the graph's slots are allocated.
    let t = Instant::now();
    let (payload_files, pq_m, pq_s) = write_payload(dir, index_id, opts, payload, data, d, progress)?;
    let mut write_s = t.elapsed().as_secs_f64() - pq_s;

    let t = Instant::now();
    progress.begin(&format!("HNSW{m} over the vectors"), n as u64);
    let (half, skip) = to_half(data, d)?;
    drop(buf);
    let params = HnswParams { m, ef_construction: opts.ef_construction, seed: opts.seed };
    let last = std::sync::atomic::AtomicU64::new(0);
    let space = HalfPoints { data: &half[skip..], d, metric: metric.kernel() };
    let graph = Hnsw::build_with(&space, &params, &|done| {
        let prev = last.swap(done as u64, std::sync::atomic::Ordering::Relaxed);
        progress.advance((done as u64).saturating_sub(prev));
    });
    drop(half);
    progress.end();
    let hnsw_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let graph_file = write_graph(dir, index_id, &graph)?;
    durable::sync_dir(dir).at(dir)?;
    failpoint::hit("written");
    write_s += t.elapsed().as_secs_f64();

    let mut factory = [0u8; 64];
    let s = spec.to_string();
    factory[..s.len()].copy_from_slice(s.as_bytes());
    let params = Params {
        dim: (d as u32).into(),
        metric: super::metric_code(metric),
        code_layout: if pq_m > 0 { format::CODE_LAYOUT_PQ8 } else { format::CODE_LAYOUT_FLAT },
        raw_codes: 1,
        refine: 0,
        nlist: 0.into(),
        pq_m: (pq_m as u32).into(),
        pq_nbits: (if pq_m > 0 { 8 } else { 0 }).into(),
        hnsw_m: (m as u32).into(),
        ef_construction: (opts.ef_construction as u32).into(),
        ef_search: (opts.ef_search as u32).into(),
        niter: 0.into(),
        reserved1: 0.into(),
        ntotal: (n as u64).into(),
        seed: opts.seed.into(),
        train_size: 0.into(),
        factory,
    };
    let manifest = Manifest {
        index_id,
        body: ManifestBody::first(params),
        files: [vec![graph_file], payload_files].concat().into_iter().map(|f| f.written_by(1)).collect(),
    };
    let bytes = manifest.encode();
    staging.commit(1, &bytes, || failpoint::hit("committed"))?;
    Ok(BuildReport {
        ntotal: n as u64,
        dim: d,
        sample_s: read_s,
        hnsw_s,
        pq_s,
        train_s: read_s + hnsw_s + pq_s,
        merge_s: write_s,
        total_s: t0.elapsed().as_secs_f64(),
        index_bytes: manifest.files.iter().map(|f| f.size.get()).sum::<u64>() + bytes.len() as u64,
        budget,
        ..Default::default()
    })
}

/// An empty buffer with room for `len` values, and how many padding values to append first
/// so that the next one lies on a cache line: appends up to `len` more never move it. At
/// d = 128 a float32 row then spans 8 lines instead of 9, and no vector load splits across two.
fn line_aligned<T: Default + Clone>(len: usize, what: impl FnOnce() -> String, hint: &str) -> Result<(Vec<T>, usize)> {
    let per_line = 64 / std::mem::size_of::<T>();
    let mut buf: Vec<T> = crate::error::try_vec(len + per_line, what, hint)?;
    let skip = buf.as_ptr().align_offset(64).min(per_line);
    buf.resize(skip, T::default());
    Ok((buf, skip))
}

/// The rows as float16 for the graph build (at `[skip..]` of the buffer returned), scaled by
/// one power of two so that the largest magnitude lies below 2^14: the scaling is exact, no
/// value overflows float16, and every value above 2^-10 of the largest keeps float16's full
/// relative precision (2^-11; the smaller ones hardly move a distance). All distances scale
/// by the same factor, so none of the builder's comparisons changes on account of it.
fn to_half(data: &[f32], d: usize) -> Result<(Vec<F16>, usize)> {
    use rayon::prelude::*;
    let max = data.par_iter().map(|x| x.abs()).reduce(|| 0.0, f32::max);
    let scale = if max > 0.0 { 2f64.powi(13 - (max as f64).log2().floor() as i32) } else { 1.0 };
    let n = data.len() / d.max(1);
    let (mut half, skip) =
        line_aligned::<F16>(data.len(), || format!("{n} vectors of dimension {d} as float16"), "lower the input size")?;
    half.resize(skip + data.len(), F16::default());
    half[skip..].par_chunks_mut(CHUNK_ROWS).zip(data.par_chunks(CHUNK_ROWS)).for_each(|(h, x)| {
        for (h, &x) in h.iter_mut().zip(x) {
            // Finite and below 2^15 after scaling (2^14 unless log2 rounded up), so always Some.
            *h = F16::from_f32((x as f64 * scale) as f32).unwrap_or_default();
        }
    });
    Ok((half, skip))
}

/// Writes what the graph's nodes carry: `HNSW{M}_PQ{m}`'s PQ codebooks (trained on a sample)
/// and codes, or `HNSW{M},Flat`'s vectors. Returns the files, PQ's m (0 for Flat) and the
/// seconds PQ training and encoding took.
fn write_payload(
    dir: &Path,
    index_id: [u8; 16],
    opts: &BuildOptions,
    payload: Payload,
    data: &[f32],
    d: usize,
    progress: &dyn Progress,
) -> Result<(Vec<FileEntry>, usize, f64)> {
    let n = data.len() / d.max(1);
    let Payload::Pq { m: pm } = payload else {
        let rows = Rows { name: store::FLAT_VECTORS, elem: format::REFINE_F32, dim: d, bytes: &[] };
        return Ok((vec![write_rows_f32(dir, index_id, &rows, data)?], 0, 0.0));
    };
    // HNSW{M}_PQ{m}: the graph is built over the vectors themselves (a better graph than
    // faiss's, built over the codes; searches walk it with the codes' distances all the same).
    let t = Instant::now();
    progress.begin(&format!("train PQ ({pm} sub-quantizers)"), pm as u64);
    let rows = n.min(budget::PQ_TRAIN_ROWS);
    let mut idx = Rng::new(opts.seed.wrapping_add(4)).sample_indices(n, rows);
    idx.sort_unstable();
    let x: Vec<f32> = idx.iter().flat_map(|&i| data[i * d..(i + 1) * d].iter().copied()).collect();
    let mut pq = ProductQuantizer::with_nbits(d, pm, 8)?;
    pq.train_with(&x, super::train::PQ_NITER, opts.seed.wrapping_add(3), &|| progress.advance(1))?;
    drop(x);
    progress.end();
    let mut codes = crate::error::try_vec(n * pm, || format!("{n} codes of {pm} bytes"), "lower the input size")?;
    codes.resize(n * pm, 0);
    pq.encode_batch(data, &mut codes);
    let pq_s = t.elapsed().as_secs_f64();
    let codebooks = format::Codebooks {
        m: pm as u32,
        ksub: pq.ksub() as u32,
        dsub: pq.dsub as u32,
        nbits: 8,
        centroids: pq.centroids.clone(),
    };
    let bytes = codebooks.encode(index_id);
    durable::write_atomic(dir, store::CODEBOOKS, &bytes).at(dir)?;
    let crc = format::FileHeader::decode(store::CODEBOOKS, FileKind::Codebooks, &bytes)?.payload_crc.get();
    let cb = FileEntry::new(store::CODEBOOKS, FileKind::Codebooks, bytes.len() as u64, crc);
    let rows = Rows { name: store::CODES, elem: format::REFINE_U8, dim: pm, bytes: &codes };
    Ok((vec![write_rows(dir, index_id, &rows)?, cb], pm, pq_s))
}

/// A vectors file's rows in id order: float32 vectors (`HNSW{M},Flat`) or byte rows, the
/// PQ codes of `HNSW{M}_PQ{m}` (format-spec/11-graph.md).
struct Rows<'a> {
    name: &'static str,
    elem: u8,
    dim: usize,
    bytes: &'a [u8],
}

/// Writes byte rows, packed from data page 0.
fn write_rows(dir: &Path, index_id: [u8; 16], rows: &Rows) -> Result<FileEntry> {
    let mut w = PagedWriter::create(&dir.join(rows.name))?;
    for chunk in rows.bytes.chunks(CHUNK_ROWS * 64) {
        w.append(chunk)?;
    }
    finish_rows(w, index_id, rows, (rows.bytes.len() / rows.dim) as u64, rows.dim)
}

/// Writes float32 rows (little-endian), packed from data page 0.
fn write_rows_f32(dir: &Path, index_id: [u8; 16], rows: &Rows, data: &[f32]) -> Result<FileEntry> {
    let mut w = PagedWriter::create(&dir.join(rows.name))?;
    let mut buf = Vec::with_capacity(CHUNK_ROWS * 4);
    for chunk in data.chunks(CHUNK_ROWS) {
        buf.clear();
        format::put_f32s(&mut buf, chunk);
        w.append(&buf)?;
    }
    finish_rows(w, index_id, rows, (data.len() / rows.dim) as u64, 4 * rows.dim)
}

fn finish_rows(w: PagedWriter, index_id: [u8; 16], rows: &Rows, n: u64, row_bytes: usize) -> Result<FileEntry> {
    let (dim, elem) = (rows.dim as u32, rows.elem);
    let (len, crc) = w.finish(|s| {
        let h = format::VectorsHeader::new(dim, elem, row_bytes as u32, false, s.pages, n, s.table_crc);
        VectorsFile::header_page(index_id, &h, s.payload_crc)
    })?;
    Ok(FileEntry::new(rows.name, FileKind::Vectors, len, crc))
}

/// Writes the graph file: the neighbour slots from data page 0, the levels from the next page.
fn write_graph(dir: &Path, index_id: [u8; 16], g: &Hnsw) -> Result<FileEntry> {
    let name = store::GRAPH;
    let mut w = PagedWriter::create(&dir.join(name))?;
    let mut buf = Vec::with_capacity(CHUNK_ROWS * 4);
    for chunk in g.neighbors.chunks(CHUNK_ROWS) {
        buf.clear();
        format::put_u32s(&mut buf, chunk);
        w.append(&buf)?;
    }
    w.end_page();
    w.append(&g.levels)?;
    let (n, slots) = (g.len() as u64, g.neighbors.len() as u64);
    let (len, crc) = w.finish(|s| {
        let h = GraphHeader::new(n, slots, g.m as u32, g.entry_point, g.max_level as u32, s.table_crc);
        debug_assert_eq!(h.n_pages.get(), s.pages);
        GraphFile::header_page(index_id, &h, s.payload_crc)
    })?;
    Ok(FileEntry::new(name, FileKind::Graph, len, crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any finite data fits float16 after the scaling, which is one exact power of two: the
    /// largest magnitude lands in [2^13, 2^14), and every value is its float32 times the scale,
    /// rounded once.
    #[test]
    fn half_rows_are_the_vectors_scaled_by_one_power_of_two() {
        for top in [1e-30f32, 3e-3, 1.0, 255.0, 65504.0, 1e6, 3e38] {
            let data: Vec<f32> = (0..64).map(|i| top * ((i as f32 - 31.5) / 31.5)).collect();
            let (half, skip) = to_half(&data, 8).unwrap();
            let half = &half[skip..];
            assert_eq!(half.len(), data.len());
            assert_eq!(half.as_ptr().align_offset(64), 0, "rows start on a cache line");
            let scale = 2f64.powf((half[0].to_f32() as f64 / data[0] as f64).log2().round());
            let largest = half.iter().map(|h| h.to_f32().abs()).fold(0.0, f32::max);
            assert!((8192.0..16384.0).contains(&largest), "{top}: largest {largest}");
            for (h, &x) in half.iter().zip(&data) {
                assert_eq!(Some(*h), F16::from_f32((x as f64 * scale) as f32), "{top}: {x}");
            }
        }
        let (zeros, skip) = to_half(&[0.0; 16], 4).unwrap();
        assert!(zeros[skip..].iter().all(|h| h.to_f32() == 0.0));
    }
}
