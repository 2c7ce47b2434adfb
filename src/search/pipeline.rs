//! One query: probe the HNSW for the nprobe nearest lists, then scan every extent of those
//! lists into one top-k as the list store hands them over (from the cache, or from the device
//! as reads complete, checksum first). The steps per (query, list) are shared with the grouped
//! batch path (`batch.rs`), which visits the same pairs list by list.
//!
//! How a list's distances are assembled depends on the metric and on whether codes are of
//! residuals ([`ScanMode`]); every mode gives exact ADC distances.

use super::lists::{Derived, Probe};
use super::refine::PageReads;
use super::{Ivf, SearchParams, SearchStats};
use crate::codec::{ListCodes, QueryTable, Scanner, Visitor};
use crate::distance::{self, Metric};
use crate::error::Result;
use crate::format::{ExtentView, IdsPlace};
use crate::hnsw::VisitedSet;
use crate::io;
use crate::ivf::{CoarseSearch, ScreenScratch};
use crate::topk::{Neighbor, TopK};

pub(crate) struct QueryResult {
    pub neighbors: Vec<Neighbor>,
    pub stats: SearchStats,
}

/// How a (query, list) pair's distances are put together: always one table per query that
/// serves every list (so a list can be scanned for several queries at once). With r a code's
/// reconstruction and c the list's centroid:
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanMode {
    /// Codes of the vectors themselves (faiss's `by_residual = false`, `PQ{m}x4fs`): the
    /// table is ‖q_j − c_jk‖² or −⟨q_j, c_jk⟩, no bias.
    Direct,
    /// Inner product: −⟨q, c⟩ − ⟨q, r⟩: a bias per list.
    Shared,
    /// L2 of residual codes: ‖q − c‖² + Σ_j (‖r_j‖² + 2⟨c_j, r_j⟩) − 2⟨q, r⟩. The middle term
    /// is one number per vector of the list, computed from the list's part of faiss's
    /// precomputed tables once per cached extent and kept with it (and per fast-scan extent
    /// read from the device), so the query's one table (−2⟨q_j, r_jk⟩) serves every list, where
    /// faiss builds or assembles a table per probed list. An 8-bit extent read from the device
    /// is scanned with its list's own table instead (see [`PreparedQuery::scan_extent`]).
    ListTerms,
}

impl ScanMode {
    pub fn of(metric: Metric, by_residual: bool) -> Self {
        match metric.kernel() {
            _ if !by_residual => ScanMode::Direct,
            Metric::InnerProduct => ScanMode::Shared,
            _ => ScanMode::ListTerms,
        }
    }

    /// Bytes per vector a cached extent keeps for what scans derive from it.
    pub fn derived_per_vector(self) -> u64 {
        if self == ScanMode::ListTerms {
            4
        } else {
            0
        }
    }
}

/// What one search thread reuses from query to query: its reader (ring and buffers), visited
/// marks, and its scanning scratch. Owned by a [`super::Searcher`] or lent by the index to
/// [`Index::search`]; never a thread-local.
#[derive(Default)]
pub(crate) struct Worker {
    pub reader: io::Reader,
    pub visited: VisitedSet,
    /// The exact coarse search's buffers.
    pub screen: ScreenScratch,
    pub scratch: Option<Scratch>,
    /// A graph index's query: its normalised copy and PQ table.
    pub graph: super::graph::GraphScratch,
}

impl Worker {
    /// The scanning scratch, made for `index` on first use.
    pub fn parts(&mut self, index: &Ivf) -> (&mut io::Reader, &mut Scratch) {
        (&mut self.reader, scratch_for(index, &mut self.scratch))
    }
}

/// A worker's scanning scratch, made for `index` on first use, with no query's table in it.
pub(crate) fn scratch_for<'w>(index: &Ivf, scratch: &'w mut Option<Scratch>) -> &'w mut Scratch {
    let scratch = scratch.get_or_insert_with(|| Scratch {
        table: index.codec.query_table().rows_only(),
        table_for: None,
        terms: Terms { part: vec![0.0; index.codec.table_len()], part_of: None, terms: Vec::new() },
        scanner: index.codec.scanner(),
    });
    scratch.forget_table();
    scratch
}

/// A thread's scanning scratch.
pub(crate) struct Scratch {
    /// A (query, list)'s own table, for 8-bit lists read from the device (see
    /// [`PreparedQuery::scan_extent`]).
    table: QueryTable,
    /// The (query, list) `table` was built for: a list cut into several extents gets its
    /// table once, not once per extent.
    table_for: Option<(usize, usize)>,
    terms: Terms,
    scanner: Scanner,
}

