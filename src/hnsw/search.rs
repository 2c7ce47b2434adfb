//! Greedy descent through the upper levels, then a best-first search of width `ef` on level 0.

use super::Hnsw;
use crate::distance::{self, Metric, F16};
use crate::topk::Neighbor;

/// Visited marks reused across searches: a generation counter instead of clearing `n` flags, in
/// one byte per node (a quarter of the cache a u32 mark takes; cleared once every 255 searches).
#[derive(Clone, Debug, Default)]
pub struct VisitedSet {
    marks: Vec<u8>,
    generation: u8,
}

impl VisitedSet {
    pub fn new(n: usize) -> Self {
        VisitedSet { marks: vec![0; n], generation: 0 }
    }

    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// Marks `i`; returns whether it was already marked.
    #[inline]
    fn check_and_mark(&mut self, i: u32) -> bool {
        let m = &mut self.marks[i as usize];
        let seen = *m == self.generation;
        *m = self.generation;
        seen
    }
}

/// The vectors a graph indexes: row `i` of an n × d slice, compared under `metric` (the
/// kernel metric: L2 or inner product).
#[derive(Clone, Copy, Debug)]
pub struct Points<'a> {
    pub data: &'a [f32],
    pub d: usize,
    pub metric: Metric,
}

/// Where a graph's distances come from: `len` nodes, and the dissimilarity between two of
/// them. Construction needs nothing else, so the same builder serves a graph over centroids, over
/// raw vectors (`HNSW32,Flat`) or over codes.
pub trait Space: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Dissimilarity between nodes `i` and `j` (smaller is closer).
    fn between(&self, i: u32, j: u32) -> f32;
    /// Dissimilarities from node `i` to four nodes; equal to four calls of `between`.
    fn between_4(&self, i: u32, js: [u32; 4]) -> [f32; 4] {
        js.map(|j| self.between(i, j))
    }
    /// Starts loading node `j`'s data (a hint; construction's walks ask ahead as searches do).
    fn prefetch(&self, _j: u32) {}
}

/// A query's distances to nodes, one at a time or four at a time (the graph walks ask for a
/// node's unvisited neighbours in fours; four independent accumulations run about twice as fast
/// as one).
pub(crate) trait QueryDist {
    fn one(&self, i: u32) -> f32;
    fn four(&self, i: [u32; 4]) -> [f32; 4];
    /// Starts loading node `i`'s data (a hint).
    fn prefetch(&self, _i: u32) {}
}

/// How much of a neighbour's row a walk asks for ahead of computing its distance: the first
/// 256 bytes start the stream; asking for all of a long row (1.5 KiB at d = 384) fills the
/// CPU's miss queue and stalls the walk on the prefetches themselves.
const PREFETCH_BYTES: usize = 256;
const PREFETCH_FLOATS: usize = PREFETCH_BYTES / 4;

/// A query vector against a point set.
pub(crate) struct ToQuery<'a> {
    pub sp: Points<'a>,
    pub q: &'a [f32],
}

impl QueryDist for ToQuery<'_> {
    #[inline]
    fn one(&self, i: u32) -> f32 {
        self.sp.dist(self.q, i)
    }
    #[inline]
    fn four(&self, i: [u32; 4]) -> [f32; 4] {
        let r = |k: usize| self.sp.row(i[k]);
        distance::dissimilarity_4(self.sp.metric, self.q, [r(0), r(1), r(2), r(3)])
    }
    #[inline]
    fn prefetch(&self, i: u32) {
        let row = self.sp.row(i);
        distance::prefetch(&row[..row.len().min(PREFETCH_FLOATS)])
    }
}

/// A node of a space against the others (construction).
pub(crate) struct ToNode<'a, S: Space> {
    pub sp: &'a S,
    pub node: u32,
}

impl<S: Space> QueryDist for ToNode<'_, S> {
    #[inline]
    fn one(&self, i: u32) -> f32 {
        self.sp.between(self.node, i)
    }
    #[inline]
    fn four(&self, i: [u32; 4]) -> [f32; 4] {
        self.sp.between_4(self.node, i)
    }
    #[inline]
    fn prefetch(&self, i: u32) {
        self.sp.prefetch(i)
    }
}

