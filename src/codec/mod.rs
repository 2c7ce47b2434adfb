//! Codecs: what a vector's code is, as a value. A [`Codec`] knows how many bytes a vector's
//! code takes, how a list's codes are arranged for scanning (row after row for 8-bit PQ, blocks
//! of 32 for 4-bit fast-scan), how to encode, and — through a per-thread [`Scanner`] — how to
//! scan one list for one query against its distance table (faiss's `InvertedListScanner`). The
//! builder, the list store and the query pipeline hold a `Codec` and never branch on bit widths.
//!
//! The format layer has its own view of the same choice (`format::CodeLayout`: byte sizes
//! only); the engine converts between the two.

use crate::pq::fastscan::{self, QuantizedLut};
use crate::pq::{scan_codes, ProductQuantizer};
use crate::topk::TopK;

/// What a code is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    /// 8-bit PQ (`PQ{m}`): m bytes per vector, lists row-major.
    Pq8,
    /// 4-bit PQ (`PQ{m}x4fs`): m / 2 bytes per vector, lists in blocks of 32 vectors scanned
    /// with in-register 8-bit tables.
    Pq4FastScan,
}

/// A trained codec: a product quantizer and the way its codes are arranged and scanned.
#[derive(Clone, Debug, PartialEq)]
pub struct Codec {
    pq: ProductQuantizer,
    kind: CodeKind,
}

impl Codec {
    /// The codec of `pq`: 8-bit codes are scanned row by row, 4-bit codes by fast-scan.
    pub fn new(pq: ProductQuantizer) -> Self {
        let kind = if pq.nbits == 4 { CodeKind::Pq4FastScan } else { CodeKind::Pq8 };
        Codec { pq, kind }
    }

    pub fn kind(&self) -> CodeKind {
        self.kind
    }

    pub fn pq(&self) -> &ProductQuantizer {
        &self.pq
    }

    /// Bytes of one vector's code (as encoded, and as sorted runs store it).
    pub fn code_size(&self) -> usize {
        self.pq.code_size()
    }

    /// Vectors per block of a list's arranged codes (1 for row-major lists).
    pub fn block(&self) -> usize {
        match self.kind {
            CodeKind::Pq8 => 1,
            CodeKind::Pq4FastScan => fastscan::BLOCK,
        }
    }

    /// Bytes of `n` vectors' codes arranged as a list.
    pub fn list_codes_len(&self, n: usize) -> usize {
        n.div_ceil(self.block()) * self.block() * self.code_size()
    }

    /// Encodes the rows of `x` (n × d) into `codes` (n × `code_size()`), in parallel.
    pub fn encode_batch(&self, x: &[f32], codes: &mut [u8]) {
        self.pq.encode_batch(x, codes)
    }

    /// Arranges one list's codes (`rows`, one after another as encoded) for scanning.
    pub fn arrange_list(&self, rows: &[u8], out: &mut Vec<u8>) {
        match self.kind {
            CodeKind::Pq8 => {
                out.clear();
                out.extend_from_slice(rows);
            }
            CodeKind::Pq4FastScan => fastscan::pack_blocks(rows, self.pq.m, out),
        }
    }

    /// The code of vector `i` of an arranged list, as encoded (`code_size()` bytes into `out`).
    pub fn code_of(&self, list_codes: &[u8], i: usize, out: &mut [u8]) {
        let cs = self.code_size();
        match self.kind {
            CodeKind::Pq8 => out.copy_from_slice(&list_codes[i * cs..(i + 1) * cs]),
            CodeKind::Pq4FastScan => {
                let block = &list_codes[(i / fastscan::BLOCK) * fastscan::BLOCK * cs..][..fastscan::BLOCK * cs];
                for (b, o) in out.iter_mut().enumerate() {
                    let (lo, hi) =
                        (fastscan::sub_code(block, i % 32, 2 * b), fastscan::sub_code(block, i % 32, 2 * b + 1));
                    *o = lo as u8 | (hi as u8) << 4;
                }
            }
        }
    }

