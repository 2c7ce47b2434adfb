//! Codecs: what a vector's code is, as a value. A [`Codec`] knows how many bytes a vector's
//! code takes, how a list's codes are arranged for scanning (row after row for 8-bit PQ, blocks
//! of 32 for 4-bit fast-scan), how to encode, and — through a per-thread [`Scanner`] — how to
//! scan one list for one query against its distance table (faiss's `InvertedListScanner`). The
//! builder, the list store and the query pipeline hold a `Codec` and never branch on bit widths.
//!
//! The format layer has its own view of the same choice (`format::CodeLayout`: byte sizes
//! only); the engine converts between the two.

use crate::distance::{self, Metric};
use crate::pq::fast8::{self, QuantizedLut8};
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
    /// The vectors themselves (`…,Flat`): 4 · d bytes per vector (little-endian float32), lists
    /// row-major, scanned with exact distances.
    Flat,
}

/// A trained codec: a product quantizer and the way its codes are arranged and scanned, or
/// raw vectors compared under the kernel metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Codec {
    pq: Option<ProductQuantizer>,
    kind: CodeKind,
    /// Flat: the dimension and the kernel metric its scans compare by.
    d: usize,
    metric: Metric,
}

impl Codec {
    /// The codec of `pq`: 8-bit codes are scanned row by row, 4-bit codes by fast-scan.
    pub fn new(pq: ProductQuantizer) -> Self {
        let kind = if pq.nbits == 4 { CodeKind::Pq4FastScan } else { CodeKind::Pq8 };
        Codec { d: pq.d, pq: Some(pq), kind, metric: Metric::L2 }
    }

    /// Raw float32 vectors of dimension `d`, compared under `metric` (L2 or inner product).
    pub fn flat(d: usize, metric: Metric) -> Self {
        Codec { pq: None, kind: CodeKind::Flat, d, metric: metric.kernel() }
    }

    pub fn kind(&self) -> CodeKind {
        self.kind
    }

    /// The product quantizer (None for raw vectors).
    pub fn pq(&self) -> Option<&ProductQuantizer> {
        self.pq.as_ref()
    }

    /// Bytes of one vector's code (as encoded, and as sorted runs store it).
    pub fn code_size(&self) -> usize {
        self.pq.as_ref().map_or(4 * self.d, |pq| pq.code_size())
    }

