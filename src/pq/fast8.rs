//! 8-bit PQ codes scanned with in-register tables: AVX-512 VBMI's two-table byte permute
//! (`vpermi2b`) looks up 64 codes in 128 table entries at once, so two of them and a blend on
//! the code's top bit score 64 vectors for one sub-quantizer of 256 centroids. The scalar ADC
//! scan takes a load per sub-code instead (32 a vector for `PQ32`).
//!
//! The kernel needs a list's codes transposed: blocks of 64 vectors, in each block sub-quantizer
//! after sub-quantizer, 64 bytes each (vector v's code j at byte `64·j + v`; a last, partial
//! block padded with zero codes). A list keeps that copy beside its row-major codes (the
//! list cache derives it once per cached extent). The query's table is quantized to 8 bits as
//! fast-scan's is, the sums are only a filter, and the vectors that pass it get their exact
//! ADC distances from the row-major codes: the results are the scalar scan's.

use super::fastscan::{self, BLOCK};
use super::KSUB;
use crate::topk::TopK;

/// Vectors per transposed block.
pub const BLOCK8: usize = 64;

/// A query's 8-bit table (m × 256 floats) quantized to u8 with one scale, as
/// [`fastscan::QuantizedLut`] quantizes 16-entry tables.
#[derive(Clone, Debug)]
pub struct QuantizedLut8 {
    pub m: usize,
    /// m × 256.
    pub table: Vec<u8>,
    pub bias: f32,
    pub scale: f32,
}

fastscan::quantized_fields!(QuantizedLut8);

impl QuantizedLut8 {
    /// The quantized form of an all-zero table, to be filled by [`quantize`](Self::quantize).
    pub fn zeroed(m: usize) -> Self {
        QuantizedLut8 { m, table: vec![0; m * KSUB], bias: 0.0, scale: 1.0 }
    }

    /// Quantizes `lut` (m × 256 floats, smaller = closer) in place: entry (j, k) ≈
    /// (lut\[j\]\[k\] − min_j) · scale, rounded, with one scale for all sub-quantizers.
    pub fn quantize(&mut self, lut: &[f32]) {
        assert!(self.m <= 257, "16-bit sums hold at most 257 sub-quantizers of 255");
        assert!(lut.len() >= self.m * KSUB && self.table.len() >= self.m * KSUB, "tables of m × 256 entries");
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the CPU reports AVX-512 (F, BW); sizes are asserted above.
            unsafe { vbmi::quantize(self, lut) };
            return;
        }
        self.quantize_portable(lut)
    }

    /// The reference for [`quantize`](Self::quantize).
    pub fn quantize_portable(&mut self, lut: &[f32]) {
        let (tables, _) = lut.as_chunks::<KSUB>();
        let tables = &tables[..self.m];
        // Compares, not f32::min/max: they vectorise (a NaN cannot come from finite inputs).
        let lows: Vec<f32> =
            tables.iter().map(|t| t.iter().fold(f32::INFINITY, |a, &b| if b < a { b } else { a })).collect();
        let range = tables
            .iter()
            .zip(&lows)
            .map(|(t, &lo)| t.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a }) - lo)
            .fold(0f32, |a, b| if b > a { b } else { a });
        let scale = if range > 0.0 { 255.0 / range } else { 1.0 };
        let (out, _) = self.table.as_chunks_mut::<KSUB>();
        for ((t, o), &lo) in tables.iter().zip(out).zip(&lows) {
            for (o, &v) in o.iter_mut().zip(t) {
                let q = (v - lo) * scale + 0.5;
                *o = if q < 255.0 { q as u8 } else { 255 };
            }
        }
        self.bias = lows.iter().sum();
        self.scale = scale;
    }
}

/// Whether this CPU runs the in-register kernel (elsewhere the scalar ADC scan is faster
/// than the kernel's scalar reference, and no transposed copy is worth keeping).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vbmi") && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Bytes of `n` vectors' transposed codes for `m` sub-quantizers.
pub fn arranged_len(n: usize, m: usize) -> usize {
    n.div_ceil(BLOCK8) * BLOCK8 * m
}

/// Transposes `rows` (n codes of m bytes) into blocks of 64 vectors.
pub fn arrange(rows: &[u8], m: usize, out: &mut Vec<u8>) {
    let n = rows.len() / m.max(1);
    out.clear();
    out.resize(arranged_len(n, m), 0);
    for (b, block) in out.chunks_exact_mut(BLOCK8 * m).enumerate() {
        for (v, code) in rows.chunks_exact(m).skip(b * BLOCK8).take(BLOCK8).enumerate() {
            for (j, &c) in code.iter().enumerate() {
                block[j * BLOCK8 + v] = c;
            }
        }
    }
}

