//! One query: probe the HNSW for the nprobe nearest lists, then scan every extent of those
//! lists into one top-k as the list store hands them over (from the cache, or from the device
//! as reads complete, checksum first). The steps per (query, list) are shared with the grouped
//! batch path (`batch.rs`), which visits the same pairs list by list.
//!
//! How a list's distances are assembled depends on the metric, the codec and whether faiss's
//! precomputed tables exist ([`ScanMode`]); every mode gives exact ADC distances.

use super::lists::Derived;
use super::{Index, SearchParams, SearchStats};
use crate::codec::{Codec, QueryTable, Scanner, Visitor};
use crate::distance::{self, Metric};
use crate::error::Result;
use crate::format::ExtentView;
use crate::hnsw::VisitedSet;
use crate::io;
use crate::topk::{Neighbor, TopK};

pub(crate) struct QueryResult {
    pub neighbors: Vec<Neighbor>,
    pub stats: SearchStats,
}

/// How a (query, list) pair's distances are put together. With r a code's reconstruction and
/// c the list's centroid:
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanMode {
    /// Codes of the vectors themselves (faiss's `by_residual = false`, `PQ{m}x4fs`): one
    /// table per query for every list (‖q_j − c_jk‖² or −⟨q_j, c_jk⟩), no bias.
    Direct,
    /// Inner product: −⟨q, c⟩ − ⟨q, r⟩: one table per query, a bias per list.
    Shared,
    /// L2, 4-bit codes, precomputed tables: ‖q − c‖² + Σ_j (‖r_j‖² + 2⟨c_j, r_j⟩) −
    /// 2⟨q, r⟩: the middle term is a per-vector number of the list (computed once per extent
    /// and kept with it in the cache), so the query's one table (−2⟨q_j, r_jk⟩, quantized once)
    /// serves every list.
    ListTerms,
    /// L2, 8-bit codes, precomputed tables: the list's part plus the query's part, added per
    /// list into one table (faiss's `use_precomputed_table`).
    Precomputed,
    /// L2 without precomputed tables: a table per list from the query's residual q − c.
    Residual,
}

impl ScanMode {
    pub fn of(metric: Metric, codec: &Codec, by_residual: bool, precomputed: bool) -> Self {
        match (metric, precomputed) {
            _ if !by_residual => ScanMode::Direct,
            (Metric::InnerProduct, _) => ScanMode::Shared,
            (_, true) if codec.takes_terms() => ScanMode::ListTerms,
            (_, true) => ScanMode::Precomputed,
            (_, false) => ScanMode::Residual,
        }
    }

    /// Whether one table per query serves every list (so a list can be scanned for several
    /// queries at once, each with its own table).
    pub fn one_table_per_query(self) -> bool {
        matches!(self, ScanMode::Direct | ScanMode::Shared | ScanMode::ListTerms)
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
    pub scratch: Option<Scratch>,
}

impl Worker {
    /// The scanning scratch, made for `index` on first use.
    pub fn parts(&mut self, index: &Index) -> (&mut io::Reader, &mut Scratch) {
        let scratch = self.scratch.get_or_insert_with(|| Scratch {
            table: index.codec.query_table(),
            table_for: None,
            residual: Vec::new(),
            terms: Vec::new(),
            scanner: index.codec.scanner(),
        });
        // `table_for` names a query by its address, which a later query may reuse.
        scratch.table_for = None;
        (&mut self.reader, scratch)
    }
}

/// A thread's per-list scratch: a list's table, the query's residual, a list's terms.
pub(crate) struct Scratch {
    table: QueryTable,
    /// The (query, list) `table` was built for: a list cut into several extents gets its
    /// table once, not once per extent.
    table_for: Option<(usize, usize)>,
    residual: Vec<f32>,
    terms: Vec<f32>,
    scanner: Scanner,
}

impl Scratch {
    /// Scans one extent of `list` for several queries that each bring their own table
    /// ([`PreparedQuery::shared_table`]): the list's terms once, each code block once per
    /// four queries.
    pub fn scan_many(
        &mut self,
        index: &Index,
        list: usize,
        view: &ExtentView,
        derived: Derived,
        visitors: &mut [Visitor],
    ) {
        let terms = list_terms(index, list, view, derived, &mut self.terms);
        self.scanner.scan_many(visitors, terms, view.codes, view.count, |i| view.id(i));
    }
}

/// A query made ready for its lists: normalised where the metric wants it, and its table
/// (the whole table for [`ScanMode::Direct`], [`ScanMode::Shared`] and [`ScanMode::ListTerms`], the query's half of
/// every list's table for [`ScanMode::Precomputed`], none for [`ScanMode::Residual`]).
pub(crate) struct PreparedQuery {
    pub q: Vec<f32>,
    table: Option<QueryTable>,
}

/// The query as the index compares it: normalised for cosine.
pub(crate) fn normalized(index: &Index, query: &[f32]) -> Vec<f32> {
    let mut q = query.to_vec();
    if index.info.metric.normalizes() {
        distance::normalize(&mut q);
    }
    q
}

pub(crate) fn prepare(index: &Index, query: &[f32]) -> PreparedQuery {
    prepare_normalized(index, normalized(index, query))
}

/// [`prepare`] for a query already [`normalized`].
pub(crate) fn prepare_normalized(index: &Index, q: Vec<f32>) -> PreparedQuery {
    let table = match index.scan_mode {
        ScanMode::Residual => None,
        mode => {
            let mut t = index.codec.query_table();
            if mode == ScanMode::Direct {
                index.lut.compute(index.coarse.metric, &q, &mut t.exact);
            } else if mode == ScanMode::Shared {
                index.lut.compute(Metric::InnerProduct, &q, &mut t.exact);
            } else {
                index.lut.cross_terms(&q, &mut t.exact);
            }
            t.ready();
            Some(t)
        }
    };
    PreparedQuery { q, table }
}

/// The per-vector terms of an extent of `list` under [`ScanMode::ListTerms`] (None in other
/// modes): kept with the cached extent (`derived`), or computed into `scratch`.
pub(crate) fn list_terms<'a>(
    index: &Index,
    list: usize,
    view: &ExtentView,
    derived: Derived<'a>,
    scratch: &'a mut Vec<f32>,
) -> Option<&'a [f32]> {
    if index.scan_mode != ScanMode::ListTerms {
        return None;
    }
    let pre = index.precomputed.as_ref().expect("ListTerms needs precomputed tables").of(list);
    let compute = |out: &mut Vec<f32>| index.codec.list_terms(pre, view.codes, view.count, out);
    Some(match derived {
        Some(slot) => slot.get_or_init(|| {
            let mut v = Vec::new();
            compute(&mut v);
            v
        }),
        None => {
            compute(scratch);
            scratch
        }
    })
}