    /// A scanner for one search thread.
    pub fn scanner(&self) -> Scanner {
        Scanner {
            kind: self.kind,
            m: self.pq.m,
            quantized: QuantizedLut::new(&vec![0.0; self.pq.m * fastscan::KSUB4], self.pq.m),
            sums: Vec::new(),
        }
    }
}

/// One thread's scanning state: for fast-scan, the query table quantized to 8 bits and the
/// block sums. Call [`Scanner::set_table`] whenever the float table changes (per probed list
/// for L2 residual tables, once per query for inner product), then [`Scanner::scan`] per
/// extent.
#[derive(Clone, Debug)]
pub struct Scanner {
    kind: CodeKind,
    m: usize,
    quantized: QuantizedLut,
    sums: Vec<u16>,
}

impl Scanner {
    /// Takes the float table (m × ksub) the next scans use.
    pub fn set_table(&mut self, lut: &[f32]) {
        if self.kind == CodeKind::Pq4FastScan {
            self.quantized.quantize(lut);
        }
    }

    /// Scans one list's arranged codes (`n` vectors, vector i's id `id_of(i)`) against `lut`, the table last
    /// given to [`set_table`](Self::set_table), at `bias` (the per-list term) into `topk`. Results
    /// equal exact ADC with `lut`: fast-scan's 8-bit sums only filter.
    pub fn scan(
        &mut self,
        lut: &[f32],
        bias: f32,
        codes: &[u8],
        n: usize,
        id_of: impl Fn(usize) -> u64,
        topk: &mut TopK,
    ) {
        match self.kind {
            CodeKind::Pq8 => scan_codes(lut, self.m, bias, &codes[..n * self.m], id_of, topk),
            CodeKind::Pq4FastScan => {
                fastscan::scan_blocks(&self.quantized, lut, bias, codes, n, id_of, topk, &mut self.sums)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::pq::LutBuilder;
    use crate::rng::Rng;

    /// For both kinds: arranged lists give back every code, and a scan ranks as exact ADC on
    /// the decoded table sums does.
    #[test]
    fn arrange_scan_and_code_of_agree_with_plain_adc() {
        let (n, d, m) = (1000, 16, 8);
        let mut r = Rng::new(4);
        let x: Vec<f32> = (0..n * d).map(|_| r.normal() as f32).collect();
        for nbits in [8, 4] {
            let mut pq = ProductQuantizer::with_nbits(d, m, nbits).unwrap();
            pq.train(&x, 8, 1).unwrap();
            let codec = Codec::new(pq);
            let cs = codec.code_size();
            let mut rows = vec![0u8; n * cs];
            codec.encode_batch(&x, &mut rows);
            let mut list = Vec::new();
            codec.arrange_list(&rows, &mut list);
            assert_eq!(list.len(), codec.list_codes_len(n));
            let mut one = vec![0u8; cs];
            for i in [0, 1, 31, 32, 500, n - 1] {
                codec.code_of(&list, i, &mut one);
                assert_eq!(one, rows[i * cs..(i + 1) * cs], "nbits {nbits}, vector {i}");
            }
            let ksub = codec.pq().ksub();
            let mut lut = vec![0f32; m * ksub];
            LutBuilder::new(codec.pq()).compute(Metric::L2, &x[..d], &mut lut);
            let mut s = codec.scanner();
            s.set_table(&lut);
            let mut top = TopK::new(20);
            s.scan(&lut, 1.0, &list, n, |i| i as u64, &mut top);
            let mut want: Vec<(f32, u64)> = rows
                .chunks_exact(cs)
                .zip(0..)
                .map(|(c, id)| (1.0 + (0..m).map(|j| lut[j * ksub + codec.pq().sub_code(c, j)]).sum::<f32>(), id))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<u64> = top.into_sorted_vec().iter().map(|nb| nb.id).collect();
            let want: Vec<u64> = want[..20].iter().map(|w| w.1).collect();
            assert_eq!(got, want, "nbits {nbits}");
        }
    }
}