/// The reference for [`block_sums`]: each vector's sum of its quantized entries, 64 a block.
pub fn block_sums_scalar(lut: &QuantizedLut8, blocks: &[u8], out: &mut [u16]) {
    let m = lut.m;
    for (block, out) in blocks.chunks_exact(BLOCK8 * m).zip(out.chunks_exact_mut(BLOCK8)) {
        for (v, o) in out.iter_mut().enumerate() {
            *o = (0..m).map(|j| lut.table[j * KSUB + block[j * BLOCK8 + v] as usize] as u16).sum();
        }
    }
}

/// Each vector's 16-bit sum of its quantized entries (`out`: 64 per block), with the VBMI
/// kernel where the CPU has it.
pub fn block_sums(lut: &QuantizedLut8, blocks: &[u8], out: &mut [u16]) {
    assert!(lut.table.len() >= lut.m * KSUB, "a table of m × 256 entries");
    assert!(out.len() >= blocks.len() / lut.m.max(1), "64 sums a block");
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU reports AVX-512 VBMI and BW; sizes are asserted above.
        unsafe { vbmi::block_sums(lut, blocks, out) };
        return;
    }
    block_sums_scalar(lut, blocks, out)
}

#[cfg(target_arch = "x86_64")]
pub mod vbmi {
    use super::{QuantizedLut8, BLOCK8, KSUB};
    use std::arch::x86_64::*;

    /// [`QuantizedLut8::quantize`] sixteen floats a register (a 256-entry table is sixteen),
    /// with the portable version's operations in its order, so the bytes are the same.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; `lut` and `q.table` must hold m × 256 values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantize(q: &mut QuantizedLut8, lut: &[f32]) {
        let m = q.m;
        let mut lows = [0f32; 257];
        let mut range = 0f32;
        for (j, low) in lows.iter_mut().enumerate().take(m) {
            // SAFETY: 16 floats at 256·j + 16·i are inside m × 256 for j < m, i < 16.
            let at = |i: usize| unsafe { _mm512_loadu_ps(lut.as_ptr().add(j * KSUB + 16 * i)) };
            let (mut lo, mut hi) = (at(0), at(0));
            for i in 1..16 {
                lo = _mm512_min_ps(lo, at(i));
                hi = _mm512_max_ps(hi, at(i));
            }
            *low = _mm512_reduce_min_ps(lo);
            let r = _mm512_reduce_max_ps(hi) - *low;
            range = if r > range { r } else { range };
        }
        let scale = if range > 0.0 { 255.0 / range } else { 1.0 };
        let (vs, half, top) = (_mm512_set1_ps(scale), _mm512_set1_ps(0.5), _mm512_set1_ps(255.0));
        for (j, &low) in lows.iter().enumerate().take(m) {
            let lo = _mm512_set1_ps(low);
            for i in 0..16 {
                let o = j * KSUB + 16 * i;
                // SAFETY: 16 floats of `lut` and 16 bytes of the table at `o` are inside m × 256.
                let v = unsafe { _mm512_loadu_ps(lut.as_ptr().add(o)) };
                let x = _mm512_min_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, lo), vs), half), top);
                let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(x));
                unsafe { _mm_storeu_si128(q.table.as_mut_ptr().add(o) as *mut __m128i, bytes) };
            }
        }
        q.bias = lows[..m].iter().sum();
        q.scale = scale;
    }

    /// [`block_sums`](super::block_sums): per sub-quantizer, 64 codes looked up in its 256
    /// entries (two `vpermi2b` over 128 each, the code's top bit picking between them), added
    /// as 16-bit words without widening (the even/odd trick of the 4-bit kernels: a word holds
    /// an even vector's entry in its low byte and the next odd one's in its high byte).
    ///
    /// # Safety
    /// The CPU must support AVX-512 VBMI and BW; `lut.table` must hold m × 256 bytes and
    /// `out` 64 sums per block of `blocks`.
    #[target_feature(enable = "avx512vbmi,avx512bw")]
    pub unsafe fn block_sums(lut: &QuantizedLut8, blocks: &[u8], out: &mut [u16]) {
        let m = lut.m;
        let z = _mm512_setzero_si512();
        // Vector order from the even and odd words: qwords 0–1 of each 128-bit lane of the
        // low unpack, then those of the high one.
        let first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
        let second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
        for (block, out) in blocks.chunks_exact(BLOCK8 * m).zip(out.chunks_exact_mut(BLOCK8)) {
            let (mut a, mut b) = (z, z);
            for j in 0..m {
                // SAFETY: 64 codes at 64·j are inside the block (m × 64 bytes) and 256 table
                // bytes at 256·j inside the table (m × 256), as j < m.
                let (codes, t) = unsafe {
                    let t = lut.table.as_ptr().add(j * KSUB);
                    (
                        _mm512_loadu_si512(block.as_ptr().add(j * BLOCK8) as *const __m512i),
                        [0, 64, 128, 192].map(|o| _mm512_loadu_si512(t.add(o) as *const __m512i)),
                    )
                };
                let lo = _mm512_permutex2var_epi8(t[0], codes, t[1]);
                let hi = _mm512_permutex2var_epi8(t[2], codes, t[3]);
                let d = _mm512_mask_blend_epi8(_mm512_movepi8_mask(codes), lo, hi);
                a = _mm512_add_epi16(a, d);
                b = _mm512_add_epi16(b, _mm512_srli_epi16(d, 8));
            }
            let even = _mm512_sub_epi16(a, _mm512_slli_epi16(b, 8));
            let (lo, hi) = (_mm512_unpacklo_epi16(even, b), _mm512_unpackhi_epi16(even, b));
            // SAFETY: `out` is 64 u16 = two unaligned 64-byte stores.
            unsafe {
                _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, _mm512_permutex2var_epi64(lo, first, hi));
                _mm512_storeu_si512(
                    out.as_mut_ptr().add(32) as *mut __m512i,
                    _mm512_permutex2var_epi64(lo, second, hi),
                );
            }
        }
    }
}