/// Where an extent's per-vector terms are computed when it is not cached.
struct Terms {
    /// [`LutBuilder::list_part`](crate::pq::LutBuilder::list_part) of list `part_of`, where
    /// the index keeps no precomputed tables: a list cut into several extents gets it once.
    part: Vec<f32>,
    part_of: Option<usize>,
    terms: Vec<f32>,
}

impl Scratch {
    /// Forgets which (query, list) its table was built for: `table_for` names a query by its
    /// address, which a later query may reuse.
    pub fn forget_table(&mut self) {
        self.table_for = None;
    }

    /// Scans one extent of `list` for several queries, each with its own table
    /// ([`PreparedQuery::table_for`]): the list's terms once, each fast-scan code block once per
    /// four queries.
    pub fn scan_many(
        &mut self,
        index: &Ivf,
        (list, x): (usize, u32),
        view: &ExtentView,
        derived: Derived,
        visitors: &mut [Visitor],
        ahead: &[u8],
    ) {
        let transposed = transposed(index, view, derived);
        let terms = self.terms.of(index, list, view, derived);
        let codes = ListCodes { arranged: view.codes, transposed, ahead };
        self.scanner.scan_many(visitors, terms, codes, view.count, id_of(view, x));
    }
}

/// The id a scan gives vector `i` of extent `x`: the extent's own where the view holds them;
/// otherwise (the index keeps its ids with the vectors, and the scan filters by none) its place
/// `x << 32 | i`, which the re-rank turns into the id the vector's record carries.
fn id_of<'v>(view: &'v ExtentView<'v>, x: u32) -> impl Fn(usize) -> u64 + Copy + 'v {
    let has = view.has_ids();
    move |i| if has { view.id(i) } else { (x as u64) << 32 | i as u64 }
}

/// The ids of extents read from where the index keeps them apart from its lists, by extent
/// number (see [`ids_for`]).
pub(crate) struct IdsOf {
    xs: Vec<u32>,
    ids: Vec<Vec<u8>>,
}

impl IdsOf {
    /// `view` of extent `x` with its ids.
    pub fn attach<'a>(&'a self, x: u32, view: ExtentView<'a>) -> ExtentView<'a> {
        match self.xs.binary_search(&x) {
            Ok(j) => view.with_ids(&self.ids[j]),
            Err(_) => view,
        }
    }
}

/// Where the index keeps its ids with the vectors and a scan must know them — to pass over
/// what `p.filter` does not allow or the index has deleted, so that the shortlist holds as many
/// candidates as it would otherwise — the ids of every extent of `lists`: from the list cache
/// where it holds them, the others read in one round before the lists' and offered to it
/// (None where the scan needs none).
pub(crate) fn ids_for(
    index: &Ivf,
    p: &SearchParams,
    lists: impl IntoIterator<Item = usize>,
    reader: &mut io::Reader,
    stats: &mut SearchStats,
) -> Result<Option<IdsOf>> {
    let Some(mut plan) = ids_plan(index, p, lists)? else { return Ok(None) };
    if let Some(vectors) = &index.vectors {
        vectors.read(&mut plan.reads, reader, stats)?;
    }
    Ok(Some(plan.finish(index)))
}

/// [`ids_for`] in two halves: what the cache holds, and the reads of the rest
/// ([`IdsPlan::reads`]); once they have arrived, [`IdsPlan::finish`].
pub(crate) struct IdsPlan<'s> {
    xs: Vec<u32>,
    ids: Vec<Vec<u8>>,
    /// Which of `xs` the cache did not hold, and those extents.
    missing: Vec<usize>,
    wanted: Vec<u32>,
    pub reads: PageReads<'s>,
}

/// The first half of [`ids_for`] (None where the scan needs no ids).
pub(crate) fn ids_plan<'s>(
    index: &'s Ivf,
    p: &SearchParams,
    lists: impl IntoIterator<Item = usize>,
) -> Result<Option<IdsPlan<'s>>> {
    let filters = p.filter.is_some() || index.hidden.as_ref().is_some_and(|h| !h.is_empty());
    let (Some(vectors), true) = (&index.vectors, filters && index.lists.directory.ids == IdsPlace::WithVectors) else {
        return Ok(None);
    };
    let d = &index.lists.directory;
    let mut xs: Vec<u32> = lists.into_iter().flat_map(|l| d.list_starts[l]..d.list_starts[l + 1]).collect();
    xs.sort_unstable();
    xs.dedup();
    // A block of ids is cached as entry n_extents + x (its bytes copied out: the cache's view
    // may not be held while the lists' reads offer theirs).
    let mut ids: Vec<Vec<u8>> = vec![Vec::new(); xs.len()];
    let mut missing: Vec<usize> = Vec::new();
    match &index.lists.cache {
        Some(cache) => {
            let view = cache.view();
            for (j, &x) in xs.iter().enumerate() {
                match view.get(ids_key(index, x)) {
                    Some(c) => ids[j] = c.bytes.clone(),
                    None => missing.push(j),
                }
            }
        }
        None => missing.extend(0..xs.len()),
    }
    let wanted: Vec<u32> = missing.iter().map(|&j| xs[j]).collect();
    let reads = vectors.id_reads(d, &wanted)?;
    Ok(Some(IdsPlan { xs, ids, missing, wanted, reads }))
}

