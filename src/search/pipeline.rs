//! One query: probe the HNSW for the nprobe nearest lists, put every extent of those lists in
//! flight, and scan each extent as it completes (checksum first) into one top-k.

use std::cell::RefCell;

use super::{Index, SearchParams, SearchStats};
use crate::distance::{self, Metric};
use crate::error::{Error, Result};
use crate::format::{self, Extent};
use crate::hnsw::VisitedSet;
use crate::io::{self, ReadRequest};
use crate::pq::{scan_codes, LUT_KSUB};
use crate::topk::{Neighbor, TopK};

pub(crate) struct QueryResult {
    pub neighbors: Vec<Neighbor>,
    pub stats: SearchStats,
}

thread_local! {
    /// Per-thread scratch reused across queries: visited marks, the look-up table, the residual.
    static SCRATCH: RefCell<(VisitedSet, Vec<f32>, Vec<f32>)> = RefCell::new((VisitedSet::new(0), Vec::new(), Vec::new()));
}

pub(crate) fn search_one(index: &Index, query: &[f32], p: &SearchParams) -> Result<QueryResult> {
    let mut q = query.to_vec();
    if index.info.metric.normalizes() {
        distance::normalize(&mut q);
    }
    let coarse = &index.coarse;
    let pq = &index.pq;
    let kernel = coarse.metric;
    SCRATCH.with(|s| {
        let (visited, lut, residual) = &mut *s.borrow_mut();
        let probes = coarse.probe(&q, p.nprobe, p.ef_search, visited);
        // (list, extent, ‖q − c‖² from the coarse search).
        let mut meta: Vec<(usize, &Extent, f32)> = Vec::new();
        let mut reqs = Vec::new();
        for n in &probes {
            let list = n.id as usize;
            for e in index.directory.extents_of(list) {
                let seg = &index.segments[e.segment.get() as usize];
                reqs.push(
                    ReadRequest::new(&seg.file, e.offset.get(), e.length.get() as usize)
                        .map_err(|err| Error::Io { path: index.dir.join(&seg.name), source: err })?,
                );
                meta.push((list, e, n.dist));
            }
        }
        let mut stats = SearchStats {
            bytes_read: reqs.iter().map(|r| r.len() as u64).sum(),
            extents_read: reqs.len() as u64,
            io: None,
        };
        lut.resize(pq.m * LUT_KSUB, 0.0);
        let precomputed = index.precomputed.as_ref().filter(|_| kernel == Metric::L2);
        if precomputed.is_some() {
            // The query's half of every list's table; `residual` holds it.
            residual.resize(pq.m * LUT_KSUB, 0.0);
            index.lut.cross_terms(&q, residual);
        } else {
            residual.resize(q.len(), 0.0);
        }
        if kernel == Metric::InnerProduct {
            // ⟨q, c + r⟩ = ⟨q, c⟩ + ⟨q, r⟩: one table for every list, a per-list bias.
            index.lut.compute(kernel, &q, lut);
        }
        let mut top = TopK::new(p.k);
        let mut last_list = usize::MAX;
        let engine = io::with_reader(|reader| {
            reader.read_all::<ScanError>(index.io_mode(), &reqs, |i, bytes| {
                let (list, e, qc) = meta[i];
                let seg = &index.segments[e.segment.get() as usize];
                let view = format::decode_extent(&seg.name, e, pq.code_size(), bytes)?;
                let mut bias = coarse.list_bias(&q, list);
                if let Some(pre) = precomputed {
                    if list != last_list {
                        pre.list_table(list, residual, lut);
                        last_list = list;
                    }
                    bias = qc;
                } else if kernel == Metric::L2 && list != last_list {
                    // ‖q − c − r‖² = ‖(q − c) − r‖²: the table is built on the query's residual.
                    coarse.residual(&q, list, residual);
                    index.lut.compute(kernel, residual, lut);
                    last_list = list;
                }
                scan_codes(lut, pq.m, bias, view.codes, view.ids(), &mut top);
                Ok(())
            })
        });
        let engine = engine.map_err(|e| match e {
            ScanError::Io(source) => Error::Io { path: index.dir.clone(), source },
            ScanError::Format(f) => Error::Format(f),
        })?;
        if !reqs.is_empty() {
            stats.io = Some(engine);
        }
        Ok(QueryResult { neighbors: top.into_sorted_vec(), stats })
    })
}

/// What can go wrong while extents arrive: the read itself (the io layer names the offset; the
/// index directory is added here) or the bytes (the format layer names segment and offset).
enum ScanError {
    Io(std::io::Error),
    Format(format::FormatError),
}

impl From<std::io::Error> for ScanError {
    fn from(e: std::io::Error) -> Self {
        ScanError::Io(e)
    }
}

impl From<format::FormatError> for ScanError {
    fn from(e: format::FormatError) -> Self {
        ScanError::Format(e)
    }
}
