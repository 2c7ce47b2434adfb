//! One query: probe the HNSW for the nprobe nearest lists, then scan every extent of those
//! lists into one top-k as the list store hands them over (from the cache, or from the device
//! as reads complete, checksum first). The table steps are shared with the grouped batch
//! path (`batch.rs`), which visits the same (query, list) pairs list by list.

use super::{Index, SearchParams, SearchStats};
use crate::codec::Scanner;
use crate::distance::{self, Metric};
use crate::error::Result;
use crate::hnsw::VisitedSet;
use crate::io;
use crate::topk::{Neighbor, TopK};

pub(crate) struct QueryResult {
    pub neighbors: Vec<Neighbor>,
    pub stats: SearchStats,
}

/// What one search thread reuses from query to query: its reader (ring and buffers), visited
/// marks, the look-up table, the residual and the codec's scanner. Owned by a
/// [`super::Searcher`] or lent by the index to [`Index::search`]; never a thread-local.
#[derive(Default)]
pub(crate) struct Worker {
    pub reader: io::Reader,
    pub visited: VisitedSet,
    pub lut: Vec<f32>,
    pub residual: Vec<f32>,
    pub scanner: Option<Scanner>,
}

/// A query made ready for its lists: normalised where the metric wants it, and the part of
/// every list's table that depends on the query alone — the cross terms under precomputed L2
/// tables, the whole table for inner product, nothing for L2 without precomputed tables.
pub(crate) struct PreparedQuery {
    pub q: Vec<f32>,
    table: Vec<f32>,
    /// `table` serves every list as it is (inner product).
    shared: bool,
}

pub(crate) fn prepare(index: &Index, query: &[f32]) -> PreparedQuery {
    let mut q = query.to_vec();
    if index.info.metric.normalizes() {
        distance::normalize(&mut q);
    }
    let pq = index.codec.pq();
    let len = pq.m * pq.ksub();
    let mut table = Vec::new();
    let shared = index.coarse.metric == Metric::InnerProduct;
    if shared {
        // ⟨q, c + r⟩ = ⟨q, c⟩ + ⟨q, r⟩: one table for every list, a per-list bias.
        table.resize(len, 0.0);
        index.lut.compute(Metric::InnerProduct, &q, &mut table);
    } else if index.precomputed.is_some() {
        table.resize(len, 0.0);
        index.lut.cross_terms(&q, &mut table);
    }
    PreparedQuery { q, table, shared }
}

impl PreparedQuery {
    /// Readies `lut` (unless one table serves every list) and `scanner` for `list` (`qc`: the
    /// coarse search's distance to it, ‖q − c‖² for L2); returns the list's bias. Scan with
    /// [`table`](Self::table) afterwards. `residual` is scratch.
    pub fn list_table(
        &self,
        index: &Index,
        list: usize,
        qc: f32,
        lut: &mut Vec<f32>,
        residual: &mut Vec<f32>,
        scanner: &mut Scanner,
    ) -> f32 {
        let coarse = &index.coarse;
        if self.shared {
            scanner.set_table(&self.table);
            return coarse.list_bias(&self.q, list);
        }
        let pq = index.codec.pq();
        lut.resize(pq.m * pq.ksub(), 0.0);
        if let Some(pre) = &index.precomputed {
            pre.list_table(list, &self.table, lut);
            scanner.set_table(lut);
            return qc;
        }
        // ‖q − c − r‖² = ‖(q − c) − r‖²: the table is built on the query's residual.
        residual.resize(self.q.len(), 0.0);
        coarse.residual(&self.q, list, residual);
        index.lut.compute(Metric::L2, residual, lut);
        scanner.set_table(lut);
        0.0
    }

    /// The table the last [`list_table`](Self::list_table) readied: the shared one, or `lut`.
    pub fn table<'a>(&'a self, lut: &'a [f32]) -> &'a [f32] {
        if self.shared {
            &self.table
        } else {
            lut
        }
    }
}

pub(crate) fn search_one(index: &Index, query: &[f32], p: &SearchParams, w: &mut Worker) -> Result<QueryResult> {
    let prepared = prepare(index, query);
    let Worker { reader, visited, lut, residual, scanner } = w;
    let scanner = scanner.get_or_insert_with(|| index.codec.scanner());
    let probes = index.coarse.probe(&prepared.q, p.nprobe, p.ef_search, visited);
    let mut top = TopK::new(p.k);
    // A list cut into several extents is scanned with the table of its first.
    let mut last: Option<(usize, f32)> = None;
    let stats = index.lists.scan_lists(&probes, reader, |list, qc, view| {
        let bias = match last {
            Some((l, b)) if l == list => b,
            _ => {
                let b = prepared.list_table(index, list, qc, lut, residual, scanner);
                last = Some((list, b));
                b
            }
        };
        scanner.scan(prepared.table(lut), bias, view.codes, view.count, |i| view.id(i), &mut top);
    })?;
    Ok(QueryResult { neighbors: top.into_sorted_vec(), stats })
}
