//! Runs a query set at several settings and measures what users compare systems by: recall
//! against exact ground truth (faiss's definitions), per-query latency percentiles, QPS and
//! bytes read per query.

use quiver::{CoarseSearch, SearchParams, Searcher};

/// Ground truth: `depth` ids per query, row-major.
pub struct GroundTruth {
    pub ids: Vec<i32>,
    pub depth: usize,
}

/// One setting's figures.
pub struct Row {
    /// None for an index without lists (`HNSW{M},Flat`).
    pub nprobe: Option<usize>,
    pub ef: usize,
    /// Where the index re-ranks (`,RFlat`): candidates re-ranked per result; None otherwise.
    pub k_factor: Option<usize>,
    /// How the lists were found ("graph" or "exact"); None for an index without lists.
    pub coarse: Option<&'static str>,
    pub k: usize,
    pub recall_at_1: Option<f64>,
    pub one_recall_at_3: Option<f64>,
    pub recall_at_10: Option<f64>,
    /// The depth recall@10 was computed at when k or the ground truth is shallower than 10.
    pub recall_depth: Option<usize>,
    pub ms_mean: f64,
    /// None for a grouped batch, whose queries have no latency of their own.
    pub ms_p50: Option<f64>,
    pub ms_p99: Option<f64>,
    pub qps: f64,
    pub bytes_read_per_query: f64,
    pub io: &'static str,
    /// Share of extent look-ups the list cache answered in the timed pass (None: no cache).
    pub cache_hit_rate: Option<f64>,
    /// Results of the last run (ids, distances), for `--out`.
    pub ids: Vec<i64>,
    pub distances: Vec<f32>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Searches every query on its own (so each has a latency), `threads`-wide.
/// One setting to measure.
pub struct Setting {
    pub k: usize,
    pub nprobe: usize,
    pub ef: usize,
    /// faiss's k_factor (1 for an index that does not re-rank).
    pub k_factor: usize,
    /// Run every query once, untimed, first (a cache then holds what the timed pass asks for).
    pub warmup: bool,
    /// Search all queries as one batch grouped by list (no per-query latency).
    pub grouped: bool,
    /// Only these ids are returned.
    pub filter: Option<std::sync::Arc<quiver::IdFilter>>,
    /// How IVF indexes find their lists.
    pub coarse: CoarseSearch,
}

pub fn run(searcher: &Searcher, queries: &[f32], gt: Option<&GroundTruth>, s: &Setting) -> quiver::Result<Row> {
    let Setting { k, nprobe, ef, k_factor, warmup, grouped, .. } = *s;
    let d = searcher.index().info().dim;
    let nq = queries.len() / d;
    if nq == 0 {
        return Err(quiver::Error::InvalidParameter("no queries to search".into()));
    }
    let p = SearchParams { k, nprobe, ef_search: ef, k_factor, filter: s.filter.clone(), coarse: s.coarse };
    // Untimed warm-up: creates each worker's ring and scratch buffers; with `warmup`, every
    // query once (so a cache holds what the timed pass will ask for).
    let warm = if warmup { nq } else { 16.min(nq) };
    let search = |q: &[f32]| if grouped { searcher.search_grouped(q, &p) } else { searcher.search(q, &p) };
    search(&queries[..warm * d])?;
    let batch = search(queries)?;
    let wall = batch.wall_s;
    let mut lat = batch.latencies_ms;
    let st = batch.results.stats;
    let (bytes, hits, misses) = (st.bytes_read, st.cache_hits, st.cache_misses);
    let io = st.io.map_or("none", |e| e.name());
    let (ids, distances) = (batch.results.ids, batch.results.distances);
    // Grouped: a query's share of the batch's wall time (as faiss's batch ms/query).
    let mean = if lat.is_empty() { wall * 1e3 / nq as f64 } else { lat.iter().sum::<f64>() / nq as f64 };
    lat.sort_by(f64::total_cmp);
    let mut row = Row {
        nprobe: (!searcher.index().info().is_graph()).then_some(nprobe),
        ef,
        k_factor: searcher.index().info().refine.map(|_| k_factor),
        coarse: (!searcher.index().info().is_graph()).then_some(s.coarse.name()),
        k,
        recall_at_1: None,
        one_recall_at_3: None,
        recall_at_10: None,
        recall_depth: None,
        ms_mean: mean,
        ms_p50: (!lat.is_empty()).then(|| percentile(&lat, 0.5)),
        ms_p99: (!lat.is_empty()).then(|| percentile(&lat, 0.99)),
        qps: nq as f64 / wall,
        bytes_read_per_query: bytes as f64 / nq as f64,
        io,
        cache_hit_rate: searcher.index().cache_stats().map(|_| {
            if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            }
        }),
        ids,
        distances,
    };
    if let Some(gt) = gt {
        let depth = gt.depth.min(k).min(10);
        let (mut r1, mut r3, mut r10) = (0usize, 0usize, 0usize);
        for q in 0..nq {
            let res = &row.ids[q * k..(q + 1) * k];
            let truth = &gt.ids[q * gt.depth..(q + 1) * gt.depth];
            let nn = truth[0] as i64;
            r1 += (res[0] == nn) as usize;
            r3 += res[..k.min(3)].contains(&nn) as usize;
            r10 += res[..depth].iter().filter(|&&id| id >= 0 && truth[..depth].contains(&(id as i32))).count();
        }
        row.recall_at_1 = Some(r1 as f64 / nq as f64);
        row.one_recall_at_3 = Some(r3 as f64 / nq as f64);
        row.recall_at_10 = Some(r10 as f64 / (nq * depth) as f64);
        if depth < 10 {
            row.recall_depth = Some(depth);
        }
    }
    Ok(row)
}
