//! Product quantization (Jégou et al. 2011) with faiss's defaults: `m` sub-quantizers of
//! `ksub = 256` centroids (8 bits), each trained by 25 k-means iterations on at most 65,536
//! sub-vectors. Codebooks are one flat array of shape (m, ksub, dsub).
//!
//! quiver quantizes *residuals* (vector − its coarse centroid), so a code is short because the
//! coarse quantizer already took out most of the energy.

pub mod fast8;
pub mod fastscan;
mod lut;
mod scan;

pub use lut::{LutBuilder, PrecomputedTables, LUT_KSUB};
pub use scan::{code_sums, scan_codes};

use rayon::prelude::*;

use crate::distance;
use crate::kmeans::{self, KMeansError, KMeansParams};

/// Random codes (n × m, one sub-code per byte, below `ksub`) and a random table (m × ksub):
/// the kernels' test cases.
#[cfg(test)]
pub(crate) fn random_codes(r: &mut crate::rng::Rng, n: usize, m: usize, ksub: usize) -> (Vec<u8>, Vec<f32>) {
    let codes: Vec<u8> = (0..n * m).map(|_| r.below(ksub as u64) as u8).collect();
    let lut: Vec<f32> = (0..m * ksub).map(|_| r.normal() as f32 * 3.0 + 1.0).collect();
    (codes, lut)
}

/// Bits per sub-quantizer index: 8 gives 256 centroids and one byte per sub-vector.
pub const NBITS: usize = 8;
/// Centroids per sub-quantizer.
pub const KSUB: usize = 1 << NBITS;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PqError {
    #[error("dimension {d} is not divisible by m = {m}: choose an m that divides the dimension")]
    Indivisible { d: usize, m: usize },
    #[error("PQ training needs at least {need} vectors (one per centroid), got {n}")]
    TooFewPoints { n: usize, need: usize },
    #[error("PQ with {nbits} bits per sub-quantizer is not supported: use 8 (PQ{{m}}) or 4 (PQ{{m}}x4fs)")]
    UnsupportedNbits { nbits: usize },
    #[error("4-bit codes pack two sub-quantizers per byte: m = {m} must be even")]
    OddFourBitM { m: usize },
    #[error("codebooks have {got} floats, expected m × ksub × dsub = {expected}")]
    BadCodebookSize { got: usize, expected: usize },
    #[error(transparent)]
    KMeans(#[from] KMeansError),
}

/// A trained (or untrained, all-zero) product quantizer for `d`-dimensional vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductQuantizer {
    pub d: usize,
    pub m: usize,
    pub dsub: usize,
    /// Bits per sub-quantizer index: 8 (256 centroids) or 4 (16, for fast-scan codes).
    pub nbits: usize,
    /// Shape (m, ksub, dsub).
    pub centroids: Vec<f32>,
}

impl ProductQuantizer {
    /// An 8-bit quantizer (faiss's `PQ{m}`).
    pub fn new(d: usize, m: usize) -> Result<Self, PqError> {
        Self::with_nbits(d, m, NBITS)
    }

    /// A quantizer with `nbits` bits per sub-quantizer: 8, or 4 (faiss's `PQ{m}x4fs`).
    pub fn with_nbits(d: usize, m: usize, nbits: usize) -> Result<Self, PqError> {
        if m == 0 || !d.is_multiple_of(m) {
            return Err(PqError::Indivisible { d, m });
        }
        if nbits != 8 && nbits != 4 {
            return Err(PqError::UnsupportedNbits { nbits });
        }
        if nbits == 4 && !m.is_multiple_of(2) {
            return Err(PqError::OddFourBitM { m });
        }
        Ok(ProductQuantizer { d, m, dsub: d / m, nbits, centroids: vec![0.0; d << nbits] })
    }

    /// Centroids per sub-quantizer.
    pub fn ksub(&self) -> usize {
        1 << self.nbits
    }

    /// Rebuilds a quantizer from stored codebooks of shape (m, ksub, dsub).
    pub fn from_codebooks(d: usize, m: usize, nbits: usize, centroids: Vec<f32>) -> Result<Self, PqError> {
        let mut pq = Self::with_nbits(d, m, nbits)?;
        if centroids.len() != pq.centroids.len() {
            return Err(PqError::BadCodebookSize { got: centroids.len(), expected: pq.centroids.len() });
        }
        pq.centroids = centroids;
        Ok(pq)
    }