/// One list's 8-bit scan: the query's float table and its quantized copy, the list's bias and
/// per-vector terms, its codes transposed (`blocks`).
pub type Scan8<'a> = fastscan::BlockScan<'a, QuantizedLut8>;

/// Scans `scan.n` vectors (`rows`: their codes row-major) into `topk` with their ids (`id_of`),
/// with the results of [`scan_codes`](super::scan_codes) on the same table: the 16-bit sums of the quantized
/// table only filter (each within m / (2 · scale) of the exact sum), and the vectors that may
/// beat the k-th distance get `(bias + term) + Σ_j exact[j][code_j]`, summed as `scan_codes`
/// sums it. `sums` is scratch.
pub fn scan8(scan: &Scan8, rows: &[u8], id_of: impl Fn(usize) -> u64, topk: &mut TopK, sums: &mut Vec<u16>) {
    let Scan8 { lut, exact, bias, terms, blocks, n } = *scan;
    let m = lut.m;
    sums.resize(n.div_ceil(BLOCK8) * BLOCK8, 0);
    block_sums(lut, blocks, sums);
    let (tables, _) = exact.as_chunks::<KSUB>();
    let tables = &tables[..m];
    let exact_of =
        |i: usize| (bias + terms.map_or(0.0, |t| t[i])) + super::scan::adc_distance(tables, &rows[i * m..(i + 1) * m]);
    let mut threshold = topk.threshold();
    match terms {
        None => {
            let Some(mut limit) = fastscan::sum_limit(lut, bias, threshold) else { return };
            let (chunks, _) = sums.as_chunks::<BLOCK>();
            for (b, chunk) in chunks[..n.div_ceil(BLOCK)].iter().enumerate() {
                let mut mask = fastscan::passing(chunk, limit) & fastscan::lanes(n, b);
                while mask != 0 {
                    let i = b * BLOCK + mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let d = exact_of(i);
                    if d <= threshold {
                        topk.push_at(id_of(i), d, i);
                        threshold = topk.threshold();
                        let Some(tighter) = fastscan::sum_limit(lut, bias, threshold) else { return };
                        limit = limit.min(tighter);
                        mask &= fastscan::passing(chunk, limit);
                    }
                }
            }
        }
        Some(terms) => {
            // A term joins each sum before the compare: float limits, as fast-scan's.
            let inv = 1.0 / lut.scale;
            let mut limit = fastscan::scaled_limit(lut, bias, threshold) as f32;
            for (i, (&s, &t)) in sums[..n].iter().zip(terms).enumerate() {
                if t + s as f32 * inv <= limit + t.abs() * 1e-5 {
                    let d = exact_of(i);
                    if d <= threshold {
                        topk.push_at(id_of(i), d, i);
                        threshold = topk.threshold();
                        limit = fastscan::scaled_limit(lut, bias, threshold) as f32;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pq::scan_codes;
    use crate::rng::Rng;

    fn case(r: &mut Rng, n: usize, m: usize) -> (Vec<u8>, Vec<f32>) {
        crate::pq::random_codes(r, n, m, KSUB)
    }

    /// The vector quantizer gives the portable one's bytes, bias and scale.
    #[test]
    fn quantizers_agree() {
        let mut r = Rng::new(47);
        for m in [1, 8, 32, 96] {
            let lut = case(&mut r, 1, m).1;
            let (mut a, mut b) = (QuantizedLut8::zeroed(m), QuantizedLut8::zeroed(m));
            a.quantize(&lut);
            b.quantize_portable(&lut);
            assert_eq!((a.table, a.scale), (b.table, b.scale), "m {m}");
            assert!((a.bias - b.bias).abs() <= 1e-4 * b.bias.abs().max(1.0));
        }
    }

    /// Transposed blocks hold every code where the layout says, and the dispatched kernel
    /// equals the reference on random codes and tables, every m and partial block.
    #[test]
    fn kernel_equals_the_reference() {
        let mut r = Rng::new(41);
        for c in 0..60 {
            let m = [1, 4, 8, 16, 32, 48, 64][c % 7];
            let n = 1 + r.below(300) as usize;
            let (rows, lut) = case(&mut r, n, m);
            let mut q = QuantizedLut8::zeroed(m);
            q.quantize(&lut);
            let mut blocks = Vec::new();
            arrange(&rows, m, &mut blocks);
            assert_eq!(blocks.len(), arranged_len(n, m));
            for v in [0, n / 2, n - 1] {
                for j in 0..m {
                    assert_eq!(blocks[(v / BLOCK8) * BLOCK8 * m + j * BLOCK8 + v % BLOCK8], rows[v * m + j]);
                }
            }
            let len = n.div_ceil(BLOCK8) * BLOCK8;
            let (mut want, mut got) = (vec![0u16; len], vec![0u16; len]);
            block_sums_scalar(&q, &blocks, &mut want);
            block_sums(&q, &blocks, &mut got);
            assert_eq!(got, want, "case {c}: m {m}, n {n}");
            // The quantized sum stays within m / (2 · scale) of the exact table sum.
            for v in 0..n {
                let exact: f32 = (0..m).map(|j| lut[j * KSUB + rows[v * m + j] as usize]).sum();
                let approx = q.bias + want[v] as f32 / q.scale;
                assert!((exact - approx).abs() <= m as f32 * 0.5 / q.scale * 1.001 + 1e-4, "case {c}, vector {v}");
            }
        }
    }

    /// The scan returns exactly what the scalar ADC scan returns (ids and distances), with and
    /// without per-vector terms, lists one after another into one top-k.
    #[test]
    fn scan_equals_the_scalar_scan() {
        let mut r = Rng::new(43);
        for c in 0..30 {
            let m = [8, 16, 32][c % 3];
            let k = [1, 10, 100][(c / 3) % 3];
            let mut lists: Vec<(Vec<u8>, f32)> = Vec::new();
            for _ in 0..1 + r.below(5) {
                let n = 1 + r.below(400) as usize;
                lists.push((case(&mut r, n, m).0, r.normal() as f32));
            }
            let lut = case(&mut r, 1, m).1;
            let mut q = QuantizedLut8::zeroed(m);
            q.quantize(&lut);
            for with_terms in [false, true] {
                let (mut got, mut want) = (TopK::new(k), TopK::new(k));
                let mut first = 0;
                for (rows, bias) in &lists {
                    let n = rows.len() / m;
                    let terms: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.7 - 3.0).collect();
                    let terms = with_terms.then_some(terms.as_slice());
                    let mut blocks = Vec::new();
                    arrange(rows, m, &mut blocks);
                    let scan = Scan8 { lut: &q, exact: &lut, bias: *bias, terms, blocks: &blocks, n };
                    scan8(&scan, rows, |i| (first + i) as u64, &mut got, &mut Vec::new());
                    scan_codes(&lut, m, *bias, terms, rows, |i| (first + i) as u64, &mut want);
                    first += n;
                }
                assert_eq!(got.into_sorted_vec(), want.into_sorted_vec(), "case {c}, terms {with_terms}");
            }
        }
    }
}