impl Points<'_> {
    #[inline]
    pub fn row(&self, i: u32) -> &[f32] {
        &self.data[i as usize * self.d..(i as usize + 1) * self.d]
    }

    #[inline]
    pub fn dist(&self, q: &[f32], i: u32) -> f32 {
        distance::dissimilarity(self.metric, q, self.row(i))
    }
}

impl Space for Points<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.d.max(1)
    }

    #[inline]
    fn between(&self, i: u32, j: u32) -> f32 {
        distance::dissimilarity(self.metric, self.row(i), self.row(j))
    }

    #[inline]
    fn between_4(&self, i: u32, js: [u32; 4]) -> [f32; 4] {
        let r = |k: usize| self.row(js[k]);
        distance::dissimilarity_4(self.metric, self.row(i), [r(0), r(1), r(2), r(3)])
    }
    #[inline]
    fn prefetch(&self, j: u32) {
        let row = self.row(j);
        distance::prefetch(&row[..row.len().min(PREFETCH_FLOATS)])
    }
}

/// [`Points`] held as float16 ([`F16`]): what an HNSW build walks, half the bytes per
/// distance. The graph only compares distances with one another, so the rows may be scaled by
/// any positive factor first (to fit float16's range) without changing one decision.
#[derive(Clone, Copy, Debug)]
pub struct HalfPoints<'a> {
    pub data: &'a [F16],
    pub d: usize,
    pub metric: Metric,
}

impl HalfPoints<'_> {
    #[inline]
    fn row(&self, i: u32) -> &[F16] {
        &self.data[i as usize * self.d..(i as usize + 1) * self.d]
    }
}

impl Space for HalfPoints<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.d.max(1)
    }

    #[inline]
    fn between(&self, i: u32, j: u32) -> f32 {
        distance::dissimilarity_h(self.metric, self.row(i), self.row(j))
    }

    #[inline]
    fn between_4(&self, i: u32, js: [u32; 4]) -> [f32; 4] {
        let r = |k: usize| self.row(js[k]);
        distance::dissimilarity_h_4(self.metric, self.row(i), [r(0), r(1), r(2), r(3)])
    }

    #[inline]
    fn prefetch(&self, j: u32) {
        let row = zerocopy::IntoBytes::as_bytes(self.row(j));
        distance::prefetch_bytes(&row[..row.len().min(PREFETCH_BYTES)])
    }
}

/// A search's heap entry: half the size of a `Neighbor` (u32 id), ordered the same way (distance,
/// then id), so heaps of them move less memory.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cand {
    dist: f32,
    id: u32,
}

impl Eq for Cand {}

impl Ord for Cand {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.dist.total_cmp(&other.dist).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Cand {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A walk's frontier: the `cap` closest nodes offered so far, kept sorted closest first, each
/// expanded or not. A newcomer closer than the farthest entry evicts it, and what remains at the
/// end is the walk's answer. This is faiss's bounded candidate queue (`MinimaxHeap`) and the
/// walk's result heap in one array: both held the `cap` closest nodes seen. Sorted, each of the
/// walk's questions is cheap: a newcomer that cannot enter costs one compare against the last
/// entry, the closest unexpanded entry lies at or after a cursor, and a count of entries below
/// a distance is a binary search.
struct Frontier {
    cap: usize,
    entries: Vec<(Cand, bool)>,
    /// No entry before this index is unexpanded.
    next: usize,
    /// Scratch for [`offer_all`](Self::offer_all).
    merged: Vec<(Cand, bool)>,
}

impl Frontier {
    fn new(cap: usize, first: Cand) -> Self {
        let mut entries = Vec::with_capacity(cap + 1);
        entries.push((first, false));
        Frontier { cap: cap.max(1), entries, next: 0, merged: Vec::with_capacity(cap + 1) }
    }

    /// Whether an offer of `c` could enter.
    #[inline]
    fn admits(&self, c: Cand) -> bool {
        self.entries.len() < self.cap || c < self.entries[self.cap - 1].0
    }

