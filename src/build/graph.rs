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

/// The graph file's and vectors file's bytes, for the disk check and `--dry-run`.
pub fn graph_disk_bytes(n: usize, d: usize, m: usize) -> u64 {
    let slots = n as u64 * (2 * m as u64 + 2);
    let graph_pages = GraphHeader::levels_page_for(slots) + (n as u64).div_ceil(format::PAGE);
    let vector_pages = (n as u64 * d as u64 * 4).div_ceil(format::PAGE);
    format::file_len(graph_pages) + format::file_len(vector_pages) + format::PAGE
}

/// The checks of an `HNSW{M},Flat` build of `n` × `d` vectors before any work (input shape,
/// options, node count) and its memory: all of it resident, refused when over the budget.
pub(super) fn memory_plan(opts: &BuildOptions, n: usize, d: usize, m: usize) -> Result<BudgetPlan> {
    let spec = IndexSpec::Hnsw { m, payload: Payload::Flat };
    super::check_shape(n, d)?;
    opts.validate()?;
    if n as u64 > format::MAX_GRAPH_NODES {
        return Err(Error::Unsupported(format!(
            "{spec} holds at most {} vectors (u32 node ids); use an IVF index for {n}",
            format::MAX_GRAPH_NODES
        )));
    }
    let need = graph_memory(n, d, m, rayon::current_num_threads());
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
    progress: &dyn Progress,
) -> Result<BuildReport> {
    let t0 = Instant::now();
    let (n, d) = (source.len(), source.dim());
    let spec = IndexSpec::Hnsw { m, payload: Payload::Flat };
    let budget = memory_plan(opts, n, d, m)?;
    let final_bytes = graph_disk_bytes(n, d, m);
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
    let index_id = super::index_id(opts, &spec, n, d);

    let metric = opts.metric;
    let what = || format!("{n} vectors of dimension {d}");
    let mut data: Vec<f32> = crate::error::try_vec(n * d, what, "lower the input size, or use an IVF index")?;
    progress.begin("read vectors", n as u64);
    for start in (0..n).step_by(CHUNK_ROWS) {
        let count = CHUNK_ROWS.min(n - start);
        source.read_f32(start, count, &mut data)?;
        progress.advance(count as u64);
    }
    progress.end();
    prepare_rows(metric, &mut data, d);
    let read_s = t0.elapsed().as_secs_f64();

    let t = Instant::now();
    progress.begin(&format!("HNSW{m} over the vectors"), n as u64);
    let params = HnswParams { m, ef_construction: opts.ef_construction, seed: opts.seed };
    let last = std::sync::atomic::AtomicU64::new(0);
    let graph = Hnsw::build_with(&Points { data: &data, d, metric: metric.kernel() }, &params, &|done| {
        let prev = last.swap(done as u64, std::sync::atomic::Ordering::Relaxed);
        progress.advance((done as u64).saturating_sub(prev));
    });
    progress.end();
    let hnsw_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let vectors = write_vectors(dir, index_id, &data, d)?;
    drop(data);
    let graph_file = write_graph(dir, index_id, &graph)?;
    durable::sync_dir(dir).at(dir)?;
    let write_s = t.elapsed().as_secs_f64();

    let mut factory = [0u8; 64];
    let s = spec.to_string();
    factory[..s.len()].copy_from_slice(s.as_bytes());
    let params = Params {
        dim: (d as u32).into(),
        metric: super::metric_code(metric),
        code_layout: format::CODE_LAYOUT_FLAT,
        raw_codes: 1,
        refine: 0,
        nlist: 0.into(),
        pq_m: 0.into(),
        pq_nbits: 0.into(),
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
        files: vec![graph_file, vectors],
    };
    let bytes = manifest.encode();
    staging.commit(1, &bytes, || failpoint::hit("committed"))?;
    Ok(BuildReport {
        ntotal: n as u64,
        dim: d,
        sample_s: read_s,
        hnsw_s,
        train_s: read_s + hnsw_s,
        merge_s: write_s,
        total_s: t0.elapsed().as_secs_f64(),
        index_bytes: manifest.files.iter().map(|f| f.size.get()).sum::<u64>() + bytes.len() as u64,
        budget,
        ..Default::default()
    })
}

/// Writes the vectors file: float32 rows in id order, packed from data page 0.
fn write_vectors(dir: &Path, index_id: [u8; 16], data: &[f32], d: usize) -> Result<FileEntry> {
    let name = store::FLAT_VECTORS;
    let mut w = PagedWriter::create(&dir.join(name))?;
    let mut buf = Vec::with_capacity(CHUNK_ROWS * 4);
    for chunk in data.chunks(CHUNK_ROWS) {
        buf.clear();
        format::put_f32s(&mut buf, chunk);
        w.append(&buf)?;
    }
    let n = (data.len() / d) as u64;
    let (len, crc) = w.finish(|s| {
        let h = format::VectorsHeader::new(d as u32, format::REFINE_F32, 4 * d as u32, s.pages, n, s.table_crc);
        VectorsFile::header_page(index_id, &h, s.payload_crc)
    })?;
    Ok(FileEntry::new(name, FileKind::Vectors, len, crc))
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
