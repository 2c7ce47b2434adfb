//! Synthetic vectors shaped like faiss's `SyntheticDataset` (the data of the IVF-PQ + HNSW
//! article): a 10-dimensional Gaussian mapped into d dimensions by a random linear map, scaled
//! per dimension and passed through sin(), which gives clustered, curved data with a low
//! intrinsic dimension. Row `i` depends only on the seed and `i`, so any slice can be generated
//! independently, in parallel and in bounded memory. (Same distribution as faiss's generator,
//! not the same numbers: faiss draws from NumPy's RNG.)

use rayon::prelude::*;

use crate::rng::Rng;

/// Intrinsic dimension, as in faiss.
const D1: usize = 10;

pub struct Synthetic {
    d: usize,
    seed: u64,
    /// D1 × d, uniform [0, 1).
    proj: Vec<f32>,
    /// d, uniform [0.1, 4.1).
    scale: Vec<f32>,
}

impl Synthetic {
    pub fn new(d: usize, seed: u64) -> Self {
        let mut r = Rng::new(seed);
        let proj = (0..D1 * d).map(|_| r.next_f64() as f32).collect();
        let scale = (0..d).map(|_| (r.next_f64() * 4.0 + 0.1) as f32).collect();
        Synthetic { d, seed, proj, scale }
    }

    pub fn dim(&self) -> usize {
        self.d
    }

    /// Appends rows `start..start + count` to `out`.
    pub fn rows(&self, start: u64, count: usize, out: &mut Vec<f32>) {
        let first = out.len();
        out.resize(first + count * self.d, 0.0);
        out[first..].par_chunks_mut(self.d).enumerate().for_each(|(i, row)| {
            let mut r = Rng::new(self.seed ^ (start + i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17));
            let z: [f32; D1] = std::array::from_fn(|_| r.normal() as f32);
            for (j, v) in row.iter_mut().enumerate() {
                let dot: f32 = (0..D1).map(|t| z[t] * self.proj[t * self.d + j]).sum();
                *v = (dot * self.scale[j]).sin();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_independent_of_how_they_are_cut() {
        let g = Synthetic::new(8, 5);
        let mut all = Vec::new();
        g.rows(0, 10, &mut all);
        let mut parts = Vec::new();
        g.rows(0, 4, &mut parts);
        g.rows(4, 6, &mut parts);
        assert_eq!(all, parts);
        assert!(all.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
