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
    ksub: usize,
    transposed: Vec<f32>,
    norms: Vec<f32>,
}

impl LutBuilder {
    pub fn new(pq: &ProductQuantizer) -> Self {
        let (m, dsub, ksub) = (pq.m, pq.dsub, pq.ksub());
        let mut transposed = vec![0f32; m * dsub * ksub];
        let mut norms = vec![0f32; m * ksub];
        for j in 0..m {
            for (k, c) in pq.codebook(j).chunks_exact(dsub).enumerate() {
                for (t, &v) in c.iter().enumerate() {
                    transposed[(j * dsub + t) * ksub + k] = v;
                }
                norms[j * ksub + k] = distance::inner_product(c, c);
            }
        }
        LutBuilder { m, dsub, ksub, transposed, norms }
    }

    /// Entries per sub-quantizer in the tables this builder fills.
    pub fn ksub(&self) -> usize {
        self.ksub
    }

    /// Fills `lut` (m × ksub) for `q` (a query, or a query's residual for L2). L2 entries add up
    /// to the squared distance; inner-product entries are negated, so smaller stays better.
    pub fn compute(&self, metric: Metric, q: &[f32], lut: &mut [f32]) {
        debug_assert_eq!(lut.len(), self.m * self.ksub);
        if self.ksub == 16 {
            return self.compute16(metric, q, lut);
        }
        let dsub = self.dsub;
        for j in 0..self.m {
            let x = &q[j * dsub..(j + 1) * dsub];
            let row = &mut lut[j * self.ksub..(j + 1) * self.ksub];
            let scale = match metric {
                Metric::L2 => {
                    let xn = distance::inner_product(x, x);
                    for (e, &n) in row.iter_mut().zip(&self.norms[j * self.ksub..(j + 1) * self.ksub]) {
                        *e = xn + n;
                    }
                    -2.0
                }
                _ => {
                    row.iter_mut().for_each(|e| *e = 0.0);
                    -1.0
                }
            };
            let cols = &self.transposed[j * dsub * self.ksub..(j + 1) * dsub * self.ksub];
            distance::axpy_rows(scale, x, cols, row);
        }
    }
}

impl LutBuilder {
    /// [`compute`](Self::compute) for 16-entry (4-bit) tables, on the per-list path of fast-scan
    /// L2 searches: with rows of 16 floats a call per row update costs more than the update,
    /// so the rows are fixed-size arrays the compiler keeps in registers.
    fn compute16(&self, metric: Metric, q: &[f32], lut: &mut [f32]) {
        let dsub = self.dsub;
        let (rows, _) = lut.as_chunks_mut::<16>();
        let (cols, _) = self.transposed.as_chunks::<16>();
        let (norms, _) = self.norms.as_chunks::<16>();
        for (j, row) in rows.iter_mut().enumerate().take(self.m) {
            let x = &q[j * dsub..(j + 1) * dsub];
            let scale = match metric {
                Metric::L2 => {
                    // A few dimensions: a call to the dispatched kernel would cost more.
                    let xn: f32 = x.iter().map(|v| v * v).sum();
                    *row = std::array::from_fn(|k| xn + norms[j][k]);
                    -2.0
                }
                _ => {
                    *row = [0.0; 16];
                    -1.0
                }
            };
            for (t, &xt) in x.iter().enumerate() {
                let col = &cols[j * dsub + t];
                for k in 0..16 {
                    row[k] += scale * xt * col[k];
                }
            }
        }
    }

    /// Fills `out` (m × ksub) with −2⟨x_j, c_jk⟩: the query's part of an L2 table under the
    /// precomputed decomposition (see [`PrecomputedTables`]), built once per query instead of
    /// once per probed list.
    pub fn cross_terms(&self, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.m * self.ksub);
        let dsub = self.dsub;
        out.iter_mut().for_each(|e| *e = 0.0);
        for j in 0..self.m {
            let row = &mut out[j * self.ksub..(j + 1) * self.ksub];
            let cols = &self.transposed[j * dsub * self.ksub..(j + 1) * dsub * self.ksub];
            distance::axpy_rows(-2.0, &x[j * dsub..(j + 1) * dsub], cols, row);
        }
    }

    /// Fills `out` (m × ksub) with a list's part of the L2 distances of its residual codes,
    /// ‖r_jk‖² + 2⟨c_j, r_jk⟩ for the list's centroid `centroid` (see [`PrecomputedTables`],
    /// which keeps it for every list).
    pub fn list_part(&self, centroid: &[f32], out: &mut [f32]) {
        self.cross_terms(centroid, out);
        for (e, &n) in out.iter_mut().zip(&self.norms) {
            *e = n - *e;
        }
    }
}