/// The list cache's entry for extent `x`'s block of ids.
fn ids_key(index: &Ivf, x: u32) -> u32 {
    index.lists.directory.extents.len() as u32 + x
}

impl IdsPlan<'_> {
    /// The ids, once [`reads`](Self::reads) have all arrived; the blocks read are offered to
    /// the cache.
    pub fn finish(self, index: &Ivf) -> IdsOf {
        let IdsPlan { xs, mut ids, missing, wanted, reads } = self;
        if let Some(vectors) = &index.vectors {
            let read = vectors.ids_from(&index.lists.directory, &wanted, &reads);
            for (j, bytes) in missing.into_iter().zip(read) {
                if let Some(cache) = &index.lists.cache {
                    cache.offer(ids_key(index, xs[j]), &bytes, 0);
                }
                ids[j] = bytes;
            }
        }
        IdsOf { xs, ids }
    }
}

/// A cached extent's codes transposed for the 8-bit kernel, made on its first scan (None where
/// the codec keeps no such copy, or for an extent read for one query alone).
fn transposed<'a>(index: &Ivf, view: &ExtentView, derived: Derived<'a>) -> Option<&'a [u8]> {
    let cached = derived.filter(|_| index.codec.transposes())?;
    Some(cached.arranged.get_or_init(|| index.codec.transpose(view.codes, view.count)))
}

impl Terms {
    /// List `list`'s part of its distances: kept by the index, or computed into `part`
    /// (`part_of` names the list it holds).
    fn part<'a>(index: &'a Ivf, list: usize, part: &'a mut [f32], part_of: &mut Option<usize>) -> &'a [f32] {
        match &index.precomputed {
            Some(tables) => tables.of(list),
            None => {
                if let (Some(lut), true) = (&index.lut, *part_of != Some(list)) {
                    lut.list_part(index.coarse.centroid(list), part);
                    *part_of = Some(list);
                }
                part
            }
        }
    }

    /// The per-vector terms of an extent of `list` under [`ScanMode::ListTerms`] (None in other
    /// modes): kept with the cached extent (`derived`), or computed into scratch. Either way
    /// from the same table by the same sums, so a cached list ranks as a read one does.
    fn of<'a>(&'a mut self, index: &Ivf, list: usize, view: &ExtentView, derived: Derived<'a>) -> Option<&'a [f32]> {
        if index.scan_mode != ScanMode::ListTerms {
            return None;
        }
        if let Some(kept) = derived.and_then(|c| c.derived.get()) {
            return Some(kept);
        }
        let part = Terms::part(index, list, &mut self.part, &mut self.part_of);
        match derived {
            Some(c) => Some(c.derived.get_or_init(|| {
                let mut terms = Vec::new();
                index.codec.list_terms(part, view.codes, view.count, &mut terms);
                terms
            })),
            None => {
                index.codec.list_terms(part, view.codes, view.count, &mut self.terms);
                Some(&self.terms)
            }
        }
    }
}

/// A query made ready for its lists: normalised where the metric wants it, and its one table.
pub(crate) struct PreparedQuery {
    pub q: Vec<f32>,
    table: QueryTable,
}

/// The query as the index compares it: normalised for cosine.
pub(crate) fn normalized(index: &Ivf, query: &[f32]) -> Vec<f32> {
    let mut q = query.to_vec();
    if index.info.metric.normalizes() {
        distance::normalize(&mut q);
    }
    q
}

pub(crate) fn prepare(index: &Ivf, query: &[f32]) -> PreparedQuery {
    prepare_normalized(index, normalized(index, query))
}