    /// Encodes the rows of `x` (n × d) into `codes` (n × `code_size()`), in parallel.
    pub fn encode_batch(&self, x: &[f32], codes: &mut [u8]) {
        match &self.pq {
            Some(pq) => pq.encode_batch(x, codes),
            None => {
                for (c, v) in codes.chunks_exact_mut(4).zip(x) {
                    c.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }

    /// Arranges one list's codes (`rows`, one after another as encoded) for scanning.
    pub fn arrange_list(&self, rows: &[u8], out: &mut Vec<u8>) {
        match (self.kind, &self.pq) {
            (CodeKind::Pq4FastScan, Some(pq)) => fastscan::pack_blocks(rows, pq.m, out),
            _ => {
                out.clear();
                out.extend_from_slice(rows);
            }
        }
    }

    /// The inverse of [`arrange_list`](Self::arrange_list): the first `n` codes of an
    /// arranged list, one after another as encoded.
    pub fn unarrange_list(&self, arranged: &[u8], n: usize, out: &mut Vec<u8>) {
        match (self.kind, &self.pq) {
            (CodeKind::Pq4FastScan, Some(pq)) => fastscan::unpack_blocks(arranged, n, pq.m, out),
            _ => {
                out.clear();
                out.extend_from_slice(&arranged[..n * self.code_size()]);
            }
        }
    }

    /// Floats in a query table: m × ksub, or d for raw vectors.
    pub fn table_len(&self) -> usize {
        self.pq.as_ref().map_or(self.d, |pq| pq.m * pq.ksub())
    }

    /// An all-zero query table of this codec's shape (m × ksub; for raw vectors, the query's d
    /// values), to fill and make [`ready`](QueryTable::ready).
    pub fn query_table(&self) -> QueryTable {
        let Some(pq) = &self.pq else {
            return QueryTable { exact: vec![0.0; self.d], quantized: None, quantized8: None };
        };
        let quantized = (self.kind == CodeKind::Pq4FastScan).then(|| QuantizedLut::zeroed(pq.m));
        let quantized8 = self.transposes().then(|| QuantizedLut8::zeroed(pq.m));
        QueryTable { exact: vec![0.0; pq.m * pq.ksub()], quantized, quantized8 }
    }

    /// Whether lists kept in RAM are worth a transposed copy of their codes: 8-bit codes on a
    /// CPU with AVX-512 VBMI ([`crate::pq::fast8`]).
    pub fn transposes(&self) -> bool {
        self.kind == CodeKind::Pq8 && fast8::available()
    }

    /// Bytes a list kept in RAM holds per vector beyond its extent for the transposed codes.
    pub fn transposed_per_vector(&self) -> u64 {
        if self.transposes() {
            self.code_size() as u64
        } else {
            0
        }
    }

    /// `n` arranged codes transposed for [`crate::pq::fast8`] (where [`transposes`](Self::transposes)).
    pub fn transpose(&self, codes: &[u8], n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        fast8::arrange(&codes[..n * self.code_size()], self.code_size(), &mut out);
        out
    }

    /// Whether the codes are 4-bit fast-scan codes.
    pub fn is_fast_scan(&self) -> bool {
        self.kind == CodeKind::Pq4FastScan
    }

    /// Each vector's sum of `table` (m × ksub) over its code, for an arranged list of `n`
    /// vectors: the per-vector terms a scan adds.
    pub fn list_terms(&self, table: &[f32], codes: &[u8], n: usize, out: &mut Vec<f32>) {
        out.clear();
        let Some(pq) = &self.pq else { return };
        match self.kind {
            CodeKind::Pq4FastScan => fastscan::table_sums(table, codes, n, pq.m, out),
            _ => code_sums(table, pq.m, &codes[..n * pq.m], out),
        }
    }

    /// A scanner for one search thread.
    pub fn scanner(&self) -> Scanner {
        let m = self.pq.as_ref().map_or(self.d, |pq| pq.m);
        Scanner { kind: self.kind, m, metric: self.metric, fast: Default::default(), rows: Vec::new() }
    }
}

/// A distance table (m × ksub floats, smaller = closer) in the form its codec scans with: for
/// fast-scan, also quantized to 8 bits. Change [`exact`](Self::exact), then call
/// [`ready`](Self::ready) before scanning.
#[derive(Clone, Debug)]
pub struct QueryTable {
    pub exact: Vec<f32>,
    quantized: Option<QuantizedLut>,
    /// 8-bit codes: the table quantized for lists with a transposed copy.
    quantized8: Option<QuantizedLut8>,
}

impl QueryTable {
    /// Brings the quantized copy up to date with `exact`.
    pub fn ready(&mut self) {
        if let Some(q) = &mut self.quantized {
            q.quantize(&self.exact);
        }
        if let Some(q) = &mut self.quantized8 {
            q.quantize(&self.exact);
        }
    }

    /// The table without its 8-bit quantized copy: for lists scanned row by row (read from
    /// the device), which would pay for quantizing and never use it.
    pub fn rows_only(mut self) -> Self {
        self.quantized8 = None;
        self
    }
}

/// A list's codes as a scan reads them: `arranged` as the index stores them, the `transposed`
/// copy an 8-bit list kept in RAM may have ([`Codec::transpose`]), and `ahead`, the codes the
/// next scan will read, to prefetch on the way (empty when none is known).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListCodes<'a> {
    pub arranged: &'a [u8],
    pub transposed: Option<&'a [u8]>,
    pub ahead: &'a [u8],
}

impl<'a> ListCodes<'a> {
    /// Codes with no transposed copy and nothing to prefetch.
    pub fn new(arranged: &'a [u8]) -> Self {
        ListCodes { arranged, transposed: None, ahead: &[] }
    }
}

/// One query of a [`Scanner::scan_many`]: its table, its bias for the list, its top-k.
pub struct Visitor<'a> {
    pub table: &'a QueryTable,
    pub bias: f32,
    pub topk: TopK,
}

/// One thread's scanning scratch (fast-scan's block sums; raw vectors decoded where they cannot
/// be read in place).
#[derive(Clone, Debug)]
pub struct Scanner {
    kind: CodeKind,
    /// Sub-quantizers, or the dimension of raw vectors.
    m: usize,
    metric: Metric,
    fast: fastscan::ScanScratch,
    rows: Vec<f32>,
}

impl Scanner {
    /// Scans one list's arranged codes (`n` vectors, vector i's id `id_of(i)`) against `table`
    /// into `topk`: vector i at `(bias + terms[i]) + Σ_j table[j][code_j]` (`terms`: e.g. a
    /// list's part of an L2 distance; none = 0). Results equal exact ADC with
    /// `table.exact`: fast-scan's 8-bit sums only filter, as do the 16-bit sums of 8-bit codes
    /// scanned through their `transposed` copy ([`transpose`](Codec::transpose)) where there is one.
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &mut self,
        table: &QueryTable,
        bias: f32,
        terms: Option<&[f32]>,
        list: ListCodes,
        n: usize,
        id_of: impl Fn(usize) -> u64,
        topk: &mut TopK,
    ) {
        let codes = list.arranged;
        if let (CodeKind::Pq8, Some(lut), Some(blocks)) = (self.kind, &table.quantized8, list.transposed) {
            let scan = fast8::Scan8 { lut, exact: &table.exact, bias, terms, blocks, n };
            return fast8::scan8(&scan, codes, id_of, topk, &mut self.fast.sums);
        }
        match (self.kind, &table.quantized) {
            (CodeKind::Pq4FastScan, Some(q)) => {
                let scan = fastscan::BlockScan { lut: q, exact: &table.exact, bias, terms, blocks: codes, n };
                fastscan::scan_blocks(&scan, id_of, topk, &mut self.fast, list.ahead)
            }
            (CodeKind::Flat, _) => self.scan_flat(&table.exact, bias, &codes[..n * 4 * self.m], id_of, topk),
            _ => scan_codes(&table.exact, self.m, bias, terms, &codes[..n * self.m], id_of, topk),
        }
    }

