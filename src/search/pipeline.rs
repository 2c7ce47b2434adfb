//! One query: probe the HNSW for the nprobe nearest lists, put every extent of those lists in
//! flight, and scan each extent as it completes (checksum first) into one top-k.

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

/// What one search thread reuses from query to query: its reader (ring and buffers), visited
/// marks, the look-up table and the residual. Owned by a [`super::Searcher`] or lent by the
/// index to [`Index::search`]; never a thread-local.
#[derive(Default)]
pub(crate) struct Worker {
    reader: io::Reader,
    visited: VisitedSet,
    lut: Vec<f32>,
    residual: Vec<f32>,
}

pub(crate) fn search_one(index: &Index, query: &[f32], p: &SearchParams, w: &mut Worker) -> Result<QueryResult> {
    let mut q = query.to_vec();
    if index.info.metric.normalizes() {
        distance::normalize(&mut q);
    }
    let coarse = &index.coarse;
    let pq = &index.pq;
    let kernel = coarse.metric;
    {
        let Worker { reader, visited, lut, residual } = w;
        let probes = coarse.probe(&q, p.nprobe, p.ef_search, visited);
        // (list, extent number, ‖q − c‖² from the coarse search) of what is read, and the
        // same with the bytes of what the cache holds.
        let mut meta: Vec<(usize, u32, f32)> = Vec::new();
        let mut cached: Vec<(usize, u32, f32, std::sync::Arc<Vec<u8>>)> = Vec::new();
        let mut reqs = Vec::new();
        for n in &probes {
            let list = n.id as usize;
            let first = index.directory.list_starts[list];
            for (i, e) in index.directory.extents_of(list).iter().enumerate() {
                let x = first + i as u32;
                if let Some(bytes) = index.cache.as_ref().and_then(|c| c.get(x)) {
                    cached.push((list, x, n.dist, bytes));
                    continue;
                }
                reqs.push(request(index, e)?);
                meta.push((list, x, n.dist));
            }
        }
        let lookups = if index.cache.is_some() { (cached.len() as u64, reqs.len() as u64) } else { (0, 0) };
        let mut stats = SearchStats {
            bytes_read: reqs.iter().map(|r| r.len() as u64).sum(),
            extents_read: reqs.len() as u64,
            cache_hits: lookups.0,
            cache_misses: lookups.1,
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
        let mut scan = |list: usize, qc: f32, view: format::ExtentView| {
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
        };
        for (list, x, qc, bytes) in &cached {
            let e = &index.directory.extents[*x as usize];
            scan(*list, *qc, format::extent_view(e, pq.code_size(), bytes));
        }
        let engine = reader.read_all::<ScanError>(index.io_mode(), &reqs, |i, bytes| {
            let (list, x, qc) = meta[i];
            let view = verified(index, x, bytes)?;
            scan(list, qc, view);
            Ok(())
        });
        let engine = engine.map_err(|e| scan_error(index, e))?;
        if !reqs.is_empty() {
            stats.io = Some(engine);
        }
        Ok(QueryResult { neighbors: top.into_sorted_vec(), stats })
    }
}

/// The read of extent `e`.
fn request<'a>(index: &'a Index, e: &Extent) -> Result<ReadRequest<'a>> {
    let seg = &index.segments[e.segment.get() as usize];
    ReadRequest::new(&seg.file, e.offset.get(), e.length.get() as usize)
        .map_err(|err| Error::Io { path: index.dir.join(&seg.name), source: err })
}

/// Checks the bytes of extent `x` just read (length and checksum) and hands a copy to the
/// cache, which keeps it if it saves more reads than what it would displace.
fn verified<'b>(index: &Index, x: u32, bytes: &'b [u8]) -> std::result::Result<format::ExtentView<'b>, ScanError> {
    let e = &index.directory.extents[x as usize];
    let seg = &index.segments[e.segment.get() as usize];
    let view = format::decode_extent(&seg.name, e, index.pq.code_size(), bytes)?;
    if let Some(c) = &index.cache {
        c.offer(x, bytes);
    }
    Ok(view)
}

fn scan_error(index: &Index, e: ScanError) -> Error {
    match e {
        ScanError::Io(source) => Error::Io { path: index.dir.clone(), source },
        ScanError::Format(f) => Error::Format(f),
    }
}

/// Reads extents `xs` (all in flight at once), verifies each and hands it to `each`.
pub(crate) fn read_extents(index: &Index, xs: &[u32], mut each: impl FnMut(u32, &[u8]) -> Result<()>) -> Result<()> {
    let reqs = xs.iter().map(|&x| request(index, &index.directory.extents[x as usize])).collect::<Result<Vec<_>>>()?;
    let mut failed = None;
    io::Reader::new()
        .read_all::<ScanError>(index.io_mode(), &reqs, |i, bytes| {
            let e = &index.directory.extents[xs[i] as usize];
            let seg = &index.segments[e.segment.get() as usize];
            format::decode_extent(&seg.name, e, index.pq.code_size(), bytes)?;
            if failed.is_none() {
                if let Err(err) = each(xs[i], bytes) {
                    failed = Some(err);
                }
            }
            Ok(())
        })
        .map_err(|e| scan_error(index, e))?;
    failed.map_or(Ok(()), Err)
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