/// [`prepare`] for a query already [`normalized`].
pub(crate) fn prepare_normalized(index: &Ivf, q: Vec<f32>) -> PreparedQuery {
    let mut table = index.codec.query_table();
    if index.lists.cache.is_none() {
        // No list is kept in RAM, so none has a transposed copy to use a quantized table with.
        table = table.rows_only();
    }
    match (&index.lut, index.scan_mode) {
        // Raw vectors: the "table" is the query itself.
        (None, _) => table.exact.copy_from_slice(&q),
        (Some(lut), ScanMode::Direct) => lut.compute(index.coarse.metric, &q, &mut table.exact),
        (Some(lut), ScanMode::Shared) => lut.compute(Metric::InnerProduct, &q, &mut table.exact),
        (Some(lut), ScanMode::ListTerms) => lut.cross_terms(&q, &mut table.exact),
    }
    table.ready();
    PreparedQuery { q, table }
}

impl PreparedQuery {
    /// The query's table and its bias for a list whose coarse distance is `qc` (‖q − c‖² for
    /// L2, −⟨q, c⟩ for inner product: the very term a list adds, so it is taken as found).
    pub fn table_for(&self, index: &Ivf, qc: f32) -> (&QueryTable, f32) {
        let bias = match index.scan_mode {
            ScanMode::Shared | ScanMode::ListTerms => qc,
            ScanMode::Direct => 0.0,
        };
        (&self.table, bias)
    }

    /// Scans one extent of `list` (`qc`: the coarse search's distance to it) into `top`.
    /// `derived` is where what is derived from the extent is kept when it is cached; `ahead`,
    /// the codes the next scan will read, for this one to prefetch on the way.
    pub fn scan_extent(
        &self,
        index: &Ivf,
        (list, x): (usize, u32),
        qc: f32,
        (view, derived, ahead): (&ExtentView, Derived, &[u8]),
        s: &mut Scratch,
        top: &mut TopK,
    ) {
        let (table, bias) = self.table_for(index, qc);
        if index.scan_mode == ScanMode::ListTerms && derived.is_none() && !index.codec.is_fast_scan() {
            // An 8-bit extent read from the device for this query alone: its terms would cost
            // one more pass over its codes (an 8-bit look-up per sub-code), the list's own
            // table (its part plus the query's) only m·256 additions. The same distances to
            // float rounding, as faiss's precomputed tables give.
            let key = (self as *const PreparedQuery as usize, list);
            if s.table_for != Some(key) {
                let part = Terms::part(index, list, &mut s.terms.part, &mut s.terms.part_of);
                for ((e, &a), &b) in s.table.exact.iter_mut().zip(part).zip(&table.exact) {
                    *e = a + b;
                }
                s.table.ready();
                s.table_for = Some(key);
            }
            s.scanner.scan(&s.table, bias, None, ListCodes::new(view.codes), view.count, id_of(view, x), top);
            return;
        }
        let transposed = transposed(index, view, derived);
        let terms = s.terms.of(index, list, view, derived);
        let codes = ListCodes { arranged: view.codes, transposed, ahead };
        s.scanner.scan(table, bias, terms, codes, view.count, id_of(view, x), top);
    }
}

pub(crate) fn search_one(index: &Ivf, query: &[f32], p: &SearchParams, w: &mut Worker) -> Result<QueryResult> {
    let prepared = prepare(index, query);
    let probes = probe_all(index, &prepared.q, p, w).pop().unwrap_or_default();
    let (reader, scratch) = w.parts(index);
    let mut top = top_k(index, p);
    let mut ids_cost = SearchStats::default();
    let ids = ids_for(index, p, probes.iter().map(|n| n.id as usize), reader, &mut ids_cost)?;
    let mut stats = index.lists.scan_lists(&probes, reader, |list, x, qc, view, derived, ahead| {
        let view = match &ids {
            Some(ids) => ids.attach(x, view),
            None => view,
        };
        top.set_extent(x);
        prepared.scan_extent(index, (list, x), qc, (&view, derived, ahead), scratch, &mut top);
    })?;
    stats.add(&ids_cost);
    finish(index, &prepared.q, p, top, reader, stats)
}

/// A wave's answers (one per query, in order) and what the wave cost.
pub(crate) type Wave = (Vec<Vec<Neighbor>>, SearchStats);