    /// Raw vectors against the query `q`, exact distances, four rows at a time. The rows are
    /// used in place where the bytes are aligned little-endian floats (an extent's codes start
    /// on a page), else decoded once into scratch.
    fn scan_flat(&mut self, q: &[f32], bias: f32, bytes: &[u8], id_of: impl Fn(usize) -> u64, topk: &mut TopK) {
        let d = self.m;
        let rows: &[f32] = match <[f32] as zerocopy::FromBytes>::ref_from_bytes(bytes) {
            Ok(r) if cfg!(target_endian = "little") => r,
            _ => {
                self.rows.clear();
                self.rows.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                &self.rows
            }
        };
        let n = rows.len() / d.max(1);
        let row = |i: usize| &rows[i * d..(i + 1) * d];
        let mut i = 0;
        while i + 4 <= n {
            let ds = distance::dissimilarity_4(self.metric, q, [row(i), row(i + 1), row(i + 2), row(i + 3)]);
            for (j, dist) in ds.into_iter().enumerate() {
                topk.push_at(id_of(i + j), bias + dist, i + j);
            }
            i += 4;
        }
        for i in i..n {
            topk.push_at(id_of(i), bias + distance::dissimilarity(self.metric, q, row(i)), i);
        }
    }

    /// [`scan`](Self::scan) of one list for several queries (`terms` shared: they belong to
    /// the list). Fast-scan loads each block of codes once for up to four of them; the results
    /// are those of one `scan` per query.
    pub fn scan_many(
        &mut self,
        visitors: &mut [Visitor],
        terms: Option<&[f32]>,
        list: ListCodes,
        n: usize,
        id_of: impl Fn(usize) -> u64 + Copy,
    ) {
        let fast = self.kind == CodeKind::Pq4FastScan && visitors.iter().all(|v| v.table.quantized.is_some());
        if !fast {
            for (i, v) in visitors.iter_mut().enumerate() {
                let list = if i == 0 { list } else { ListCodes { ahead: &[], ..list } };
                self.scan(v.table, v.bias, terms, list, n, id_of, &mut v.topk);
            }
            return;
        }
        let (codes, ahead) = (list.arranged, list.ahead);
        let per = n.div_ceil(fastscan::BLOCK) * fastscan::BLOCK;
        for (g, group) in visitors.chunks_mut(4).enumerate() {
            // At most four tables: an array, not an allocation per list.
            fn quantized<'a>(v: &Visitor<'a>) -> &'a QuantizedLut {
                v.table.quantized.as_ref().expect("checked above: all quantized")
            }
            let mut tables = [quantized(&group[0]); 4];
            for (slot, v) in tables.iter_mut().zip(group.iter()) {
                *slot = quantized(v);
            }
            let luts = &tables[..group.len()];
            let fastscan::ScanScratch { sums, survivors } = &mut self.fast;
            sums.resize(per * luts.len(), 0);
            fastscan::block_sums_ahead(luts, codes, sums, if g == 0 { ahead } else { &[] });
            for ((v, lut), sums) in group.iter_mut().zip(luts).zip(sums.chunks(per)) {
                let scan =
                    fastscan::BlockScan { lut: *lut, exact: &v.table.exact, bias: v.bias, terms, blocks: codes, n };
                fastscan::scan_summed(&scan, sums, id_of, &mut v.topk, survivors);
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
            let codec = Codec::new(pq.clone());
            let cs = codec.code_size();
            let mut rows = vec![0u8; n * cs];
            codec.encode_batch(&x, &mut rows);
            let mut list = Vec::new();
            codec.arrange_list(&rows, &mut list);
            let blocked = nbits == 4;
            assert_eq!(list.len(), if blocked { n.div_ceil(32) * 32 * cs } else { n * cs });
            for i in [0, 1, 31, 32, 500, n - 1] {
                for j in 0..m {
                    let want = pq.sub_code(&rows[i * cs..(i + 1) * cs], j);
                    let got = if blocked {
                        fastscan::sub_code(&list[(i / 32) * 32 * cs..], i % 32, j)
                    } else {
                        list[i * cs + j] as usize
                    };
                    assert_eq!(got, want, "nbits {nbits}, vector {i}, sub-quantizer {j}");
                }
            }
            let ksub = pq.ksub();
            let mut table = codec.query_table();
            LutBuilder::new(&pq).compute(Metric::L2, &x[..d], &mut table.exact);
            table.ready();
            let lut = table.exact.clone();
            let mut s = codec.scanner();
            let mut top = TopK::new(20);
            s.scan(&table, 1.0, None, ListCodes::new(&list), n, |i| i as u64, &mut top);
            let mut want: Vec<(f32, u64)> = rows
                .chunks_exact(cs)
                .zip(0..)
                .map(|(c, id)| (1.0 + (0..m).map(|j| lut[j * ksub + pq.sub_code(c, j)]).sum::<f32>(), id))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<u64> = top.into_sorted_vec().iter().map(|nb| nb.id).collect();
            let want_ids: Vec<u64> = want[..20].iter().map(|w| w.1).collect();
            assert_eq!(got, want_ids, "nbits {nbits}");
            // Per-vector terms (a list's part of an L2 distance, here the sums of a second
            // table): the scan ranks by (bias + term) + table sum.
            let mut other = vec![0f32; m * ksub];
            LutBuilder::new(&pq).compute(Metric::L2, &x[d..2 * d], &mut other);
            let mut terms = Vec::new();
            codec.list_terms(&other, &list, n, &mut terms);
            let plain = |t: &[f32], c: &[u8]| (0..m).map(|j| t[j * ksub + pq.sub_code(c, j)]).sum::<f32>();
            for (i, c) in rows.chunks_exact(cs).enumerate() {
                assert!((terms[i] - plain(&other, c)).abs() <= 1e-3 * terms[i].abs().max(1.0), "term {i}");
            }
            let mut top = TopK::new(20);
            s.scan(&table, 1.0, Some(&terms), ListCodes::new(&list), n, |i| i as u64, &mut top);
            let mut want: Vec<(f32, u64)> =
                rows.chunks_exact(cs).zip(0..).map(|(c, id)| (1.0 + terms[id as usize] + plain(&lut, c), id)).collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got = top.into_sorted_vec();
            let want_ids: Vec<u64> = want[..20].iter().map(|w| w.1).collect();
            assert_eq!(got.iter().map(|nb| nb.id).collect::<Vec<_>>(), want_ids, "nbits {nbits}, with terms");
            // 8-bit codes through their transposed copy (where this CPU runs that kernel): the
            // same neighbours at the same distances, with terms and without.
            if codec.transposes() {
                let transposed = codec.transpose(&list, n);
                let mut again = TopK::new(20);
                s.scan(
                    &table,
                    1.0,
                    Some(&terms),
                    ListCodes { transposed: Some(&transposed), ..ListCodes::new(&list) },
                    n,
                    |i| i as u64,
                    &mut again,
                );
                assert_eq!(again.into_sorted_vec(), got, "transposed, with terms");
                let (mut a, mut b) = (TopK::new(20), TopK::new(20));
                s.scan(
                    &table,
                    1.0,
                    None,
                    ListCodes { transposed: Some(&transposed), ..ListCodes::new(&list) },
                    n,
                    |i| i as u64,
                    &mut a,
                );
                s.scan(&table, 1.0, None, ListCodes::new(&list), n, |i| i as u64, &mut b);
                assert_eq!(a.into_sorted_vec(), b.into_sorted_vec(), "transposed");
            }
        }
    }

    /// Raw vectors: encoded as their little-endian bytes, arranged as they are, and scanned
    /// with the exact distance under the codec's metric, plus the bias.
    #[test]
    fn flat_codes_are_the_vectors_and_scan_exactly() {
        let (n, d) = (37, 12);
        let mut r = Rng::new(8);
        let x: Vec<f32> = (0..n * d).map(|_| r.normal() as f32).collect();
        for metric in [Metric::L2, Metric::InnerProduct] {
            let codec = Codec::flat(d, metric);
            assert_eq!((codec.code_size(), codec.table_len(), codec.pq().is_none()), (4 * d, d, true));
            let mut rows = vec![0u8; n * codec.code_size()];
            codec.encode_batch(&x, &mut rows);
            assert_eq!(f32::from_le_bytes([rows[4], rows[5], rows[6], rows[7]]), x[1]);
            let mut list = Vec::new();
            codec.arrange_list(&rows, &mut list);
            assert_eq!(list, rows);
            let mut table = codec.query_table();
            table.exact.copy_from_slice(&x[..d]);
            let mut top = TopK::new(n);
            // Unaligned bytes are decoded, aligned ones read in place: both give the same.
            let mut shifted = vec![0u8; 1];
            shifted.extend_from_slice(&list);
            codec.scanner().scan(&table, 0.5, None, ListCodes::new(&shifted[1..]), n, |i| i as u64, &mut top);
            for nb in top.into_sorted_vec() {
                let row = &x[nb.id as usize * d..(nb.id as usize + 1) * d];
                let want = 0.5 + crate::distance::dissimilarity(metric, &x[..d], row);
                assert!((nb.dist - want).abs() <= 1e-5 * want.abs().max(1.0), "{metric}: {} vs {want}", nb.dist);
            }
        }
    }
}
