//! Exact k-nearest-neighbour search by brute force: the ground truth every recall figure is
//! measured against, computed block by block so the base can be streamed from disk.

use rayon::prelude::*;

use crate::distance::{self, Metric};
use crate::topk::{Neighbor, TopK};

/// Running exact top-k of a set of queries against a base seen one block at a time.
pub struct ExactKnn {
    d: usize,
    metric: Metric,
    queries: Vec<f32>,
    heaps: Vec<TopK>,
}

impl ExactKnn {
    /// `queries` is nq × d; for cosine they are normalised here (and base blocks in `add`).
    pub fn new(queries: &[f32], d: usize, k: usize, metric: Metric) -> Self {
        let mut queries = queries.to_vec();
        if metric.normalizes() {
            queries.chunks_exact_mut(d).for_each(distance::normalize);
        }
        let heaps = (0..queries.len() / d).map(|_| TopK::new(k)).collect();
        ExactKnn { d, metric, queries, heaps }
    }

    /// Scans one block of base rows whose first row has id `first_id`; parallel over queries.
    pub fn add(&mut self, block: &[f32], first_id: u64) {
        let d = self.d;
        let metric = self.metric.kernel();
        let normalized;
        let block = if self.metric.normalizes() {
            let mut b = block.to_vec();
            b.chunks_exact_mut(d).for_each(distance::normalize);
            normalized = b;
            &normalized[..]
        } else {
            block
        };
        self.heaps.par_iter_mut().zip(self.queries.par_chunks(d)).for_each(|(heap, q)| {
            for (i, row) in block.chunks_exact(d).enumerate() {
                let dist = distance::dissimilarity(metric, q, row);
                if dist < heap.threshold() {
                    heap.push(first_id + i as u64, dist);
                }
            }
        });
    }

    /// Neighbours of every query, closest first.
    pub fn finish(self) -> Vec<Vec<Neighbor>> {
        self.heaps.into_iter().map(TopK::into_sorted_vec).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_give_the_same_answer_as_one_pass() {
        let d = 3;
        let base: Vec<f32> = (0..90).map(|i| ((i * 37) % 17) as f32).collect();
        let q = [1.0, 2.0, 3.0, 5.0, 0.0, 1.0];
        let mut one = ExactKnn::new(&q, d, 4, Metric::L2);
        one.add(&base, 0);
        let mut blocks = ExactKnn::new(&q, d, 4, Metric::L2);
        for (b, chunk) in base.chunks(4 * d).enumerate() {
            blocks.add(chunk, (b * 4) as u64);
        }
        assert_eq!(one.finish(), blocks.finish());
    }

    #[test]
    fn a_vector_is_its_own_nearest_neighbour() {
        let base = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        for metric in [Metric::L2, Metric::Cosine] {
            let mut e = ExactKnn::new(&base[2..4], 2, 1, metric);
            e.add(&base, 0);
            assert_eq!(e.finish()[0][0].id, 1, "{metric}");
        }
    }
}