impl PreparedQuery {
    /// The query's own table and its bias for `list` (`qc`: the coarse distance), in the modes
    /// where one table per query serves every list ([`ScanMode::one_table_per_query`]); None
    /// where each list needs its own.
    pub fn shared_table(&self, index: &Index, list: usize, qc: f32) -> Option<(&QueryTable, f32)> {
        let t = self.table.as_ref().filter(|_| index.scan_mode.one_table_per_query())?;
        let bias = match index.scan_mode {
            ScanMode::Shared => index.coarse.list_bias(&self.q, list),
            ScanMode::ListTerms => qc,
            _ => 0.0,
        };
        Some((t, bias))
    }

    /// Scans one extent of `list` (`qc`: the coarse search's distance to it, ‖q − c‖² for L2)
    /// into `top`. `derived` is where the extent's per-vector terms are kept when it is cached.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_extent(
        &self,
        index: &Index,
        list: usize,
        qc: f32,
        view: &ExtentView,
        derived: Derived,
        s: &mut Scratch,
        top: &mut TopK,
    ) {
        let ids = |i| view.id(i);
        if let Some((t, bias)) = self.shared_table(index, list, qc) {
            let terms = list_terms(index, list, view, derived, &mut s.terms);
            s.scanner.scan(t, bias, terms, view.codes, view.count, ids, top);
            return;
        }
        let key = (self as *const PreparedQuery as usize, list);
        let precomputed = self.table.as_ref().filter(|_| index.scan_mode == ScanMode::Precomputed);
        if s.table_for != Some(key) {
            match precomputed {
                Some(t) => {
                    let pre = index.precomputed.as_ref().expect("Precomputed needs precomputed tables");
                    pre.list_table(list, &t.exact, &mut s.table.exact);
                }
                None => {
                    // ‖q − c − r‖² = ‖(q − c) − r‖²: the table is built on the query's residual.
                    s.residual.resize(self.q.len(), 0.0);
                    index.coarse.residual(&self.q, list, &mut s.residual);
                    index.lut.compute(Metric::L2, &s.residual, &mut s.table.exact);
                }
            }
            s.table.ready();
            s.table_for = Some(key);
        }
        // With precomputed tables the list's bias is ‖q − c‖²; a residual table holds it all.
        let bias = if precomputed.is_some() { qc } else { 0.0 };
        s.scanner.scan(&s.table, bias, None, view.codes, view.count, ids, top);
    }
}

pub(crate) fn search_one(index: &Index, query: &[f32], p: &SearchParams, w: &mut Worker) -> Result<QueryResult> {
    let prepared = prepare(index, query);
    let probes = index.coarse.probe(&prepared.q, p.nprobe, p.ef_search, &mut w.visited);
    let (reader, scratch) = w.parts(index);
    let mut top = TopK::new(p.k);
    let stats = index.lists.scan_lists(&probes, reader, |list, qc, view, derived| {
        prepared.scan_extent(index, list, qc, &view, derived, scratch, &mut top);
    })?;
    Ok(QueryResult { neighbors: top.into_sorted_vec(), stats })
}
