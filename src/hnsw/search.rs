//! Greedy descent through the upper levels, then a best-first search of width `ef` on level 0.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Hnsw;
use crate::distance::{self, Metric};
use crate::topk::Neighbor;

/// Visited marks reused across searches: a generation counter instead of clearing `n` flags.
#[derive(Clone, Debug)]
pub struct VisitedSet {
    marks: Vec<u32>,
    generation: u32,
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

impl Hnsw {
    /// Moves to a closer neighbour on `level` until none is closer.
    pub(crate) fn greedy(&self, sp: Points, q: &[f32], mut cur: Neighbor, level: u8) -> Neighbor {
        loop {
            let mut improved = false;
            for nb in self.neighbors_of(cur.id as u32, level) {
                let d = sp.dist(q, nb);
                if d < cur.dist {
                    cur = Neighbor { id: nb as u64, dist: d };
                    improved = true;
                }
            }
            if !improved {
                return cur;
            }
        }
    }

    /// Best-first search of width `ef` on `level` from `entry`; returns candidates closest first.
    pub(crate) fn search_layer(
        &self,
        sp: Points,
        q: &[f32],
        entry: Neighbor,
        ef: usize,
        level: u8,
        visited: &mut VisitedSet,
    ) -> Vec<Neighbor> {
        visited.reset(self.len());
        visited.check_and_mark(entry.id as u32);
        let mut candidates = BinaryHeap::new();
        let mut results = BinaryHeap::new();
        candidates.push(Reverse(entry));
        results.push(entry);
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && c.dist > results.peek().map_or(f32::INFINITY, |n: &Neighbor| n.dist) {
                break;
            }
            for nb in self.neighbors_of(c.id as u32, level) {
                if visited.check_and_mark(nb) {
                    continue;
                }
                let d = sp.dist(q, nb);
                let worst = results.peek().map_or(f32::INFINITY, |n| n.dist);
                if results.len() < ef || d < worst {
                    let n = Neighbor { id: nb as u64, dist: d };
                    candidates.push(Reverse(n));
                    results.push(n);
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        results.into_sorted_vec()
    }

    /// The `k` nearest nodes to `q` (closest first) with search width `max(ef, k)`; `sp` are
    /// the vectors the graph was built over.
    pub fn search(&self, sp: Points, q: &[f32], k: usize, ef: usize, visited: &mut VisitedSet) -> Vec<Neighbor> {
        if self.is_empty() || k == 0 {
            return Vec::new();
        }
        let mut cur = Neighbor { id: self.entry_point as u64, dist: sp.dist(q, self.entry_point) };
        for level in (1..=self.max_level).rev() {
            cur = self.greedy(sp, q, cur, level);
        }
        let mut found = self.search_layer(sp, q, cur, ef.max(k), 0, visited);
        found.truncate(k);
        found
    }
}
