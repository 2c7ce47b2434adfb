//! `HNSW{M},Flat`: one HNSW graph over every vector, searched with exact distances. The graph
//! file and the vectors file are mapped (the default: an index larger than RAM opens at once
//! and the kernel pages in what queries touch) or read into RAM and checked page by page
//! ([`OpenOptions::load_into_ram`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::open::Generation;
use super::pipeline::QueryResult;
use super::{IndexInfo, OpenOptions, RefineVectors, SearchParams, SearchStats};
use crate::distance::Metric;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, PageTable, PAGE};
use crate::hnsw::{Hnsw, Points, VisitedSet};
use crate::io::Mapped;
use crate::store;

pub(crate) struct GraphIndex {
    graph: Hnsw,
    vectors: Rows,
    d: usize,
    /// The kernel metric (inner product for cosine, whose vectors are stored normalised).
    metric: Metric,
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
        let (vname, vfile) = g.named_vectors_file(store::FLAT_VECTORS.into(), info, RefineVectors::Float32)?;
        let (n, d) = (info.ntotal as usize, info.dim);
        if vfile.header.n_vectors.get() != info.ntotal {
            return Err(Error::Corrupt {
                file: vname,
                reason: format!("holds {} vectors, the index has {n}", vfile.header.n_vectors.get()),
            });
        }
        let gpath = g.dir.join(&gname);
        let vpath = g.dir.join(&vname);
        let graph_f = File::open(&gpath).at(&gpath)?;
        let vectors_f = File::open(&vpath).at(&vpath)?;
        let (slots, levels) = gfile.slots_and_levels();
        let levels_bytes = read_checked(&graph_f, &gname, "graph", &gfile.pages, levels)?;
        let h = &gfile.header;
        let corrupt =
            |file: &str, e: crate::hnsw::GraphError| Error::Corrupt { file: file.into(), reason: e.to_string() };
        let vector_bytes = 0..(n * d * 4) as u64;
        let mapped = !opts.load_into_ram && cfg!(target_endian = "little");
        let (graph, vectors) = if mapped {
            let at = |r: std::ops::Range<u64>| (PAGE + r.start) as usize..(PAGE + r.end) as usize;
            let slots = Mapped::new(&graph_f, at(slots)).at(&gpath)?;
            let rows = Mapped::new(&vectors_f, at(vector_bytes)).at(&vpath)?;
            slots.advise_random();
            rows.advise_random();
            let graph = Hnsw::from_shared_parts(h.m.get() as usize, levels_bytes, Arc::new(slots), h.entry_point.get())
                .map_err(|e| corrupt(&gname, e))?;
            (graph, Rows::Mapped(rows))
        } else {
            let slots = format::u32s_from_le(&read_checked(&graph_f, &gname, "graph", &gfile.pages, slots)?);
            let rows = read_checked(&vectors_f, &vname, "vectors", &vfile.pages, vector_bytes)?;
            let graph = Hnsw::from_parts(h.m.get() as usize, levels_bytes, slots, h.entry_point.get())
                .map_err(|e| corrupt(&gname, e))?;
            (graph, Rows::Owned(format::f32s_from_le(&rows)))
        };
        if graph.len() != n {
            return Err(Error::Corrupt {
                file: gname,
                reason: format!("holds {} nodes, the index has {n} vectors", graph.len()),
            });
        }
        Ok(GraphIndex { graph, vectors, d, metric: info.metric.kernel() })
    }

    /// One query: the graph's `k` nearest at efSearch `ef_search` (faiss's `HNSW.search`).
    pub fn search_one(&self, info: &IndexInfo, q: &[f32], p: &SearchParams, visited: &mut VisitedSet) -> QueryResult {
        let mut q = q.to_vec();
        if info.metric.normalizes() {
            crate::distance::normalize(&mut q);
        }
        let points = Points { data: self.vectors.as_slice(), d: self.d, metric: self.metric };
        let neighbors = self.graph.search(points, &q, p.k, p.ef_search, visited);
        QueryResult { neighbors, stats: SearchStats::default() }
    }
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
