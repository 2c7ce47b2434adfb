//! Grouped batch search, as faiss's batch `search` does it: the coarse search of every query
//! first, then each probed list once per pass, scanned for every query that probes it while its
//! codes are still in the CPU's caches. Two passes: every query's closest list where it is
//! cached, then the rest (the first sets each query's bar for the second, as a query alone gets
//! it from its closest list). Results equal the one-query-at-a-time path's (the same tables, the
//! same scans; ties settle by id); what changes is that a list's codes travel from memory at
//! most twice per batch (once when read from the device) instead of once per query. No
//! per-query latency exists in this mode.

use std::sync::Mutex;

use rayon::prelude::*;

use super::pipeline::{self, PreparedQuery, QueryResult, Worker};
use super::refine::Ask;
use super::{Ivf, SearchParams, SearchStats};
use crate::codec::Visitor;
use crate::distance::amx;
use crate::error::Result;
use crate::ivf::CoarseSearch;
use crate::topk::{Neighbor, TopK};

/// Query-side tables held at once (bounds the queries grouped together: 8-bit PQ32 tables
/// take 32 KiB a query, 4-bit PQ64x4fs 4 KiB).
const GROUP_TABLE_BYTES: usize = 64 << 20;

/// Queries whose re-rank pages are read in one round (bounds the pages, and so the buffers,
/// in flight at once).
const RERANK_QUERIES: usize = 64;

/// Lists whose reads are in flight together when they are not cached.
const LISTS_PER_READ: usize = 64;

/// One (list, query) visit: the query's number in its group and its distance to the list.
#[derive(Clone, Copy)]
struct Visit {
    list: u32,
    query: u32,
    qc: f32,
}

pub(crate) fn search_grouped(
    index: &Ivf,
    queries: &[f32],
    p: &SearchParams,
    pool: &rayon::ThreadPool,
    workers: &[Mutex<Worker>],
) -> Result<(Vec<QueryResult>, SearchStats)> {
    let d = index.info.dim;
    let group = (GROUP_TABLE_BYTES / (index.codec.table_len() * 4)).max(1);
    let worker = || {
        let i = rayon::current_thread_index().unwrap_or(0);
        workers[i % workers.len()].lock().unwrap_or_else(|e| e.into_inner())
    };
    let mut results = Vec::with_capacity(queries.len() / d);
    let mut total = SearchStats::default();
    for chunk in queries.chunks(group * d) {
        // All coarse searches back to back, then all the query tables: written in between,
        // the tables (KiBs per query) would push the centroids and the graph out of the CPU's
        // caches during the walks.
        let prepared: Vec<(PreparedQuery, Vec<Neighbor>)> = pool.install(|| {
            // An exact coarse search takes its queries a tile's rows at a time.
            let rows = if p.coarse == CoarseSearch::Exact { amx::ROWS } else { 1 };
            let probed: Vec<Vec<(Vec<f32>, Vec<Neighbor>)>> = chunk
                .par_chunks(d * rows)
                .map(|block| {
                    let qs: Vec<f32> = block.chunks(d).flat_map(|q| pipeline::normalized(index, q)).collect();
                    let found = pipeline::probe_all(index, &qs, p, &mut worker());
                    qs.chunks(d).map(<[f32]>::to_vec).zip(found).collect()
                })
                .collect();
            probed
                .into_par_iter()
                .flatten()
                .map(|(q, probes)| (pipeline::prepare_normalized(index, q), probes))
                .collect()
        });
        // Each query's closest list first where it is cached, then the rest: a list's vectors
        // enter a query's top-k only if they beat its k-th so far, and lists taken in list order
        // (for sharing) rather than closest first let far more of them in on the way, each with
        // an exact distance computed. The first pass sets every query's bar for the second, as
        // a query alone gets it from its closest list. (A list read from the device is read
        // once: there the reads, not the scans, take the time.)
        let seeds: Vec<bool> = prepared
            .iter()
            .map(|(_, probes)| probes.first().is_some_and(|n| index.lists.is_cached(n.id as usize)))
            .collect();
        let visits = |first: bool| -> Vec<Visit> {
            let mut v: Vec<Visit> = prepared
                .iter()
                .zip(&seeds)
                .enumerate()
                .flat_map(|(q, ((_, probes), &seeded))| {
                    let cut = seeded as usize;
                    let probes = if first { &probes[..cut] } else { &probes[cut..] };
                    probes.iter().map(move |n| Visit { list: n.id as u32, query: q as u32, qc: n.dist })
                })
                .collect();
            v.sort_unstable_by_key(|v| (v.list, v.query));
            v
        };
        // What the parts hand over passed their filters already.
        let mut merged: Vec<TopK> = (0..prepared.len()).map(|_| TopK::new(pipeline::shortlist(index, p))).collect();
        for first in [true, false] {
            let visits = visits(first);
            let bars: Vec<f32> = merged.iter().map(TopK::threshold).collect();
            let parts = balanced_parts(&visits, pool.current_num_threads());
            let scanned: Vec<Result<(Vec<Option<TopK>>, SearchStats)>> = pool.install(|| {
                parts.par_iter().map(|part| scan_part(index, p, &prepared, &bars, part, &mut worker())).collect()
            });
            for s in scanned {
                let (tops, stats) = s?;
                total.add(&stats);
                for (m, top) in merged.iter_mut().zip(tops) {
                    for (n, at) in top.map(TopK::into_sorted_placed).unwrap_or_default() {
                        m.push_placed(n, at);
                    }
                }
            }
        }
        let Some(vectors) = &index.vectors else {
            results.extend(
                merged
                    .into_iter()
                    .map(|t| QueryResult { neighbors: t.into_sorted_vec(), stats: SearchStats::default() }),
            );
            continue;
        };
        // Re-ranks, RERANK_QUERIES queries to a round of reads, the rounds shared out among the
        // threads; their cost goes into the batch's stats.
        let placed: Vec<Vec<(Neighbor, u64)>> = merged.into_iter().map(TopK::into_sorted_placed).collect();
        let done: Vec<Result<(Vec<Vec<Neighbor>>, SearchStats)>> = pool.install(|| {
            placed
                .par_chunks(RERANK_QUERIES)
                .zip(prepared.par_chunks(RERANK_QUERIES))
                .map(|(candidates, queries)| {
                    let mut w = worker();
                    let (reader, _) = w.parts(index);
                    let asks: Vec<Ask> =
                        queries.iter().zip(candidates).map(|((q, _), c)| (q.q.as_slice(), c.as_slice())).collect();
                    let mut stats = SearchStats::default();
                    let found = vectors.rerank_many(&index.lists.directory, &asks, p.k, reader, &mut stats)?;
                    Ok((found, stats))
                })
                .collect()
        });
        for d in done {
            let (found, stats) = d?;
            total.add(&stats);
            results.extend(found.into_iter().map(|neighbors| QueryResult { neighbors, stats: SearchStats::default() }));
        }
    }
    Ok((results, total))
}

