//! Codecs: what a vector's code is, as a value. A [`Codec`] knows how many bytes a vector's
//! code takes, how a list's codes are arranged for scanning (row after row for 8-bit PQ, blocks
//! of 32 for 4-bit fast-scan), how to encode, and — through a per-thread [`Scanner`] — how to
//! scan one list for one query against its distance table (faiss's `InvertedListScanner`). The
//! builder, the list store and the query pipeline hold a `Codec` and never branch on bit widths.
//!
//! The format layer has its own view of the same choice (`format::CodeLayout`: byte sizes
//! only); the engine converts between the two.

use crate::pq::fastscan::{self, QuantizedLut};
use crate::pq::{code_sums, scan_codes, ProductQuantizer};
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

    /// An all-zero query table of this codec's shape (m × ksub), to fill and make
    /// [`ready`](QueryTable::ready).
    pub fn query_table(&self) -> QueryTable {
        let len = self.pq.m * self.pq.ksub();
        let quantized = (self.kind == CodeKind::Pq4FastScan).then(|| QuantizedLut::zeroed(self.pq.m));
        QueryTable { exact: vec![0.0; len], quantized }
    }

    /// Whether the codes are 4-bit fast-scan codes.
    pub fn is_fast_scan(&self) -> bool {
        self.kind == CodeKind::Pq4FastScan
    }

    /// Each vector's sum of `table` (m × ksub) over its code, for an arranged list of `n`
    /// vectors: the per-vector terms a scan adds.
    pub fn list_terms(&self, table: &[f32], codes: &[u8], n: usize, out: &mut Vec<f32>) {
        match self.kind {
            CodeKind::Pq8 => code_sums(table, self.pq.m, &codes[..n * self.pq.m], out),
            CodeKind::Pq4FastScan => fastscan::table_sums(table, codes, n, self.pq.m, out),
        }
    }

    /// A scanner for one search thread.
    pub fn scanner(&self) -> Scanner {
        Scanner { kind: self.kind, m: self.pq.m, sums: Vec::new() }
    }
}

/// A distance table (m × ksub floats, smaller = closer) in the form its codec scans with: for
/// fast-scan, also quantized to 8 bits. Change [`exact`](Self::exact), then call
/// [`ready`](Self::ready) before scanning.
#[derive(Clone, Debug)]
pub struct QueryTable {
    pub exact: Vec<f32>,
    quantized: Option<QuantizedLut>,
}

impl QueryTable {
    /// Brings the quantized copy up to date with `exact`.
    pub fn ready(&mut self) {
        if let Some(q) = &mut self.quantized {
            q.quantize(&self.exact);
        }
    }
}

/// One query of a [`Scanner::scan_many`]: its table, its bias for the list, its top-k.
pub struct Visitor<'a> {
    pub table: &'a QueryTable,
    pub bias: f32,
    pub topk: TopK,
}

/// One thread's scanning scratch (fast-scan's block sums).
#[derive(Clone, Debug)]
pub struct Scanner {
    kind: CodeKind,
    m: usize,
    sums: Vec<u16>,
}

