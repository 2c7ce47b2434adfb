//! `HNSW{M},Flat` and `HNSW{M}_PQ{m}`: one HNSW graph over every vector, walked with exact
//! distances to the vectors or with PQ distances (a table per query, faiss's ADC) to their
//! codes, held in RAM. The graph file and the vectors file are mapped (the default: an index
//! larger than RAM opens at once and the kernel pages in what queries touch) or read into RAM
//! and checked page by page ([`OpenOptions::load_into_ram`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::open::Generation;
use super::pipeline::QueryResult;
use super::{IndexInfo, OpenOptions, RefineVectors, SearchParams, SearchStats};
use crate::distance::Metric;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, PageTable, PAGE};
use crate::hnsw::{Hnsw, Points, QueryDist, VisitedSet};
use crate::io::Mapped;
use crate::pq::LutBuilder;
use crate::store;

pub(crate) struct GraphIndex {
    graph: Hnsw,
    source: Source,
    d: usize,
    /// The kernel metric (inner product for cosine, whose vectors are stored normalised).
    metric: Metric,
}

/// Where a walk's distances come from.
enum Source {
    /// The vectors (`HNSW{M},Flat`).
    Flat(Rows),
    /// PQ codes, m bytes per vector in id order, and the tables' builder (`HNSW{M}_PQ{m}`).
    Pq { codes: Vec<u8>, m: usize, lut: LutBuilder },
}

/// A query's PQ distance table (m × ksub) against the codes: vector i at Σ_j table[j][code_ij].
struct ToCodes<'a> {
    table: &'a [f32],
    codes: &'a [u8],
    m: usize,
    ksub: usize,
}

impl QueryDist for ToCodes<'_> {
    #[inline]
    fn one(&self, i: u32) -> f32 {
        let code = &self.codes[i as usize * self.m..(i as usize + 1) * self.m];
        code.iter().enumerate().map(|(j, &c)| self.table[j * self.ksub + c as usize]).sum()
    }
    #[inline]
    fn four(&self, i: [u32; 4]) -> [f32; 4] {
        i.map(|i| self.one(i))
    }
    #[inline]
    fn prefetch(&self, i: u32) {
        crate::distance::prefetch_bytes(&self.codes[i as usize * self.m..(i as usize + 1) * self.m]);
    }
}

/// The vectors, in id order.
enum Rows {
    Owned(Vec<f32>),
    Mapped(Mapped),
}

impl Rows {
    fn as_slice(&self) -> &[f32] {
        match self {
            Rows::Owned(v) => v,
            Rows::Mapped(m) => m.as_ref(),
        }
    }
}

impl GraphIndex {
    pub fn open(g: &Generation, info: &IndexInfo, opts: &OpenOptions) -> Result<GraphIndex> {
        let (gname, gfile) = g.graph_file(info)?;
        let (n, d) = (info.ntotal as usize, info.dim);
        let gpath = g.dir.join(&gname);
        let graph_f = File::open(&gpath).at(&gpath)?;
        let (slots, levels) = gfile.slots_and_levels();
        let levels_bytes = read_checked(&graph_f, &gname, "graph", &gfile.pages, levels)?;
        let h = &gfile.header;
        let corrupt =
            |file: &str, e: crate::hnsw::GraphError| Error::Corrupt { file: file.into(), reason: e.to_string() };
        let mapped = !opts.load_into_ram && cfg!(target_endian = "little");
        let at = |r: std::ops::Range<u64>| (PAGE + r.start) as usize..(PAGE + r.end) as usize;
        let graph = if mapped {
            let slots = Mapped::new(&graph_f, at(slots)).at(&gpath)?;
            slots.advise_random();
            Hnsw::from_shared_parts(h.m.get() as usize, levels_bytes, Arc::new(slots), h.entry_point.get())
        } else {
            let slots = format::u32s_from_le(&read_checked(&graph_f, &gname, "graph", &gfile.pages, slots)?);
            Hnsw::from_parts(h.m.get() as usize, levels_bytes, slots, h.entry_point.get())
        }
        .map_err(|e| corrupt(&gname, e))?;
        let (rows_name, row_dim, kind) = if info.pq_m > 0 {
            (store::CODES, info.pq_m, RefineVectors::Uint8)
        } else {
            (store::FLAT_VECTORS, d, RefineVectors::Float32)
        };
        let (vname, vfile) = g.named_vectors_file(rows_name.into(), row_dim, kind)?;
        if vfile.header.n_vectors.get() != info.ntotal {
            return Err(Error::Corrupt {
                file: vname,
                reason: format!("holds {} rows, the index has {n} vectors", vfile.header.n_vectors.get()),
            });
        }
        let vpath = g.dir.join(&vname);
        let rows_f = File::open(&vpath).at(&vpath)?;
        let row_bytes = 0..(n * kind.vector_bytes(row_dim)) as u64;
        let source = if info.pq_m > 0 {
            // Codes are held in RAM (faiss's IndexHNSWPQ keeps them there too): 1/4·d/m of the
            // vectors' size.
            let codes = read_checked(&rows_f, &vname, "codes", &vfile.pages, row_bytes)?;
            let lut = LutBuilder::new(&g.codebooks(info)?);
            Source::Pq { codes, m: info.pq_m, lut }
        } else if mapped {
            let rows = Mapped::new(&rows_f, at(row_bytes)).at(&vpath)?;
            rows.advise_random();
            Source::Flat(Rows::Mapped(rows))
        } else {
            let rows = read_checked(&rows_f, &vname, "vectors", &vfile.pages, row_bytes)?;
            Source::Flat(Rows::Owned(format::f32s_from_le(&rows)))
        };
        if graph.len() != n {
            return Err(Error::Corrupt {
                file: gname,
                reason: format!("holds {} nodes, the index has {n} vectors", graph.len()),
            });
        }
        Ok(GraphIndex { graph, source, d, metric: info.metric.kernel() })
    }