    /// Bytes per encoded vector: one per sub-quantizer at 8 bits; at 4 bits two sub-codes per
    /// byte, sub-quantizer 2i in the low nibble of byte i and 2i + 1 in the high one.
    pub fn code_size(&self) -> usize {
        self.m * self.nbits / 8
    }

    /// Sub-code `j` of `code` (`code_size()` bytes).
    #[inline]
    pub fn sub_code(&self, code: &[u8], j: usize) -> usize {
        if self.nbits == 8 {
            code[j] as usize
        } else {
            (code[j / 2] >> (4 * (j % 2)) & 0x0F) as usize
        }
    }

    fn put_sub_code(&self, code: &mut [u8], j: usize, c: usize) {
        if self.nbits == 8 {
            code[j] = c as u8;
        } else {
            let shift = 4 * (j % 2);
            code[j / 2] = code[j / 2] & !(0x0F << shift) | (c as u8) << shift;
        }
    }

    /// The ksub × dsub codebook of sub-quantizer `j`.
    pub fn codebook(&self, j: usize) -> &[f32] {
        let len = self.ksub() * self.dsub;
        &self.centroids[j * len..(j + 1) * len]
    }

    /// Trains all sub-quantizers on `x` (n × d), in parallel over sub-quantizers.
    pub fn train(&mut self, x: &[f32], niter: usize, seed: u64) -> Result<(), PqError> {
        self.train_with(x, niter, seed, &|| {})
    }

    /// [`train`](Self::train), calling `on_sub()` as each sub-quantizer finishes.
    pub fn train_with(
        &mut self,
        x: &[f32],
        niter: usize,
        seed: u64,
        on_sub: &(dyn Fn() + Sync),
    ) -> Result<(), PqError> {
        let n = x.len() / self.d;
        let ksub = self.ksub();
        if n < ksub {
            return Err(PqError::TooFewPoints { n, need: ksub });
        }
        let (d, dsub) = (self.d, self.dsub);
        let books: Vec<Result<Vec<f32>, KMeansError>> = (0..self.m)
            .into_par_iter()
            .map(|j| {
                let sub: Vec<f32> = x.chunks_exact(d).flat_map(|r| &r[j * dsub..(j + 1) * dsub]).copied().collect();
                let p = KMeansParams {
                    niter,
                    max_points_per_centroid: 256,
                    spherical: false,
                    seed: seed.wrapping_add(j as u64),
                };
                let r = kmeans::train(&sub, dsub, ksub, &p);
                on_sub();
                r
            })
            .collect();
        for (j, b) in books.into_iter().enumerate() {
            self.centroids[j * ksub * dsub..(j + 1) * ksub * dsub].copy_from_slice(&b?);
        }
        Ok(())
    }

    /// Encodes one vector into `code` (`code_size()` bytes): the nearest centroid per sub-vector.
    pub fn encode(&self, x: &[f32], code: &mut [u8]) {
        for j in 0..self.m {
            let sub = &x[j * self.dsub..(j + 1) * self.dsub];
            let mut best = (0usize, f32::INFINITY);
            for (k, cent) in self.codebook(j).chunks_exact(self.dsub).enumerate() {
                let dist = distance::l2_sqr(sub, cent);
                if dist < best.1 {
                    best = (k, dist);
                }
            }
            self.put_sub_code(code, j, best.0);
        }
    }

    /// Encodes the rows of `x` (n × d) into `codes` (n × code_size), in parallel: per
    /// sub-quantizer, a block of sub-vectors against its codebook through the batched kernel.
    pub fn encode_batch(&self, x: &[f32], codes: &mut [u8]) {
        const BLOCK: usize = 256;
        let (d, m, dsub, cs) = (self.d, self.m, self.dsub, self.code_size());
        let tables: Vec<distance::NearestL2> =
            (0..m).map(|j| distance::NearestL2::new(self.codebook(j), dsub)).collect();
        codes.par_chunks_mut(BLOCK * cs).zip(x.par_chunks(BLOCK * d)).for_each(|(cb, xb)| {
            let rows = xb.len() / d;
            let mut sub = vec![0f32; rows * dsub];
            let mut best = vec![(0u32, 0f32); rows];
            for j in 0..m {
                for (s, r) in sub.chunks_exact_mut(dsub).zip(xb.chunks_exact(d)) {
                    s.copy_from_slice(&r[j * dsub..(j + 1) * dsub]);
                }
                tables[j].search(&sub, &mut best);
                for (i, b) in best.iter().enumerate() {
                    self.put_sub_code(&mut cb[i * cs..(i + 1) * cs], j, b.0 as usize);
                }
            }
        });
    }

