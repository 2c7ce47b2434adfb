//! One query: probe the HNSW for the nprobe nearest lists, then scan every extent of those
//! lists into one top-k as the list store hands them over (from the cache, or from the device
//! as reads complete, checksum first).

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
    reader: io::Reader,
    visited: VisitedSet,
    lut: Vec<f32>,
    residual: Vec<f32>,
    scanner: Option<Scanner>,
}

pub(crate) fn search_one(index: &Index, query: &[f32], p: &SearchParams, w: &mut Worker) -> Result<QueryResult> {
    let mut q = query.to_vec();
    if index.info.metric.normalizes() {
        distance::normalize(&mut q);
    }
    let coarse = &index.coarse;
    let pq = index.codec.pq();
    let kernel = coarse.metric;
    let Worker { reader, visited, lut, residual, scanner } = w;
    let scanner = scanner.get_or_insert_with(|| index.codec.scanner());
    let probes = coarse.probe(&q, p.nprobe, p.ef_search, visited);
    let table_len = pq.m * pq.ksub();
    lut.resize(table_len, 0.0);
    let precomputed = index.precomputed.as_ref().filter(|_| kernel == Metric::L2);
    if precomputed.is_some() {
        // The query's half of every list's table; `residual` holds it.
        residual.resize(table_len, 0.0);
        index.lut.cross_terms(&q, residual);
    } else {
        residual.resize(q.len(), 0.0);
    }
    if kernel == Metric::InnerProduct {
        // ⟨q, c + r⟩ = ⟨q, c⟩ + ⟨q, r⟩: one table for every list, a per-list bias.
        index.lut.compute(kernel, &q, lut);
        scanner.set_table(lut);
    }
    let mut top = TopK::new(p.k);
    let mut last_list = usize::MAX;
    // `qc` is ‖q − c‖² from the coarse search, the list's bias under precomputed tables.
    let stats = index.lists.scan_lists(&probes, reader, |list, qc, view| {
        let mut bias = coarse.list_bias(&q, list);
        if let Some(pre) = precomputed {
            if list != last_list {
                pre.list_table(list, residual, lut);
                scanner.set_table(lut);
                last_list = list;
            }
            bias = qc;
        } else if kernel == Metric::L2 && list != last_list {
            // ‖q − c − r‖² = ‖(q − c) − r‖²: the table is built on the query's residual.
            coarse.residual(&q, list, residual);
            index.lut.compute(kernel, residual, lut);
            scanner.set_table(lut);
            last_list = list;
        }
        scanner.scan(lut, bias, view.codes, view.count, view.ids(), &mut top);
    })?;
    Ok(QueryResult { neighbors: top.into_sorted_vec(), stats })
}