    /// One query: the graph's `k` nearest at efSearch `ef_search` (faiss's `HNSW.search`), by
    /// exact distance or by PQ distance (the codes' ADC, as faiss's `IndexHNSWPQ` returns).
    pub fn search_one(
        &self,
        info: &IndexInfo,
        q: &[f32],
        p: &SearchParams,
        w: &mut GraphScratch,
        visited: &mut VisitedSet,
    ) -> QueryResult {
        let GraphScratch { query, table } = w;
        query.clear();
        query.extend_from_slice(q);
        if info.metric.normalizes() {
            crate::distance::normalize(query);
        }
        let neighbors = match &self.source {
            Source::Flat(rows) => {
                let points = Points { data: rows.as_slice(), d: self.d, metric: self.metric };
                self.graph.search(points, query, p.k, p.ef_search, visited)
            }
            Source::Pq { codes, m, lut } => {
                table.resize(m * lut.ksub(), 0.0);
                lut.compute(self.metric, query, table);
                let dist = ToCodes { table, codes, m: *m, ksub: lut.ksub() };
                self.graph.search_by(&dist, p.k, p.ef_search, visited)
            }
        };
        QueryResult { neighbors, stats: SearchStats::default() }
    }
}

/// One search thread's scratch for graph indexes: the query as compared (normalised for
/// cosine) and its PQ table, reused from query to query.
#[derive(Default)]
pub(crate) struct GraphScratch {
    query: Vec<f32>,
    table: Vec<f32>,
}

/// Pages read at a time when a file is read into RAM.
const READ_PAGES: u64 = 256;

/// Reads `range` (bytes from data page 0) of a paged file, checking every page it touches
/// against the page table.
fn read_checked(f: &File, name: &str, what: &str, pages: &PageTable, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
    let path = std::path::Path::new(name);
    let len = range.end - range.start;
    let what_len = || format!("{len} bytes of {name}");
    let mut out: Vec<u8> = crate::error::try_vec(len as usize, what_len, "open the index mapped")?;
    let mut buf = vec![0u8; (READ_PAGES * PAGE) as usize];
    let (mut p, end_page) = (range.start / PAGE, range.end.div_ceil(PAGE));
    while p < end_page {
        let count = READ_PAGES.min(end_page - p);
        let chunk = &mut buf[..(count * PAGE) as usize];
        f.read_exact_at(chunk, format::page_offset(p)).at(path)?;
        for (i, page) in chunk.chunks_exact(PAGE as usize).enumerate() {
            pages.check_page(name, what, p + i as u64, page)?;
        }
        let lo = (p * PAGE).max(range.start) - p * PAGE;
        let hi = ((p + count) * PAGE).min(range.end) - p * PAGE;
        out.extend_from_slice(&chunk[lo as usize..hi as usize]);
        p += count;
    }
    Ok(out)
}
