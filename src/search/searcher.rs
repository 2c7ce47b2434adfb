//! A searcher: an index with its own thread pool and one worker (reader, ring, scratch) per
//! thread, answering batches with per-query latency and statistics. The CLI's measurements go
//! through it; a server keeps one for its life.

use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use super::pipeline::{self, Worker};
use super::{Index, SearchParams, SearchResults, SearchStats};
use crate::error::{Error, Result};

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
        Ok(Searcher { index, pool, workers })
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
        let d = self.index.info().dim;
        let t0 = Instant::now();
        let timed: Vec<(f64, Result<pipeline::QueryResult>)> = self.pool.install(|| {
            queries
                .par_chunks(d)
                .map(|q| {
                    let i = rayon::current_thread_index().unwrap_or(0);
                    let mut w = self.workers[i].lock().unwrap_or_else(|e| e.into_inner());
                    let t = Instant::now();
                    let r = pipeline::search_one(self.index, q, params, &mut w);
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

    /// Searches `queries` as one batch grouped by list, as faiss's batch search does: every
    /// query's coarse search, then each probed list once per pass (each query's closest list,
    /// then the rest), scanned for all the queries that probe it while its codes are in the
    /// CPU's caches, the lists shared out among the threads. The same results as [`search`](Self::search), at a higher rate when lists are
    /// probed by several queries of the batch; no per-query latency (a query's answer is
    /// ready only when the batch's is).
    ///
    /// Where grouping cannot pay — 8-bit codes, whose tables (32 KiB a query at PQ32) would
    /// crowd the lists out of the caches — the batch is answered query by query (same results,
    /// latencies still left out).
    pub fn search_grouped(&self, queries: &[f32], params: &SearchParams) -> Result<Batch> {
        if !self.index.groups_well() {
            let b = self.search(queries, params)?;
            return Ok(Batch { latencies_ms: Vec::new(), per_query: Vec::new(), ..b });
        }
        self.index.check_params(queries, params)?;
        let t0 = Instant::now();
        let (results, stats) = super::batch::search_grouped(self.index, queries, params, &self.pool, &self.workers)?;
        let wall_s = t0.elapsed().as_secs_f64();
        let mut results = self.index.collect(results.into_iter().map(Ok).collect(), params)?;
        results.stats = stats;
        Ok(Batch { results, latencies_ms: Vec::new(), per_query: Vec::new(), wall_s })
    }
}
