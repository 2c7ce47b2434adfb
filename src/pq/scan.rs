//! The ADC scan: one list's codes against one query's table, into a top-k. This is the loop a
//! query spends its CPU time in once its lists have arrived from disk.

use super::KSUB;
use crate::topk::TopK;

/// Scans `codes` (n × m, row-major 8-bit) whose ids `id_of` gives, each at `bias` (the
/// per-list term, e.g. −⟨q, centroid⟩ for inner product) plus its term in `terms` (when given:
/// a per-vector part of the distance the table does not hold) plus its table sum, and pushes
/// them into `topk`.
pub fn scan_codes(
    lut: &[f32],
    m: usize,
    bias: f32,
    terms: Option<&[f32]>,
    codes: &[u8],
    id_of: impl Fn(usize) -> u64,
    topk: &mut TopK,
) {
    debug_assert_eq!(lut.len(), m * KSUB);
    // As 256-entry arrays, a table indexed by a code byte needs no bounds check.
    let (tables, _) = lut.as_chunks::<KSUB>();
    let tables = &tables[..m];
    let mut threshold = topk.threshold();
    for (i, code) in codes.chunks_exact(m).enumerate() {
        let d = (bias + terms.map_or(0.0, |t| t[i])) + adc_distance(tables, code);
        // `<=`: a tie at the threshold is settled by id inside the top-k, so results do not
        // depend on the order lists are scanned in (cached ones first, say).
        if d <= threshold {
            topk.push_at(id_of(i), d, i);
            threshold = topk.threshold();
        }
    }
}

/// Each code's sum of `table` (m × 256 floats): the per-vector terms [`scan_codes`] adds (for
/// L2, a list's ‖r‖² + 2⟨c, r⟩ part).
pub fn code_sums(table: &[f32], m: usize, codes: &[u8], out: &mut Vec<f32>) {
    let (tables, _) = table.as_chunks::<KSUB>();
    out.clear();
    out.extend(codes.chunks_exact(m).map(|code| adc_distance(&tables[..m], code)));
}

/// Sum of table entries named by one code; four independent accumulators hide the latency of
/// the dependent loads.
#[inline(always)]
pub(super) fn adc_distance(tables: &[[f32; KSUB]], code: &[u8]) -> f32 {
    let mut acc = [0f32; 4];
    let (t4, t_rest) = tables.as_chunks::<4>();
    let (c4, c_rest) = code.as_chunks::<4>();
    for (t, c) in t4.iter().zip(c4) {
        for i in 0..4 {
            acc[i] += t[i][c[i] as usize];
        }
    }
    for (i, (t, &c)) in t_rest.iter().zip(c_rest).enumerate() {
        acc[i] += t[c as usize];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::{self, Metric};
    use crate::pq::{LutBuilder, ProductQuantizer};
    use crate::rng::Rng;

    /// ADC through the table equals the direct distance between the query and the decoded code.
    #[test]
    fn table_distance_equals_decoded_distance() {
        let (d, m) = (24, 6);
        let mut r = Rng::new(2);
        let x: Vec<f32> = (0..600 * d).map(|_| r.normal() as f32).collect();
        let mut pq = ProductQuantizer::new(d, m).unwrap();
        pq.train(&x, 10, 1).unwrap();
        let q: Vec<f32> = (0..d).map(|_| r.normal() as f32).collect();
        for metric in [Metric::L2, Metric::InnerProduct] {
            let mut lut = vec![0f32; m * KSUB];
            LutBuilder::new(&pq).compute(metric, &q, &mut lut);
            let mut codes = vec![0u8; 50 * m];
            for (row, c) in x.chunks_exact(d).zip(codes.chunks_exact_mut(m)) {
                pq.encode(row, c);
            }
            let mut top = TopK::new(50);
            scan_codes(&lut, m, 0.0, None, &codes, |i| i as u64, &mut top);
            let mut rec = vec![0f32; d];
            for n in top.into_sorted_vec() {
                pq.decode(&codes[n.id as usize * m..(n.id as usize + 1) * m], &mut rec);
                let want = distance::dissimilarity(metric, &q, &rec);
                assert!((n.dist - want).abs() < 1e-3 * (1.0 + want.abs()), "{} vs {want}", n.dist);
            }
        }
    }
}
