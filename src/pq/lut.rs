//! Per-query distance tables for asymmetric distance computation (ADC): entry (j, c) is the
//! dissimilarity between sub-vector j of the query and centroid c of sub-quantizer j, so the
//! distance to a code is the sum of m table look-ups.

use super::{ProductQuantizer, KSUB};
use crate::distance::{self, Metric};

/// Table entries per sub-quantizer.
pub const LUT_KSUB: usize = KSUB;

/// Fills `lut` (m × ksub) for query (or query residual) `q`.
///
/// For L2 the entries are squared distances of sub-vectors, which add up to the squared distance.
/// For inner product they are negated sub-inner-products, which add up to the negated inner
/// product: smaller stays better for every metric.
pub fn compute_lut(pq: &ProductQuantizer, metric: Metric, q: &[f32], lut: &mut [f32]) {
    debug_assert_eq!(lut.len(), pq.m * KSUB);
    let dsub = pq.dsub;
    for j in 0..pq.m {
        let sub = &q[j * dsub..(j + 1) * dsub];
        let row = &mut lut[j * KSUB..(j + 1) * KSUB];
        for (e, cent) in row.iter_mut().zip(pq.codebook(j).chunks_exact(dsub)) {
            *e = distance::dissimilarity(metric, sub, cent);
        }
    }
}