    /// Offers each of `new` (distinct ids, none held): the frontier keeps the `cap` closest of
    /// what it held and `new`, as offering them one at a time would, in one merge instead of
    /// a shifting insert each (one expansion offers up to 2·M nodes).
    fn offer_all(&mut self, new: &mut [Cand]) {
        if new.is_empty() {
            return;
        }
        new.sort_unstable();
        self.merged.clear();
        let (mut i, mut j) = (0, 0);
        let mut first_new = usize::MAX;
        while self.merged.len() < self.cap && (i < self.entries.len() || j < new.len()) {
            if j < new.len() && (i == self.entries.len() || new[j] < self.entries[i].0) {
                first_new = first_new.min(self.merged.len());
                self.merged.push((new[j], false));
                j += 1;
            } else {
                self.merged.push(self.entries[i]);
                i += 1;
            }
        }
        std::mem::swap(&mut self.entries, &mut self.merged);
        self.next = self.next.min(first_new);
    }

    /// The closest entry not yet expanded, marked expanded.
    fn take_closest(&mut self) -> Option<Cand> {
        while self.entries.get(self.next).is_some_and(|&(_, expanded)| expanded) {
            self.next += 1;
        }
        let (c, expanded) = self.entries.get_mut(self.next)?;
        *expanded = true;
        Some(*c)
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= self.cap
    }

    /// Entries, expanded or not, closer than `d`.
    fn count_below(&self, d: f32) -> usize {
        self.entries.partition_point(|(e, _)| e.dist < d)
    }

    fn into_neighbors(self) -> Vec<Neighbor> {
        self.entries.into_iter().map(|(c, _)| Neighbor { id: c.id as u64, dist: c.dist }).collect()
    }
}

/// `each(id, distance)` for `ids` in order, the distances computed four at a time.
#[inline]
fn in_fours(dist: &impl QueryDist, ids: &[u32], mut each: impl FnMut(u32, f32)) {
    let mut quads = ids.chunks_exact(4);
    for q in &mut quads {
        let four = [q[0], q[1], q[2], q[3]];
        for (&id, d) in four.iter().zip(dist.four(four)) {
            each(id, d);
        }
    }
    for &id in quads.remainder() {
        each(id, dist.one(id));
    }
}

impl Hnsw {
    /// Moves to a closer neighbour on `level` until none is closer; `dist(i)` is the query's
    /// distance to node `i`.
    pub(crate) fn greedy(&self, dist: &impl QueryDist, mut cur: Neighbor, level: u8) -> Neighbor {
        let mut nbs: Vec<u32> = Vec::with_capacity(self.m);
        loop {
            let mut improved = false;
            nbs.clear();
            nbs.extend(self.neighbors_of(cur.id as u32, level));
            in_fours(dist, &nbs, |nb, d| {
                if d < cur.dist {
                    cur = Neighbor { id: nb as u64, dist: d };
                    improved = true;
                }
            });
            if !improved {
                return cur;
            }
        }
    }

    /// Hands `each(id, distance)` every neighbour of `node` on `level` not visited yet (marking
    /// it), distances four at a time; `fresh` is scratch.
    #[inline]
    fn expand(
        &self,
        dist: &impl QueryDist,
        node: u32,
        level: u8,
        visited: &mut VisitedSet,
        fresh: &mut Vec<u32>,
        each: impl FnMut(u32, f32),
    ) {
        fresh.clear();
        for nb in self.neighbors_of(node, level) {
            if !visited.check_and_mark(nb) {
                dist.prefetch(nb);
                fresh.push(nb);
            }
        }
        in_fours(dist, fresh, each);
    }

    /// Best-first search of width `ef` on `level` from `entry`: expands the closest unexpanded
    /// of the `ef` best nodes seen until all are expanded; returns them closest first.
    pub(crate) fn search_layer(
        &self,
        dist: &impl QueryDist,
        entry: Neighbor,
        ef: usize,
        level: u8,
        visited: &mut VisitedSet,
    ) -> Vec<Neighbor> {
        self.walk(dist, entry, ef, None, level, visited)
    }

