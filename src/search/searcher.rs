//! A searcher: an index with its own thread pool and one worker (reader, ring, scratch) per
//! thread, answering batches with per-query latency and statistics. The CLI's measurements go
//! through it; a server keeps one for its life.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use super::executor;
use super::pipeline::{self, Worker};
use super::{Index, Ivf, SearchParams, SearchResults, SearchStats};
use crate::distance::amx;
use crate::error::{Error, Result};
use crate::ivf::CoarseSearch;

/// Most queries a search thread keeps in flight.
pub const MAX_INFLIGHT: usize = 1024;

/// Searches one index on `threads` threads of its own.
///
/// ```no_run
/// use quiver::{Index, SearchParams, Searcher};
/// let index = Index::open("my-index")?;
/// let searcher = Searcher::new(&index, 4)?;
/// let queries = vec![0.0f32; index.info().dim * 100];
/// let batch = searcher.search(&queries, &SearchParams { k: 10, nprobe: 16, ef_search: 16, ..Default::default() })?;
/// println!("query 0 took {:.3} ms, {} bytes read", batch.latencies_ms[0], batch.per_query[0].bytes_read);
/// # Ok::<(), quiver::Error>(())
/// ```
pub struct Searcher<'i> {
    index: &'i Index,
    /// Queries each thread keeps in flight (see [`with_inflight`](Self::with_inflight)).
    inflight: usize,
    pool: rayon::ThreadPool,
    /// One per pool thread, indexed by the thread's number: never contended.
    workers: Vec<Mutex<Worker>>,
}

/// A batch's results with what each query cost (`results.stats` holds the batch's totals).
#[derive(Clone, Debug)]
pub struct Batch {
    pub results: SearchResults,
    /// Wall time of each query, in query order, measured inside the worker; empty for
    /// [`Searcher::search_grouped`], where queries share their lists' scans.
    pub latencies_ms: Vec<f64>,
    /// What each query read and where its bytes came from, in query order; empty for
    /// [`Searcher::search_grouped`].
    pub per_query: Vec<SearchStats>,
    /// Wall time of the whole batch.
    pub wall_s: f64,
}

impl<'i> Searcher<'i> {
    /// A searcher with `threads` threads (0: one per core).
    pub fn new(index: &'i Index, threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("quiver-search-{i}"))
            .build()
            .map_err(|e| Error::InvalidParameter(format!("cannot start {threads} search threads: {e}")))?;
        let workers = (0..pool.current_num_threads()).map(|_| Mutex::new(Worker::default())).collect();
        Ok(Searcher { index, inflight: 1, pool, workers })
    }

    /// Each thread keeps `n` queries in flight over its ring: their reads outstanding
    /// together, each list scanned (and each re-rank page kept) for its query as it arrives,
    /// and a query that is answered making room for the next, whose coarse search runs while
    /// the others' reads are outstanding. The device so sees up to n × the reads of one query
    /// at all times. 1 (the default) is one query at a time, the lowest latency; more raises
    /// QPS where the device, not the CPU, sets the pace. A query's latency is its own, from its
    /// coarse search to its answer, and so are its stats. Results do not change.
    pub fn with_inflight(mut self, n: usize) -> Result<Self> {
        if n == 0 || n > MAX_INFLIGHT {
            return Err(Error::InvalidParameter(format!("inflight = {n} is out of range: 1 ..= {MAX_INFLIGHT}")));
        }
        self.inflight = n;
        Ok(self)
    }

    pub fn inflight(&self) -> usize {
        self.inflight
    }

    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    pub fn index(&self) -> &Index {
        self.index
    }

    /// Searches `queries` (nq × dim, row-major), each query on one worker, all workers at
    /// once. Errors as [`Index::search`] does.
    pub fn search(&self, queries: &[f32], params: &SearchParams) -> Result<Batch> {
        self.index.check_params(queries, params)?;
        // A graph index reads through memory, not a ring: nothing to keep in flight.
        if let Some(ivf) = self.index.ivf().filter(|_| self.inflight > 1) {
            return self.search_inflight(ivf, queries, params);
        }
        let d = self.index.info().dim;
        let t0 = Instant::now();
        let timed: Vec<(f64, Result<pipeline::QueryResult>)> = self.pool.install(|| {
            queries
                .par_chunks(d)
                .map(|q| {
                    let i = rayon::current_thread_index().unwrap_or(0);
                    let mut w = self.workers[i].lock().unwrap_or_else(|e| e.into_inner());
                    let t = Instant::now();
                    let r = self.index.search_one(q, params, &mut w);
                    (t.elapsed().as_secs_f64() * 1e3, r)
                })
                .collect()
        });
        let wall_s = t0.elapsed().as_secs_f64();
        let mut latencies_ms = Vec::with_capacity(timed.len());
        let mut per_query = Vec::with_capacity(timed.len());
        let mut results = Vec::with_capacity(timed.len());
        for (ms, r) in timed {
            latencies_ms.push(ms);
            let r = r?;
            per_query.push(r.stats);
            results.push(Ok(r));
        }
        let results = self.index.collect(results, params)?;
        Ok(Batch { results, latencies_ms, per_query, wall_s })
    }