    /// Reconstructs the vector a code stands for.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        for j in 0..self.m {
            let c = self.sub_code(code, j);
            out[j * self.dsub..(j + 1) * self.dsub]
                .copy_from_slice(&self.codebook(j)[c * self.dsub..(c + 1) * self.dsub]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n * d).map(|_| r.normal() as f32).collect()
    }

    /// The reconstruction error of a trained PQ must be far below the data's variance, and a
    /// code must decode to the centroid it names (encode ∘ decode is the identity on codes).
    #[test]
    fn encode_decode_error_is_bounded() {
        let (n, d, m) = (4000, 32, 8);
        let x = data(n, d, 1);
        let mut pq = ProductQuantizer::new(d, m).unwrap();
        pq.train(&x, 25, 7).unwrap();
        let mut code = vec![0u8; m];
        let mut rec = vec![0f32; d];
        let (mut err, mut energy) = (0f64, 0f64);
        for row in x.chunks_exact(d) {
            pq.encode(row, &mut code);
            pq.decode(&code, &mut rec);
            err += distance::l2_sqr(row, &rec) as f64;
            let mut batch = vec![0u8; m];
            pq.encode_batch(row, &mut batch);
            assert_eq!(batch, code);
            energy += distance::inner_product(row, row) as f64;
            let mut again = vec![0u8; m];
            pq.encode(&rec, &mut again);
            assert_eq!(again, code);
        }
        // 4-d Gaussian sub-vectors with 256 centroids: relative MSE ≈ 0.12; 0.2 leaves room.
        assert!(err / energy < 0.2, "relative error {}", err / energy);
    }

    #[test]
    fn four_bit_quantizers_have_sixteen_centroids_and_other_widths_are_refused() {
        let (n, d, m) = (2000, 16, 8);
        let x = data(n, d, 2);
        let mut pq = ProductQuantizer::with_nbits(d, m, 4).unwrap();
        assert_eq!((pq.ksub(), pq.centroids.len()), (16, d * 16));
        pq.train(&x, 10, 1).unwrap();
        assert_eq!(pq.code_size(), m / 2);
        let mut codes = vec![0u8; n * m / 2];
        pq.encode_batch(&x, &mut codes);
        let (mut code, mut rec, mut again) = (vec![0u8; m / 2], vec![0f32; d], vec![0u8; m / 2]);
        let (mut err, mut energy) = (0f64, 0f64);
        for (row, batch) in x.chunks_exact(d).zip(codes.chunks_exact(m / 2)) {
            pq.encode(row, &mut code);
            assert_eq!(code, batch);
            pq.decode(&code, &mut rec);
            pq.encode(&rec, &mut again);
            assert_eq!(again, code);
            err += distance::l2_sqr(row, &rec) as f64;
            energy += distance::inner_product(row, row) as f64;
        }
        // 2-d Gaussian sub-vectors with 16 centroids: relative MSE ≈ 0.12.
        assert!(err / energy < 0.2, "relative error {}", err / energy);
        assert_eq!(ProductQuantizer::with_nbits(d, m, 6), Err(PqError::UnsupportedNbits { nbits: 6 }));
        assert_eq!(ProductQuantizer::with_nbits(d, 1, 4), Err(PqError::OddFourBitM { m: 1 }));
        assert_eq!(
            ProductQuantizer::with_nbits(d, m, 4).unwrap().train(&x[..15 * d], 5, 1),
            Err(PqError::TooFewPoints { n: 15, need: 16 })
        );
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(ProductQuantizer::new(10, 3), Err(PqError::Indivisible { d: 10, m: 3 }));
        let mut pq = ProductQuantizer::new(8, 2).unwrap();
        assert_eq!(pq.train(&data(10, 8, 1), 5, 0), Err(PqError::TooFewPoints { n: 10, need: 256 }));
        assert!(ProductQuantizer::from_codebooks(8, 2, 8, vec![0.0; 7]).is_err());
    }
}