    /// The walk both searches share, over a [`Frontier`] of `cap` entries; with `stop_at`, it
    /// also stops (faiss's rule for a walk returning more than efSearch nodes) once the frontier
    /// is full and `stop_at` entries are closer than the one taken out to expand.
    fn walk(
        &self,
        dist: &impl QueryDist,
        entry: Neighbor,
        cap: usize,
        stop_at: Option<usize>,
        level: u8,
        visited: &mut VisitedSet,
    ) -> Vec<Neighbor> {
        visited.reset(self.len());
        visited.check_and_mark(entry.id as u32);
        let mut frontier = Frontier::new(cap, Cand { dist: entry.dist, id: entry.id as u32 });
        let mut fresh: Vec<u32> = Vec::with_capacity(2 * self.m);
        let mut offers: Vec<Cand> = Vec::with_capacity(2 * self.m);
        while let Some(c) = frontier.take_closest() {
            if stop_at.is_some_and(|ef| frontier.is_full() && frontier.count_below(c.dist) >= ef) {
                break;
            }
            offers.clear();
            self.expand(dist, c.id, level, visited, &mut fresh, |id, d| {
                let c = Cand { dist: d, id };
                if frontier.admits(c) {
                    offers.push(c);
                }
            });
            frontier.offer_all(&mut offers);
        }
        frontier.into_neighbors()
    }

    /// The `k` nearest nodes to `q` (closest first) with search width `ef` (efSearch); `sp`
    /// are the vectors the graph was built over. With `k ≤ ef` this is the best-first search of
    /// width ef. With `k > ef` (an IVF probing more lists than efSearch) it walks as faiss's
    /// HNSW does then (a bounded min-max queue), so nprobe and efSearch mean what they mean in faiss.
    pub fn search(&self, sp: Points, q: &[f32], k: usize, ef: usize, visited: &mut VisitedSet) -> Vec<Neighbor> {
        self.search_by(&ToQuery { sp, q }, k, ef, visited)
    }

    /// [`search`](Self::search) with the query's distances from `dist` (exact rows, or PQ
    /// codes through a distance table).
    pub(crate) fn search_by(
        &self,
        dist: &impl QueryDist,
        k: usize,
        ef: usize,
        visited: &mut VisitedSet,
    ) -> Vec<Neighbor> {
        if self.is_empty() || k == 0 {
            return Vec::new();
        }
        let mut cur = Neighbor { id: self.entry_point as u64, dist: dist.one(self.entry_point) };
        for level in (1..=self.max_level).rev() {
            cur = self.greedy(dist, cur, level);
        }
        let mut found = if k > ef {
            self.walk(dist, cur, k, Some(ef.max(1)), 0, visited)
        } else {
            self.search_layer(dist, cur, ef, 0, visited)
        };
        found.truncate(k);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The frontier holds the `cap` smallest offers in order, hands out unexpanded entries
    /// closest first (newcomers closer than the cursor included), and counts as a scan would;
    /// offers come in groups, filtered by `admits` against the frontier as it stood.
    #[test]
    fn frontier_keeps_the_closest_and_expands_in_order() {
        let mut r = Rng::new(11);
        for cap in [1, 3, 16, 64] {
            let first = Cand { dist: 0.5, id: 0 };
            let mut f = Frontier::new(cap, first);
            let mut all = vec![first];
            let mut taken: Vec<Cand> = Vec::new();
            let mut pending: Vec<Cand> = Vec::new();
            for id in 1..500u32 {
                // Coarse distances make ties, settled by id.
                let c = Cand { dist: (r.next_f64() * 50.0).floor() as f32 / 50.0, id };
                if f.admits(c) {
                    pending.push(c);
                }
                all.push(c);
                // Offers arrive in groups of 1 to 5, as an expansion's do.
                if r.below(5) == 0 {
                    f.offer_all(&mut pending);
                    pending.clear();
                }
                if id % 7 == 0 {
                    if let Some(t) = f.take_closest() {
                        let held: Vec<Cand> = f.entries.iter().map(|e| e.0).collect();
                        assert!(held.contains(&t));
                        assert!(taken.iter().all(|p| p.id != t.id), "each entry is expanded once");
                        let unexpanded_closer = f.entries.iter().any(|(e, x)| !x && *e < t);
                        assert!(!unexpanded_closer, "the closest unexpanded entry comes first");
                        taken.push(t);
                    }
                }
                let d = r.next_f64() as f32;
                assert_eq!(f.count_below(d), f.entries.iter().filter(|(e, _)| e.dist < d).count());
            }
            f.offer_all(&mut pending);
            all.sort();
            all.truncate(cap);
            let held: Vec<u64> = f.into_neighbors().iter().map(|n| n.id).collect();
            assert_eq!(held, all.iter().map(|c| c.id as u64).collect::<Vec<_>>());
        }
    }
}