    /// [`search`](Self::search) with [`inflight`](Self::with_inflight) queries in flight on
    /// each thread, the threads taking the next query from one counter.
    fn search_inflight(&self, ivf: &Ivf, queries: &[f32], params: &SearchParams) -> Result<Batch> {
        let next = AtomicUsize::new(0);
        let t0 = Instant::now();
        let per_thread: Vec<Result<Vec<executor::Done>>> = self.pool.broadcast(|ctx| {
            let mut w = self.workers[ctx.index()].lock().unwrap_or_else(|e| e.into_inner());
            executor::run(ivf, queries, params, self.inflight, &next, &mut w)
        });
        let wall_s = t0.elapsed().as_secs_f64();
        let mut done = Vec::with_capacity(queries.len() / self.index.info().dim);
        for r in per_thread {
            done.extend(r?);
        }
        done.sort_unstable_by_key(|d| d.at);
        let latencies_ms = done.iter().map(|d| d.ms).collect();
        let per_query = done.iter().map(|d| d.result.stats).collect();
        let results = self.index.collect(done.into_iter().map(|d| Ok(d.result)).collect(), params)?;
        Ok(Batch { results, latencies_ms, per_query, wall_s })
    }

    /// [`search`](Self::search) with `inflight` queries per wave on each thread.
    fn search_waves(&self, ivf: &Ivf, queries: &[f32], params: &SearchParams, inflight: usize) -> Result<Batch> {
        let d = self.index.info().dim;
        let t0 = Instant::now();
        let waves: Vec<(f64, usize, Result<pipeline::Wave>)> = self.pool.install(|| {
            queries
                .par_chunks(d * inflight)
                .map(|wave| {
                    let i = rayon::current_thread_index().unwrap_or(0);
                    let mut w = self.workers[i].lock().unwrap_or_else(|e| e.into_inner());
                    let rows: Vec<&[f32]> = wave.chunks(d).collect();
                    let t = Instant::now();
                    let r = pipeline::search_wave(ivf, &rows, params, &mut w);
                    (t.elapsed().as_secs_f64() * 1e3, rows.len(), r)
                })
                .collect()
        });
        let wall_s = t0.elapsed().as_secs_f64();
        let (mut latencies_ms, mut per_query, mut results) = (Vec::new(), Vec::new(), Vec::new());
        for (ms, n, r) in waves {
            let (found, stats) = r?;
            let share = |v: u64| v / n as u64;
            let each = SearchStats {
                bytes_read: share(stats.bytes_read),
                extents_read: share(stats.extents_read),
                reads: share(stats.reads),
                cache_hits: share(stats.cache_hits),
                cache_misses: share(stats.cache_misses),
                refine_pages: share(stats.refine_pages),
                io: stats.io,
            };
            latencies_ms.extend(std::iter::repeat_n(ms, found.len()));
            per_query.extend(std::iter::repeat_n(each, found.len()));
            results.extend(pipeline::unwave((found, stats)).map(Ok));
        }
        let results = self.index.collect(results, params)?;
        Ok(Batch { results, latencies_ms, per_query, wall_s })
    }

    /// Searches `queries` as one batch grouped by list, as faiss's batch search does: every
    /// query's coarse search, then each probed list once per pass (each query's closest list,
    /// then the rest), scanned for all the queries that probe it while its codes are in the
    /// CPU's caches, the lists shared out among the threads. The same results as [`search`](Self::search), at a higher rate when lists are
    /// probed by several queries of the batch; no per-query latency (a query's answer is
    /// ready only when the batch's is).
    ///
    /// Where grouping cannot pay — 8-bit codes, whose tables (32 KiB a query at PQ32) would
    /// crowd the lists out of the caches — the batch is answered query by query (same results,
    /// latencies still left out), in waves of a tile's rows where the coarse search is exact
    /// (their coarse searches then share the tiles).
    pub fn search_grouped(&self, queries: &[f32], params: &SearchParams) -> Result<Batch> {
        let Some(ivf) = self.index.ivf().filter(|i| i.groups_well()) else {
            let b = match self.index.ivf() {
                Some(ivf) if params.coarse == CoarseSearch::Exact => {
                    self.index.check_params(queries, params)?;
                    self.search_waves(ivf, queries, params, self.inflight.max(amx::ROWS))?
                }
                _ => self.search(queries, params)?,
            };
            return Ok(Batch { latencies_ms: Vec::new(), per_query: Vec::new(), ..b });
        };
        self.index.check_params(queries, params)?;
        let t0 = Instant::now();
        let (results, stats) = super::batch::search_grouped(ivf, queries, params, &self.pool, &self.workers)?;
        let wall_s = t0.elapsed().as_secs_f64();
        let mut results = self.index.collect(results.into_iter().map(Ok).collect(), params)?;
        results.stats = stats;
        Ok(Batch { results, latencies_ms: Vec::new(), per_query: Vec::new(), wall_s })
    }
}
