//! Insertion with faiss's choices: levels drawn with mL = 1/ln(M), nodes inserted from the top
//! level down (shuffled within a level, seeded), efConstruction-wide candidate search per level,
//! and the neighbour-selection heuristic both for a new node's links and when a full neighbour
//! list must make room.

use super::search::VisitedSet;
use super::Points;
use super::{Hnsw, EMPTY};
use crate::rng::Rng;
use crate::topk::Neighbor;

/// Construction parameters, named as in faiss (`M`, `efConstruction`).
#[derive(Clone, Debug)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 32, ef_construction: 40, seed: 12345 }
    }
}

/// Level probabilities P(level = l) = e^(−l/mL)(1 − e^(−1/mL)), truncated where negligible.
fn level_probabilities(m: usize) -> Vec<f64> {
    let ml = 1.0 / (m.max(2) as f64).ln();
    let mut p = Vec::new();
    for level in 0.. {
        let prob = (-(level as f64) / ml).exp() * (1.0 - (-1.0 / ml).exp());
        if prob < 1e-9 || level > 30 {
            break;
        }
        p.push(prob);
    }
    p
}

fn random_level(probas: &[f64], rng: &mut Rng) -> u8 {
    let mut f = rng.next_f64();
    for (level, &p) in probas.iter().enumerate() {
        if f < p {
            return level as u8;
        }
        f -= p;
    }
    (probas.len() - 1) as u8
}

