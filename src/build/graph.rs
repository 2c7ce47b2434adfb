//! Building an `HNSW{M},Flat` index: every vector is read into RAM, the graph is built over them
//! on all cores (the builder of the coarse quantizer, over the base instead of the centroids),
//! then the vectors file and the graph file are written and the manifest commits them.
//!
//! Unlike an IVF build this cannot stream: each insertion searches the graph built so far,
//! anywhere in the base, so the vectors and the graph are held whole while it is built. The
//! memory budget is checked up front against what that takes, and a build that does not fit
//! is refused before any work (an HNSW over 10^9 vectors needs about 1 TB of RAM for its
//! vectors and graph: that is what the IVF kinds are for).

use std::path::Path;
use std::time::Instant;

use super::paged::PagedWriter;
use super::{budget, failpoint, prepare_rows, BudgetPlan, BuildOptions, BuildReport, Progress, Unfinished};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, FileEntry, FileKind, GraphFile, GraphHeader, Manifest, ManifestBody, Params, VectorsFile};
use crate::hnsw::{Hnsw, HnswParams, Points};
use crate::input::VectorSource;
use crate::io::durable;
use crate::pq::ProductQuantizer;
use crate::rng::Rng;
use crate::spec::{IndexSpec, Payload};
use crate::store;

/// Rows read from the input at a time (and floats written to the vectors file at a time).
const CHUNK_ROWS: usize = 1 << 14;

/// RAM a graph build of `n` vectors of dimension `d` with links `m` holds at its peak: the
/// vectors, the neighbour slots (2·M on level 0, and M per level above, 1/(M−1) levels on
/// average: rounded up to 2·M + 2), each node's slot offset and level, and one byte per node
/// of visited marks per thread.
pub fn graph_memory(n: usize, d: usize, m: usize, threads: usize) -> u64 {
    let n = n as u64;
    let vectors = n * d as u64 * 4;
    let slots = n * (2 * m as u64 + 2) * 4;
    let per_node = 8 + 1 + threads as u64;
    budget::RUNTIME + vectors + slots + n * per_node
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
    let need = graph_memory(n, d, m, rayon::current_num_threads()) + codes;
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
    // The rows start on a cache line (the reads append after `skip` padding floats in a buffer
    // that never reallocates): at d = 128 each row then spans 8 lines instead of 9 and no
    // vector load splits across two, about 5 % of an HNSW32 build's time.
    const LINE_F32: usize = 64 / std::mem::size_of::<f32>();
    let mut buf: Vec<f32> = crate::error::try_vec(n * d + LINE_F32, what, "lower the input size, or use an IVF index")?;
    let skip = buf.as_ptr().align_offset(64).min(LINE_F32);
    buf.resize(skip, 0.0);
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

    let t = Instant::now();
    progress.begin(&format!("HNSW{m} over the vectors"), n as u64);
    let params = HnswParams { m, ef_construction: opts.ef_construction, seed: opts.seed };
    let last = std::sync::atomic::AtomicU64::new(0);
    let graph = Hnsw::build_with(&Points { data, d, metric: metric.kernel() }, &params, &|done| {
        let prev = last.swap(done as u64, std::sync::atomic::Ordering::Relaxed);
        progress.advance((done as u64).saturating_sub(prev));
    });
    progress.end();
    let hnsw_s = t.elapsed().as_secs_f64();

    // HNSW{M}_PQ{m}: the graph is built over the vectors themselves (a better graph than
    // faiss's, built over the codes; searches walk it with the codes' distances all the same).
    let mut pq_s = 0.0;
    let (payload_files, pq_m) = match payload {
        Payload::Pq { m: pm } => {
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
            let mut codes =
                crate::error::try_vec(n * pm, || format!("{n} codes of {pm} bytes"), "lower the input size")?;
            codes.resize(n * pm, 0);
            pq.encode_batch(data, &mut codes);
            drop(buf);
            pq_s = t.elapsed().as_secs_f64();
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
            (vec![write_rows(dir, index_id, &rows)?, cb], pm)
        }
        _ => {
            let rows = Rows { name: store::FLAT_VECTORS, elem: format::REFINE_F32, dim: d, bytes: &[] };
            let f = write_rows_f32(dir, index_id, &rows, data)?;
            drop(buf);
            (vec![f], 0)
        }
    };
    let t = Instant::now();
    let graph_file = write_graph(dir, index_id, &graph)?;
    durable::sync_dir(dir).at(dir)?;
    failpoint::hit("written");
    let write_s = t.elapsed().as_secs_f64();

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
        body: ManifestBody { generation: 1.into(), params, n_files: 0.into(), reserved: [0; 20] },
        files: [vec![graph_file], payload_files].concat(),
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
        let h = format::VectorsHeader::new(dim, elem, row_bytes as u32, s.pages, n, s.table_crc);
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
