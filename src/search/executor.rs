//! The query executor: one search thread keeps several queries in flight over its one ring.
//! Each query goes through its phases — the blocks of ids where a filtered scan needs them, its
//! lists, its re-rank pages — and each phase's reads are added to the ring as soon as the phase
//! starts. The thread waits only when nothing is left to do; each completion is checked and
//! scanned (or kept) for its own query, and a query that finishes makes room for the next,
//! whose coarse search and scan of cached lists run while the others' reads are outstanding.
//! The device so always has the reads of up to `inflight` queries, where waves of queries
//! (start n, wait for all n, start n more) leave it idle while a wave's last answers are put
//! together and the next wave's coarse searches run.
//!
//! Every query takes the very steps [`pipeline::search_one`] takes, so its answer is the same.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::lists::{ListReads, Probe, ReadError};
use super::pipeline::{self, IdsOf, IdsPlan, PreparedQuery, QueryResult, Scratch, Worker};
use super::refine::PageReads;
use super::{Ivf, SearchParams, SearchStats};
use crate::error::Error;
use crate::io::Flight;
use crate::topk::{Neighbor, TopK};

/// A query answered by [`run`]: its number in the batch, its latency (from the start of its
/// coarse search to its answer) and its result.
pub(crate) struct Done {
    pub at: usize,
    pub ms: f64,
    pub result: QueryResult,
}

/// Searches queries of `queries` (rows of the index's dimension) on worker `w`, taking the
/// next query's number from `next` whenever fewer than `inflight` are in flight, until every
/// row is taken. Threads sharing `next` share the batch. On an error, `next` is moved past the
/// end so that the other threads stop taking queries too.
pub(crate) fn run(
    index: &Ivf,
    queries: &[f32],
    p: &SearchParams,
    inflight: usize,
    next: &AtomicUsize,
    w: &mut Worker,
) -> crate::error::Result<Vec<Done>> {
    let nq = queries.len() / index.info.dim;
    let r = Executor { index, queries, p, next, nq, out: Vec::new() }.run(inflight, w);
    if r.is_err() {
        next.fetch_max(nq, Ordering::Relaxed);
    }
    r
}

struct Executor<'a, 's> {
    index: &'s Ivf,
    queries: &'a [f32],
    p: &'a SearchParams,
    next: &'a AtomicUsize,
    nq: usize,
    out: Vec<Done>,
}

/// One query in flight.
struct Live<'s> {
    at: usize,
    t0: Instant,
    q: PreparedQuery,
    probes: Vec<Neighbor>,
    ids: Option<IdsOf>,
    stats: SearchStats,
    phase: Phase<'s>,
    /// Reads of the current phase that have not arrived yet.
    waiting: usize,
}