impl Scanner {
    /// Scans one list's arranged codes (`n` vectors, vector i's id `id_of(i)`) against `table`
    /// into `topk`: vector i at `(bias + terms[i]) + Σ_j table[j][code_j]` (`terms`: e.g. a
    /// list's part of an L2 distance; none = 0). Results equal exact ADC with
    /// `table.exact`: fast-scan's 8-bit sums only filter.
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &mut self,
        table: &QueryTable,
        bias: f32,
        terms: Option<&[f32]>,
        codes: &[u8],
        n: usize,
        id_of: impl Fn(usize) -> u64,
        topk: &mut TopK,
    ) {
        match (self.kind, &table.quantized) {
            (CodeKind::Pq4FastScan, Some(q)) => {
                let scan = fastscan::BlockScan { lut: q, exact: &table.exact, bias, terms, blocks: codes, n };
                fastscan::scan_blocks(&scan, id_of, topk, &mut self.sums)
            }
            _ => scan_codes(&table.exact, self.m, bias, terms, &codes[..n * self.m], id_of, topk),
        }
    }

    /// [`scan`](Self::scan) of one list for several queries (`terms` shared: they belong to
    /// the list). Fast-scan loads each block of codes once for up to four of them; the
    /// results are those of one `scan` per query.
    pub fn scan_many(
        &mut self,
        visitors: &mut [Visitor],
        terms: Option<&[f32]>,
        codes: &[u8],
        n: usize,
        id_of: impl Fn(usize) -> u64 + Copy,
    ) {
        let fast = self.kind == CodeKind::Pq4FastScan && visitors.iter().all(|v| v.table.quantized.is_some());
        if !fast {
            for v in visitors.iter_mut() {
                self.scan(v.table, v.bias, terms, codes, n, id_of, &mut v.topk);
            }
            return;
        }
        let per = n.div_ceil(fastscan::BLOCK) * fastscan::BLOCK;
        for group in visitors.chunks_mut(4) {
            // At most four tables: an array, not an allocation per list.
            fn quantized<'a>(v: &Visitor<'a>) -> &'a QuantizedLut {
                v.table.quantized.as_ref().expect("checked above: all quantized")
            }
            let mut tables = [quantized(&group[0]); 4];
            for (slot, v) in tables.iter_mut().zip(group.iter()) {
                *slot = quantized(v);
            }
            let luts = &tables[..group.len()];
            self.sums.resize(per * luts.len(), 0);
            fastscan::block_sums_many(luts, codes, &mut self.sums);
            for ((v, lut), sums) in group.iter_mut().zip(luts).zip(self.sums.chunks(per)) {
                let scan = fastscan::BlockScan { lut, exact: &v.table.exact, bias: v.bias, terms, blocks: codes, n };
                fastscan::scan_summed(&scan, sums, id_of, &mut v.topk);
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

    /// For both kinds: arranged lists hold every code where the layout says (row-major, or
    /// blocks of 32 padded with zero codes), and a scan ranks as exact ADC on the decoded
    /// table sums does.
    #[test]
    fn arranged_lists_keep_every_code_and_scan_as_plain_adc() {
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
            let blocked = nbits == 4;
            assert_eq!(list.len(), if blocked { n.div_ceil(32) * 32 * cs } else { n * cs });
            for i in [0, 1, 31, 32, 500, n - 1] {
                for j in 0..m {
                    let want = codec.pq().sub_code(&rows[i * cs..(i + 1) * cs], j);
                    let got = if blocked {
                        fastscan::sub_code(&list[(i / 32) * 32 * cs..], i % 32, j)
                    } else {
                        list[i * cs + j] as usize
                    };
                    assert_eq!(got, want, "nbits {nbits}, vector {i}, sub-quantizer {j}");
                }
            }
            let ksub = codec.pq().ksub();
            let mut table = codec.query_table();
            LutBuilder::new(codec.pq()).compute(Metric::L2, &x[..d], &mut table.exact);
            table.ready();
            let lut = table.exact.clone();
            let mut s = codec.scanner();
            let mut top = TopK::new(20);
            s.scan(&table, 1.0, None, &list, n, |i| i as u64, &mut top);
            let mut want: Vec<(f32, u64)> = rows
                .chunks_exact(cs)
                .zip(0..)
                .map(|(c, id)| (1.0 + (0..m).map(|j| lut[j * ksub + codec.pq().sub_code(c, j)]).sum::<f32>(), id))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<u64> = top.into_sorted_vec().iter().map(|nb| nb.id).collect();
            let want_ids: Vec<u64> = want[..20].iter().map(|w| w.1).collect();
            assert_eq!(got, want_ids, "nbits {nbits}");
            // Per-vector terms (a list's part of an L2 distance, here the sums of a second
            // table): the scan ranks by (bias + term) + table sum.
            let mut other = vec![0f32; m * ksub];
            LutBuilder::new(codec.pq()).compute(Metric::L2, &x[d..2 * d], &mut other);
            let mut terms = Vec::new();
            codec.list_terms(&other, &list, n, &mut terms);
            let plain = |t: &[f32], c: &[u8]| (0..m).map(|j| t[j * ksub + codec.pq().sub_code(c, j)]).sum::<f32>();
            for (i, c) in rows.chunks_exact(cs).enumerate() {
                assert!((terms[i] - plain(&other, c)).abs() <= 1e-3 * terms[i].abs().max(1.0), "term {i}");
            }
            let mut top = TopK::new(20);
            s.scan(&table, 1.0, Some(&terms), &list, n, |i| i as u64, &mut top);
            let mut want: Vec<(f32, u64)> =
                rows.chunks_exact(cs).zip(0..).map(|(c, id)| (1.0 + terms[id as usize] + plain(&lut, c), id)).collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<u64> = top.into_sorted_vec().iter().map(|nb| nb.id).collect();
            let want_ids: Vec<u64> = want[..20].iter().map(|w| w.1).collect();
            assert_eq!(got, want_ids, "nbits {nbits}, with terms");
        }
    }
}
