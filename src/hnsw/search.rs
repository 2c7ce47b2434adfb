//! Greedy descent through the upper levels, then a best-first search of width `ef` on level 0.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Hnsw;
use crate::distance::{self, Metric};
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
const PREFETCH_FLOATS: usize = 64;

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
        distance::dissimilarity_4(self.sp.metric, self.q, i.map(|j| self.sp.row(j)))
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
        distance::dissimilarity_4(self.metric, self.row(i), js.map(|j| self.row(j)))
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
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.dist.total_cmp(&other.dist).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// faiss's candidate queue for a walk that must return more nodes than efSearch: at most
/// `cap` entries in a max-heap on distance, each expanded or not. A newcomer evicts the
/// farthest entry when the queue is full and it is closer; expanded entries stay until
/// evicted, and count towards the stopping rule (`count_below`).
struct MinimaxQueue {
    cap: usize,
    /// Max-heap order on (dist, id).
    heap: Vec<Cand>,
    expanded: Vec<bool>,
}

impl MinimaxQueue {
    fn new(cap: usize) -> Self {
        MinimaxQueue { cap, heap: Vec::with_capacity(cap), expanded: Vec::with_capacity(cap) }
    }

    fn offer(&mut self, c: Cand) {
        if self.heap.len() < self.cap {
            self.heap.push(c);
            self.expanded.push(false);
            let mut i = self.heap.len() - 1;
            while i > 0 && self.heap[(i - 1) / 2] < self.heap[i] {
                self.swap(i, (i - 1) / 2);
                i = (i - 1) / 2;
            }
        } else if c < self.heap[0] {
            self.heap[0] = c;
            self.expanded[0] = false;
            let mut i = 0;
            loop {
                let (l, r) = (2 * i + 1, 2 * i + 2);
                let mut top = i;
                if l < self.heap.len() && self.heap[top] < self.heap[l] {
                    top = l;
                }
                if r < self.heap.len() && self.heap[top] < self.heap[r] {
                    top = r;
                }
                if top == i {
                    break;
                }
                self.swap(i, top);
                i = top;
            }
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.expanded.swap(a, b);
    }

    /// The closest entry not yet expanded, marked expanded (a scan: at most `cap` entries).
    fn take_closest(&mut self) -> Option<Cand> {
        let mut best: Option<usize> = None;
        for (i, c) in self.heap.iter().enumerate() {
            if !self.expanded[i] && best.is_none_or(|b| *c < self.heap[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.expanded[b] = true;
        Some(self.heap[b])
    }

    /// Entries, expanded or not, closer than `d`.
    fn count_below(&self, d: f32) -> usize {
        self.heap.iter().filter(|c| c.dist < d).count()
    }
}

/// Offers node `id` at dissimilarity `d` to a search's `ef` best results and its candidates.
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

#[inline]
fn consider(results: &mut BinaryHeap<Cand>, candidates: &mut BinaryHeap<Reverse<Cand>>, ef: usize, id: u32, d: f32) {
    if results.len() < ef || d < results.peek().map_or(f32::INFINITY, |n| n.dist) {
        let n = Cand { dist: d, id };
        candidates.push(Reverse(n));
        results.push(n);
        if results.len() > ef {
            results.pop();
        }
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

    /// Best-first search of width `ef` on `level` from `entry`; returns candidates closest first.
    pub(crate) fn search_layer(
        &self,
        dist: &impl QueryDist,
        entry: Neighbor,
        ef: usize,
        level: u8,
        visited: &mut VisitedSet,
    ) -> Vec<Neighbor> {
        visited.reset(self.len());
        visited.check_and_mark(entry.id as u32);
        let entry = Cand { dist: entry.dist, id: entry.id as u32 };
        let mut candidates = BinaryHeap::with_capacity(4 * ef);
        let mut results = BinaryHeap::with_capacity(ef + 1);
        candidates.push(Reverse(entry));
        results.push(entry);
        let mut fresh: Vec<u32> = Vec::with_capacity(2 * self.m);
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && c.dist > results.peek().map_or(f32::INFINITY, |n: &Cand| n.dist) {
                break;
            }
            self.expand(dist, c.id, level, visited, &mut fresh, |id, d| {
                consider(&mut results, &mut candidates, ef, id, d)
            });
        }
        results.into_sorted_vec().into_iter().map(|c| Neighbor { id: c.id as u64, dist: c.dist }).collect()
    }

    /// The `k` nearest nodes to `q` (closest first) with search width `ef` (efSearch); `sp`
    /// are the vectors the graph was built over. With `k ≤ ef` this is the best-first search of
    /// width ef. With `k > ef` (an IVF probing more lists than efSearch) it walks as faiss's
    /// HNSW does then (a bounded min-max queue), so nprobe and efSearch mean what they mean in faiss.
    pub fn search(&self, sp: Points, q: &[f32], k: usize, ef: usize, visited: &mut VisitedSet) -> Vec<Neighbor> {
        if self.is_empty() || k == 0 {
            return Vec::new();
        }
        let dist = ToQuery { sp, q };
        let mut cur = Neighbor { id: self.entry_point as u64, dist: dist.one(self.entry_point) };
        for level in (1..=self.max_level).rev() {
            cur = self.greedy(&dist, cur, level);
        }
        let mut found = if k > ef {
            self.search_bounded(&dist, cur, k, ef.max(1), visited)
        } else {
            self.search_layer(&dist, cur, ef, 0, visited)
        };
        found.truncate(k);
        found
    }

    /// Level-0 walk over a [`MinimaxQueue`] of `k` entries, stopping once `ef` entries are
    /// closer than the one taken out to expand (and k nodes are found); returns the `k` best
    /// seen.
    fn search_bounded(
        &self,
        dist: &impl QueryDist,
        entry: Neighbor,
        k: usize,
        ef: usize,
        visited: &mut VisitedSet,
    ) -> Vec<Neighbor> {
        visited.reset(self.len());
        visited.check_and_mark(entry.id as u32);
        let entry = Cand { dist: entry.dist, id: entry.id as u32 };
        let mut queue = MinimaxQueue::new(k);
        let mut results: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
        queue.offer(entry);
        results.push(entry);
        let mut fresh: Vec<u32> = Vec::with_capacity(2 * self.m);
        let offer = |queue: &mut MinimaxQueue, results: &mut BinaryHeap<Cand>, c: Cand| {
            if results.len() < k || c < *results.peek().expect("non-empty when full") {
                results.push(c);
                if results.len() > k {
                    results.pop();
                }
            }
            queue.offer(c);
        };
        while let Some(c) = queue.take_closest() {
            // faiss's rule; unlike faiss, never before k nodes are found (an IVF probe then
            // visits the nprobe lists asked for).
            if results.len() >= k && queue.count_below(c.dist) >= ef {
                break;
            }
            self.expand(dist, c.id, 0, visited, &mut fresh, |id, d| {
                offer(&mut queue, &mut results, Cand { dist: d, id })
            });
        }
        results.into_sorted_vec().into_iter().map(|c| Neighbor { id: c.id as u64, dist: c.dist }).collect()
    }
}