enum Phase<'s> {
    /// Coarse search done; nothing read yet.
    Probed,
    /// Reading the blocks of ids of the probed extents.
    Ids(IdsPlan<'s>),
    /// Reading the probed lists the cache did not hold, each scanned into the top-k as it
    /// arrives.
    Lists(ListReads<'s>, TopK),
    /// Reading the pages of the candidates' full vectors.
    Rerank(PageReads<'s>, Vec<(Neighbor, u64)>),
    /// Between phases.
    Moving,
}

/// What can stop a batch: a read, or anything else a search step reports.
enum Failed {
    Read(ReadError),
    Search(Error),
}

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Self {
        Failed::Read(ReadError::Io(e))
    }
}

impl From<ReadError> for Failed {
    fn from(e: ReadError) -> Self {
        Failed::Read(e)
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Search(e)
    }
}

/// The tag of read `i` of the query in slot `slot`.
fn tag(slot: usize, i: usize) -> u64 {
    (slot as u64) << 32 | i as u64
}

impl<'s> Executor<'_, 's> {
    fn run(mut self, inflight: usize, w: &mut Worker) -> crate::error::Result<Vec<Done>> {
        let index = self.index;
        let Worker { reader, visited, screen, scratch, .. } = w;
        let scratch = pipeline::scratch_for(index, scratch);
        let mut slots: Vec<Option<Live<'s>>> = (0..inflight).map(|_| None).collect();
        let done = reader.flight::<_, Failed>(index.lists.io, |f| {
            loop {
                self.start(&mut slots, f, scratch, visited, screen)?;
                if f.pending() == 0 {
                    // Every query started has finished (one with reads pending would hold them),
                    // and none is left to start.
                    debug_assert!(slots.iter().all(Option::is_none));
                    return Ok(());
                }
                let mut arrived = Vec::new();
                f.wait(|t, bytes| {
                    let (slot, i) = ((t >> 32) as usize, (t & 0xFFFF_FFFF) as usize);
                    let live = slots[slot].as_mut().unwrap_or_else(|| unreachable!("a read belongs to a live query"));
                    self.take(live, i, bytes, scratch)?;
                    live.waiting -= 1;
                    if live.waiting == 0 {
                        arrived.push(slot);
                    }
                    Ok::<(), Failed>(())
                })?;
                for slot in arrived {
                    self.step(&mut slots, slot, f, scratch)?;
                }
                // The next phases' reads go out before any new query's coarse search runs.
                f.submit()?;
            }
        });
        match done {
            Ok(()) => Ok(self.out),
            Err(Failed::Read(e)) => Err(index.lists.error(e)),
            Err(Failed::Search(e)) => Err(e),
        }
    }

    /// Starts queries in the free slots (their coarse searches together, so that exact ones
    /// share the centroid tiles) while any is left, moving each as far as it goes without
    /// waiting.
    fn start(
        &mut self,
        slots: &mut [Option<Live<'s>>],
        f: &mut Flight<'_, 's>,
        scratch: &mut Scratch,
        visited: &mut crate::hnsw::VisitedSet,
        screen: &mut crate::ivf::ScreenScratch,
    ) -> Result<(), Failed> {
        while self.next.load(Ordering::Relaxed) < self.nq {
            let free: Vec<usize> = (0..slots.len()).filter(|&s| slots[s].is_none()).collect();
            let mut started = Vec::new();
            for &slot in &free {
                let at = self.next.fetch_add(1, Ordering::Relaxed);
                if at >= self.nq {
                    break;
                }
                started.push((slot, at, Instant::now()));
            }
            if started.is_empty() {
                return Ok(());
            }
            let d = self.index.info.dim;
            let prepared: Vec<PreparedQuery> = started
                .iter()
                .map(|&(_, at, _)| pipeline::prepare(self.index, &self.queries[at * d..(at + 1) * d]))
                .collect();
            let rows: Vec<f32> = prepared.iter().flat_map(|q| q.q.iter().copied()).collect();
            let probes = pipeline::probe_rows(self.index, &rows, self.p, visited, screen);
            for (((slot, at, t0), q), probes) in started.into_iter().zip(prepared).zip(probes) {
                // A (query, list) table is known by the query's address, which this slot's
                // last query had.
                scratch.forget_table();
                slots[slot] = Some(Live {
                    at,
                    t0,
                    q,
                    probes,
                    ids: None,
                    stats: SearchStats::default(),
                    phase: Phase::Probed,
                    waiting: 0,
                });
                self.step(slots, slot, f, scratch)?;
                // Its reads go out now, not after the coarse searches of the others started
                // with it.
                f.submit()?;
            }
        }
        Ok(())
    }

    /// Read `i` of `live`'s phase has arrived as `bytes`.
    fn take(&self, live: &mut Live<'s>, i: usize, bytes: &[u8], scratch: &mut Scratch) -> Result<(), Failed> {
        let index = self.index;
        let Live { q, ids, phase, .. } = live;
        match phase {
            Phase::Ids(plan) => self.vectors().take_read(&mut plan.reads, i, bytes)?,
            Phase::Lists(reads, top) => {
                index.lists.scan_read(reads, i, bytes, |_, list, x, qc, view, derived, ahead| {
                    let view = match ids {
                        Some(ids) => ids.attach(x, view),
                        None => view,
                    };
                    top.set_extent(x);
                    q.scan_extent(index, (list, x), qc, (&view, derived, ahead), scratch, top);
                })?
            }
            Phase::Rerank(reads, _) => self.vectors().take_read(reads, i, bytes)?,
            Phase::Probed | Phase::Moving => unreachable!("reads are added only in a reading phase"),
        }
        Ok(())
    }

    fn vectors(&self) -> &'s super::refine::VectorStore {
        self.index.vectors.as_ref().unwrap_or_else(|| unreachable!("only an index with full vectors reads them"))
    }

    /// Moves the query in `slot` (all of whose reads have arrived) on through its phases until
    /// one must wait for reads; a query that is answered leaves its slot.
    fn step(
        &mut self,
        slots: &mut [Option<Live<'s>>],
        slot: usize,
        f: &mut Flight<'_, 's>,
        scratch: &mut Scratch,
    ) -> Result<(), Failed> {
        let index = self.index;
        let live = slots[slot].as_mut().unwrap_or_else(|| unreachable!("stepping a live query"));
        while live.waiting == 0 {
            live.phase = match std::mem::replace(&mut live.phase, Phase::Moving) {
                Phase::Probed => {
                    let lists = live.probes.iter().map(|n| n.id as usize);
                    match pipeline::ids_plan(index, self.p, lists)? {
                        Some(plan) => {
                            live.waiting = add(f, slot, &plan.reads.reqs);
                            Phase::Ids(plan)
                        }
                        None => self.scan_lists(live, slot, f, scratch)?,
                    }
                }
                Phase::Ids(plan) => {
                    plan.reads.charge(&mut live.stats, f.engine());
                    live.ids = Some(plan.finish(index));
                    self.scan_lists(live, slot, f, scratch)?
                }
                Phase::Lists(reads, top) => {
                    if !reads.reqs.is_empty() {
                        live.stats.io = Some(f.engine());
                    }
                    match &index.vectors {
                        Some(v) => {
                            let candidates = top.into_sorted_placed();
                            let reads = v.rerank_reads(&index.lists.directory, &[(&live.q.q, &candidates)])?;
                            live.waiting = add(f, slot, &reads.reqs);
                            Phase::Rerank(reads, candidates)
                        }
                        None => return self.answer(slots, slot, top.into_sorted_vec()),
                    }
                }
                Phase::Rerank(reads, candidates) => {
                    let v = self.vectors();
                    reads.charge(&mut live.stats, f.engine());
                    live.stats.refine_pages += reads.pages() as u64;
                    let ask = [(live.q.q.as_slice(), candidates.as_slice())];
                    let found = v.ranked(&index.lists.directory, &ask, self.p.k, &reads).pop().unwrap_or_default();
                    return self.answer(slots, slot, found);
                }
                Phase::Moving => unreachable!("a phase is always put back"),
            };
        }
        Ok(())
    }

    /// Scans the cached lists of `live` and adds the reads of the others.
    fn scan_lists(
        &self,
        live: &mut Live<'s>,
        slot: usize,
        f: &mut Flight<'_, 's>,
        scratch: &mut Scratch,
    ) -> Result<Phase<'s>, Failed> {
        let index = self.index;
        let mut top = pipeline::top_k(index, self.p);
        let Live { q, ids, probes, stats, waiting, .. } = live;
        let probes = probes.iter().map(|n| Probe { owner: 0, list: n.id as u32, qc: n.dist });
        let reads = index.lists.scan_cached(probes, |_, list, x, qc, view, derived, ahead| {
            let view = match ids.as_ref() {
                Some(ids) => ids.attach(x, view),
                None => view,
            };
            top.set_extent(x);
            q.scan_extent(index, (list, x), qc, (&view, derived, ahead), scratch, &mut top);
        })?;
        stats.add(&reads.stats);
        *waiting = add(f, slot, &reads.reqs);
        Ok(Phase::Lists(reads, top))
    }

    fn answer(&mut self, slots: &mut [Option<Live<'s>>], slot: usize, neighbors: Vec<Neighbor>) -> Result<(), Failed> {
        let live = slots[slot].take().unwrap_or_else(|| unreachable!("answering a live query"));
        self.out.push(Done {
            at: live.at,
            ms: live.t0.elapsed().as_secs_f64() * 1e3,
            result: QueryResult { neighbors, stats: live.stats },
        });
        Ok(())
    }
}

/// Adds `reqs` as the reads of the query in `slot`; returns how many.
fn add<'s>(f: &mut Flight<'_, 's>, slot: usize, reqs: &[crate::io::ReadRequest<'s>]) -> usize {
    for (i, r) in reqs.iter().enumerate() {
        f.add(*r, tag(slot, i));
    }
    reqs.len()
}