/// Cuts `visits` (sorted by list) into at most `n` runs of whole lists with about as many
/// visits each.
fn balanced_parts(visits: &[Visit], n: usize) -> Vec<&[Visit]> {
    let target = visits.len().div_ceil(n.max(1)).max(1);
    let mut parts = Vec::with_capacity(n);
    let mut rest = visits;
    while !rest.is_empty() {
        let mut end = target.min(rest.len());
        while end < rest.len() && rest[end].list == rest[end - 1].list {
            end += 1;
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// Scans the lists of `part` for their visitors, into one top-k per query of the group that
/// holds only what is at most the query's bar in `bars` (its k-th distance before this pass:
/// nothing farther can be among its k nearest).
fn scan_part(
    index: &Ivf,
    p: &SearchParams,
    prepared: &[(PreparedQuery, Vec<Neighbor>)],
    bars: &[f32],
    part: &[Visit],
    w: &mut Worker,
) -> Result<(Vec<Option<TopK>>, SearchStats)> {
    let (reader, scratch) = w.parts(index);
    let mut tops: Vec<Option<TopK>> = (0..prepared.len()).map(|_| None).collect();
    let mut stats = SearchStats::default();
    let lists: Vec<&[Visit]> = part.chunk_by(|a, b| a.list == b.list).collect();
    for batch in lists.chunks(LISTS_PER_READ) {
        let probes: Vec<Neighbor> = batch.iter().map(|v| Neighbor { id: v[0].list as u64, dist: 0.0 }).collect();
        let ids = pipeline::ids_for(index, p, batch.iter().map(|v| v[0].list as usize), reader, &mut stats)?;
        let s = index.lists.scan_lists(&probes, reader, |list, x, _, view, derived, ahead| {
            let view = match &ids {
                Some(ids) => ids.attach(x, view),
                None => view,
            };
            let Ok(i) = batch.binary_search_by_key(&(list as u32), |v| v[0].list) else { return };
            let visits = batch[i];
            let mut visitors: Vec<Visitor> = visits
                .iter()
                .map(|v| {
                    let (table, bias) = prepared[v.query as usize].0.table_for(index, v.qc);
                    let mut topk = tops[v.query as usize].take().unwrap_or_else(|| {
                        TopK::bounded(pipeline::shortlist(index, p), bars[v.query as usize])
                            .filtered(p.filter.clone())
                            .hiding(index.hidden.clone())
                    });
                    topk.set_extent(x);
                    Visitor { table, bias, topk }
                })
                .collect();
            scratch.scan_many(index, (list, x), &view, derived, &mut visitors, ahead);
            for (v, done) in visits.iter().zip(visitors) {
                tops[v.query as usize] = Some(done.topk);
            }
        })?;
        stats.add(&s);
    }
    Ok((tops, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_keep_lists_whole_and_cover_everything() {
        let visits: Vec<Visit> =
            [0u32, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4].iter().map(|&l| Visit { list: l, query: 0, qc: 0.0 }).collect();
        for n in 1..6 {
            let parts = balanced_parts(&visits, n);
            assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), visits.len());
            for w in parts.windows(2) {
                assert_ne!(w[0].last().unwrap().list, w[1][0].list, "a list is never split");
            }
        }
        assert!(balanced_parts(&[], 3).is_empty());
    }
}