impl Hnsw {
    /// Builds the graph over `sp`'s rows.
    pub fn build(sp: Points, params: &HnswParams) -> Hnsw {
        let n = sp.data.len() / sp.d;
        // Callers validate M (the factory grammar refuses M < 2); clamping here instead would
        // store a graph whose M differs from the one the manifest records.
        assert!(params.m >= 2, "HNSW M must be at least 2, got {}", params.m);
        let m = params.m;
        let mut rng = Rng::new(params.seed);
        let probas = level_probabilities(m);
        let levels: Vec<u8> = (0..n).map(|_| random_level(&probas, &mut rng)).collect();
        let mut g = Hnsw::with_levels(m, levels.clone());
        if n == 0 {
            return g;
        }
        // Top level first, as faiss does, so upper levels exist before the crowd arrives.
        let max_level = *levels.iter().max().unwrap_or(&0);
        let mut order = Vec::with_capacity(n);
        for level in (0..=max_level).rev() {
            let start = order.len();
            order.extend((0..n as u32).filter(|&i| levels[i as usize] == level));
            let bucket = &mut order[start..];
            for i in (1..bucket.len()).rev() {
                bucket.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let mut visited = VisitedSet::new(n);
        g.entry_point = order[0];
        g.max_level = levels[order[0] as usize];
        for &node in &order[1..] {
            g.insert(sp, node, params.ef_construction.max(1), &mut visited);
        }
        g
    }

    fn insert(&mut self, sp: Points, node: u32, ef: usize, visited: &mut VisitedSet) {
        let q = sp.row(node);
        let level = self.levels[node as usize];
        let mut cur = Neighbor { id: self.entry_point as u64, dist: sp.dist(q, self.entry_point) };
        for l in ((level + 1)..=self.max_level).rev() {
            cur = self.greedy(sp, q, cur, l);
        }
        for l in (0..=level.min(self.max_level)).rev() {
            let candidates = self.search_layer(sp, q, cur, ef, l, visited);
            cur = candidates[0];
            let max = if l == 0 { 2 * self.m } else { self.m };
            let chosen = select_heuristic(sp, &candidates, max);
            let own = self.range(node, l);
            for (slot, nb) in self.neighbors[own].iter_mut().zip(&chosen) {
                *slot = nb.id as u32;
            }
            for nb in &chosen {
                self.add_link(sp, nb.id as u32, node, l);
            }
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry_point = node;
        }
    }

    /// Adds `dst` to `src`'s list on `level`; a full list is re-selected by the heuristic.
    fn add_link(&mut self, sp: Points, src: u32, dst: u32, level: u8) {
        let r = self.range(src, level);
        let slots = &mut self.neighbors[r.clone()];
        if let Some(free) = slots.iter_mut().find(|s| **s == EMPTY) {
            *free = dst;
            return;
        }
        let base = sp.row(src);
        let mut cands: Vec<Neighbor> = slots
            .iter()
            .chain(std::iter::once(&dst))
            .map(|&v| Neighbor { id: v as u64, dist: sp.dist(base, v) })
            .collect();
        cands.sort();
        let kept = select_heuristic(sp, &cands, r.len());
        let slots = &mut self.neighbors[r];
        for (i, s) in slots.iter_mut().enumerate() {
            *s = kept.get(i).map_or(EMPTY, |n| n.id as u32);
        }
    }
}

/// Malkov & Yashunin's heuristic (faiss's `shrink_neighbor_list`): walk candidates closest
/// first, keep one only if it is closer to the base than to every neighbour already kept, so the
/// links spread over directions instead of crowding one cluster.
fn select_heuristic(sp: Points, sorted: &[Neighbor], max: usize) -> Vec<Neighbor> {
    let mut out: Vec<Neighbor> = Vec::with_capacity(max);
    for &c in sorted {
        if out.len() >= max {
            break;
        }
        let crow = sp.row(c.id as u32);
        if out.iter().all(|kept| sp.dist(crow, kept.id as u32) >= c.dist) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::{self, Metric};

    fn brute(data: &[f32], d: usize, metric: Metric, q: &[f32], k: usize) -> Vec<u32> {
        let mut v: Vec<(f32, u32)> =
            data.chunks_exact(d).enumerate().map(|(i, r)| (distance::dissimilarity(metric, q, r), i as u32)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v.into_iter().take(k).map(|x| x.1).collect()
    }

    fn recall(metric: Metric) -> f64 {
        let (n, d, k) = (3000, 16, 10);
        let mut r = Rng::new(1);
        let data: Vec<f32> = (0..n * d).map(|_| r.normal() as f32).collect();
        let sp = Points { data: &data, d, metric };
        let g = Hnsw::build(sp, &HnswParams { m: 16, ef_construction: 40, seed: 3 });
        let mut vis = VisitedSet::new(n);
        let mut hits = 0;
        let nq = 200;
        for _ in 0..nq {
            let q: Vec<f32> = (0..d).map(|_| r.normal() as f32).collect();
            let got = g.search(sp, &q, k, 64, &mut vis);
            let want = brute(&data, d, metric, &q, k);
            hits += got.iter().filter(|n| want.contains(&(n.id as u32))).count();
        }
        hits as f64 / (nq * k) as f64
    }

    /// HNSW against brute force: at ef = 64 on 3,000 random 16-d points recall@10 is ≈ 0.99.
    #[test]
    fn matches_brute_force_l2() {
        let r = recall(Metric::L2);
        assert!(r > 0.95, "recall {r}");
    }

    #[test]
    fn matches_brute_force_ip() {
        let r = recall(Metric::InnerProduct);
        assert!(r > 0.9, "recall {r}");
    }

    #[test]
    fn graph_invariants_hold_after_build() {
        let mut r = Rng::new(2);
        let d = 8;
        let data: Vec<f32> = (0..500 * d).map(|_| r.normal() as f32).collect();
        let g = Hnsw::build(Points { data: &data, d, metric: Metric::L2 }, &HnswParams { m: 8, ..Default::default() });
        let again = Hnsw::from_parts(g.m, g.levels.clone(), g.neighbors.clone(), g.entry_point).unwrap();
        assert_eq!(again, g);
        for i in 0..g.len() as u32 {
            assert!(g.neighbors_of(i, 0).all(|nb| nb != i));
            assert!(g.neighbors_of(i, 0).count() > 0);
        }
    }

    #[test]
    fn single_node_and_empty_graphs_search() {
        let one = Points { data: &[1.0, 2.0], d: 2, metric: Metric::L2 };
        let g = Hnsw::build(one, &HnswParams::default());
        let mut vis = VisitedSet::new(1);
        assert_eq!(g.search(one, &[0.0, 0.0], 5, 16, &mut vis).len(), 1);
        let none = Points { data: &[], d: 2, metric: Metric::L2 };
        let e = Hnsw::build(none, &HnswParams::default());
        assert!(e.search(none, &[0.0, 0.0], 5, 16, &mut vis).is_empty());
    }

    #[test]
    fn corrupt_parts_are_rejected() {
        assert!(Hnsw::from_parts(4, vec![0, 0], vec![EMPTY; 16], 0).is_ok());
        assert!(Hnsw::from_parts(4, vec![0, 0], vec![EMPTY; 15], 0).is_err());
        let mut nb = vec![EMPTY; 16];
        nb[0] = 7;
        assert!(Hnsw::from_parts(4, vec![0, 0], nb, 0).is_err());
        assert!(Hnsw::from_parts(4, vec![0, 1], vec![EMPTY; 20], 0).is_err());
    }
}
