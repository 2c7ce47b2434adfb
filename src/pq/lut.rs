//! Per-query distance tables for asymmetric distance computation (ADC): entry (j, c) is the
//! dissimilarity between sub-vector j of the query and centroid c of sub-quantizer j, so the
//! distance to a code is the sum of m table look-ups.
//!
//! For L2 an entry is expanded as ‖x_j‖² + ‖c_jk‖² − 2⟨x_j, c_jk⟩ with the codebooks stored
//! transposed, (m, dsub, ksub), so building a table is m·dsub vector updates 256 lanes wide
//! instead of m·256 tiny distance calls: an L2 table is rebuilt for every probed list (it is
//! taken on the query's residual), so this is on the per-query path.

use super::{ProductQuantizer, KSUB};
use crate::distance::{self, Metric};

/// Table entries per sub-quantizer.
pub const LUT_KSUB: usize = KSUB;

/// Codebooks rearranged for building tables: shape (m, dsub, ksub), with the centroids' squared
/// norms, shape (m, ksub).
#[derive(Clone, Debug)]
pub struct LutBuilder {
    m: usize,
    dsub: usize,
    transposed: Vec<f32>,
    norms: Vec<f32>,
}

impl LutBuilder {
    pub fn new(pq: &ProductQuantizer) -> Self {
        let (m, dsub) = (pq.m, pq.dsub);
        let mut transposed = vec![0f32; m * dsub * KSUB];
        let mut norms = vec![0f32; m * KSUB];
        for j in 0..m {
            for (k, c) in pq.codebook(j).chunks_exact(dsub).enumerate() {
                for (t, &v) in c.iter().enumerate() {
                    transposed[(j * dsub + t) * KSUB + k] = v;
                }
                norms[j * KSUB + k] = distance::inner_product(c, c);
            }
        }
        LutBuilder { m, dsub, transposed, norms }
    }

    /// Fills `lut` (m × ksub) for `q` (a query, or a query's residual for L2). L2 entries add up
    /// to the squared distance; inner-product entries are negated, so smaller stays better.
    pub fn compute(&self, metric: Metric, q: &[f32], lut: &mut [f32]) {
        debug_assert_eq!(lut.len(), self.m * KSUB);
        let dsub = self.dsub;
        for j in 0..self.m {
            let x = &q[j * dsub..(j + 1) * dsub];
            let row = &mut lut[j * KSUB..(j + 1) * KSUB];
            let scale = match metric {
                Metric::L2 => {
                    let xn = distance::inner_product(x, x);
                    for (e, &n) in row.iter_mut().zip(&self.norms[j * KSUB..(j + 1) * KSUB]) {
                        *e = xn + n;
                    }
                    -2.0
                }
                _ => {
                    row.iter_mut().for_each(|e| *e = 0.0);
                    -1.0
                }
            };
            for (t, &xt) in x.iter().enumerate() {
                let col = &self.transposed[(j * dsub + t) * KSUB..(j * dsub + t + 1) * KSUB];
                distance::axpy(scale * xt, col, row);
            }
        }
    }
}