/// faiss's precomputed tables for L2 with residual PQ (`IndexIVFPQ::use_precomputed_table`).
/// With r the reconstruction of a residual and c its list's centroid,
/// ‖q − c − r‖² = ‖q − c‖² + Σ_j (‖r_j‖² + 2⟨c_j, r_j⟩) − 2 Σ_j ⟨q_j, r_j⟩:
/// the middle term depends only on the list and the code, so it can be computed once per list
/// and kept (nlist × m × ksub floats), and a query builds one table of −2⟨q_j, c_jk⟩ for every
/// list, with ‖q − c‖² (which the coarse search already has) as the list's bias. The search
/// keeps the middle term per vector of a cached list; these tables spare the
/// [`LutBuilder::list_part`] of each list read from the device.
#[derive(Clone, Debug)]
pub struct PrecomputedTables {
    /// Entries per list: m × ksub.
    per: usize,
    /// nlist × m × ksub.
    tables: Vec<f32>,
}

impl PrecomputedTables {
    /// Bytes the tables of `nlist` lists take for `m` sub-quantizers of `ksub` centroids.
    pub fn bytes(nlist: usize, m: usize, ksub: usize) -> u64 {
        nlist as u64 * m as u64 * ksub as u64 * 4
    }

    /// Builds the tables for `centroids` (nlist × d), in parallel over lists.
    pub fn build(pq: &ProductQuantizer, builder: &LutBuilder, centroids: &[f32]) -> Self {
        use rayon::prelude::*;
        let (m, d) = (pq.m, pq.d);
        let per = m * builder.ksub;
        let mut tables = vec![0f32; centroids.len() / d * per];
        tables.par_chunks_mut(per).zip(centroids.par_chunks(d)).for_each(|(t, c)| builder.list_part(c, t));
        PrecomputedTables { per, tables }
    }

    /// List `list`'s part of its tables: ‖r_jk‖² + 2⟨c_j, r_jk⟩, m × ksub.
    pub fn of(&self, list: usize) -> &[f32] {
        &self.tables[list * self.per..(list + 1) * self.per]
    }
}

#[cfg(test)]
mod precomputed_tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn precomputed_tables_give_the_residual_table_distances() {
        let (d, m, nlist) = (16, 4, 3);
        let mut r = Rng::new(9);
        let x: Vec<f32> = (0..2000 * d).map(|_| r.normal() as f32).collect();
        let mut pq = ProductQuantizer::new(d, m).unwrap();
        pq.train(&x, 5, 1).unwrap();
        let b = LutBuilder::new(&pq);
        let centroids: Vec<f32> = (0..nlist * d).map(|_| r.normal() as f32).collect();
        let pre = PrecomputedTables::build(&pq, &b, &centroids);
        let q: Vec<f32> = (0..d).map(|_| r.normal() as f32).collect();
        let (mut cross, mut part, mut direct) = (vec![0f32; m * KSUB], vec![0f32; m * KSUB], vec![0f32; m * KSUB]);
        b.cross_terms(&q, &mut cross);
        for list in 0..nlist {
            let c = &centroids[list * d..(list + 1) * d];
            let residual: Vec<f32> = q.iter().zip(c).map(|(a, b)| a - b).collect();
            b.compute(Metric::L2, &residual, &mut direct);
            b.list_part(c, &mut part);
            assert_eq!(pre.of(list), &part[..], "kept tables are the computed ones, bit for bit");
            let qc = distance::l2_sqr(&q, c);
            for code in [[0u8, 1, 2, 3], [255, 17, 0, 99], [7, 7, 7, 7]] {
                let sum = |t: &[f32]| code.iter().enumerate().map(|(j, &k)| t[j * KSUB + k as usize]).sum::<f32>();
                let (a, b) = (sum(&direct), (qc + sum(&part)) + sum(&cross));
                assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "list {list} code {code:?}: {a} vs {b}");
            }
        }
        assert_eq!(PrecomputedTables::bytes(nlist, m, KSUB), (nlist * m * KSUB * 4) as u64);
    }
}