/// Searches `queries` (each a row) together on one worker: every coarse search first, then
/// the reads of all their lists in flight at once, each list scanned for its query as its
/// bytes arrive (cached ones first, while the device works), then the re-rank of all of them
/// in one round of reads. The same results as [`search_one`] for each; the stats are the
/// wave's.
pub(crate) fn search_wave(index: &Ivf, queries: &[&[f32]], p: &SearchParams, w: &mut Worker) -> Result<Wave> {
    let prepared: Vec<PreparedQuery> = queries.iter().map(|q| prepare(index, q)).collect();
    let mut probes = Vec::with_capacity(queries.len() * p.nprobe);
    let rows: Vec<f32> = prepared.iter().flat_map(|q| q.q.iter().copied()).collect();
    for (owner, found) in probe_all(index, &rows, p, w).into_iter().enumerate() {
        probes.extend(found.iter().map(|n| Probe { owner: owner as u32, list: n.id as u32, qc: n.dist }));
    }
    let (reader, scratch) = w.parts(index);
    let mut tops: Vec<TopK> = prepared.iter().map(|_| top_k(index, p)).collect();
    let mut ids_cost = SearchStats::default();
    let ids = ids_for(index, p, probes.iter().map(|p| p.list as usize), reader, &mut ids_cost)?;
    let mut stats = index.lists.scan_probes(probes, reader, |owner, list, x, qc, view, derived, ahead| {
        let view = match &ids {
            Some(ids) => ids.attach(x, view),
            None => view,
        };
        let (q, top) = (&prepared[owner as usize], &mut tops[owner as usize]);
        top.set_extent(x);
        q.scan_extent(index, (list, x), qc, (&view, derived, ahead), scratch, top);
    })?;
    stats.add(&ids_cost);
    let out = match &index.vectors {
        // All the wave's re-rank pages in one submission.
        Some(v) => {
            let placed: Vec<Vec<(Neighbor, u64)>> = tops.into_iter().map(TopK::into_sorted_placed).collect();
            let asks: Vec<super::refine::Ask> =
                prepared.iter().zip(&placed).map(|(q, c)| (q.q.as_slice(), c.as_slice())).collect();
            v.rerank_many(&index.lists.directory, &asks, p.k, reader, &mut stats)?
        }
        None => tops.into_iter().map(TopK::into_sorted_vec).collect(),
    };
    Ok((out, stats))
}

/// A wave's answers as per-query results, in order, the wave's exact totals riding on its
/// first query so that a batch's add up.
pub(crate) fn unwave((found, stats): Wave) -> impl Iterator<Item = QueryResult> {
    found.into_iter().enumerate().map(move |(j, neighbors)| QueryResult {
        neighbors,
        stats: if j == 0 { stats } else { SearchStats::default() },
    })
}

/// The lists each row of `queries` (normalised) probes, closest first, found as `p.coarse`
/// says.
pub(crate) fn probe_all(index: &Ivf, queries: &[f32], p: &SearchParams, w: &mut Worker) -> Vec<Vec<Neighbor>> {
    probe_rows(index, queries, p, &mut w.visited, &mut w.screen)
}

/// [`probe_all`] with a worker's coarse-search scratch lent apart.
pub(crate) fn probe_rows(
    index: &Ivf,
    queries: &[f32],
    p: &SearchParams,
    visited: &mut VisitedSet,
    screen: &mut ScreenScratch,
) -> Vec<Vec<Neighbor>> {
    match p.coarse {
        CoarseSearch::Exact => index.coarse.probe_exact(queries, p.nprobe, screen),
        CoarseSearch::Graph => queries
            .chunks_exact(index.info.dim)
            .map(|q| index.coarse.probe(q, p.nprobe, p.ef_search, visited))
            .collect(),
    }
}

/// A query's top-k over the codes: the [`shortlist`] it keeps, taking only what `p.filter`
/// allows and the index has not deleted.
pub(crate) fn top_k(index: &Ivf, p: &SearchParams) -> TopK {
    TopK::new(shortlist(index, p)).filtered(p.filter.clone()).hiding(index.hidden.clone())
}

/// How many candidates the codes choose: k, or k × k_factor where they are re-ranked.
pub(crate) fn shortlist(index: &Ivf, p: &SearchParams) -> usize {
    if index.vectors.is_some() {
        p.k.saturating_mul(p.k_factor)
    } else {
        p.k
    }
}

/// A query's answer from the codes' shortlist `top`: re-ranked by exact distance where the
/// index keeps full vectors (one round of reads through `reader`), as it is otherwise.
pub(crate) fn finish(
    index: &Ivf,
    q: &[f32],
    p: &SearchParams,
    top: TopK,
    reader: &mut io::Reader,
    mut stats: SearchStats,
) -> Result<QueryResult> {
    let neighbors = match &index.vectors {
        Some(v) => {
            let candidates = top.into_sorted_placed();
            v.rerank(&index.lists.directory, q, &candidates, p.k, reader, &mut stats)?
        }
        None => top.into_sorted_vec(),
    };
    Ok(QueryResult { neighbors, stats })
}
