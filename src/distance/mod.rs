//! Distances between vectors: squared L2 and inner product, plus the batched kernels k-means and
//! assignment spend their time in.
//!
//! Internally every algorithm works with a *dissimilarity* (smaller is closer): squared L2 for
//! [`Metric::L2`], the negated inner product for [`Metric::InnerProduct`]. Cosine is the inner
//! product on vectors normalised at build and at query time, as faiss users do it.
//!
//! The kernels are written as 16-lane chunked loops that LLVM vectorises; on x86-64 the same code
//! is compiled again under `avx2` and `avx512f` and chosen at run time (see `x86.rs`).

pub mod amx;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::fmt;
use std::str::FromStr;

/// How two vectors are compared. Names as in faiss (`METRIC_L2`, `METRIC_INNER_PRODUCT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance; results report the squared distance, as faiss does.
    L2,
    /// Inner product; results report the similarity (larger is better), as faiss does.
    InnerProduct,
    /// Cosine similarity: vectors are normalised, then compared by inner product.
    Cosine,
}

impl Metric {
    /// The metric the kernels run: cosine is the inner product after normalisation.
    pub fn kernel(self) -> Metric {
        match self {
            Metric::Cosine => Metric::InnerProduct,
            m => m,
        }
    }

    /// Whether vectors must be normalised before use.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// Converts an internal dissimilarity to the figure users expect (faiss's convention).
    pub fn to_user_distance(self, d: f32) -> f32 {
        match self {
            Metric::L2 => d,
            _ => -d,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner_product" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "angular" => Ok(Metric::Cosine),
            other => Err(format!("unknown metric {other:?}: expected l2, ip or cosine")),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

#[inline]
fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

macro_rules! dispatch {
    ($f:ident ( $($arg:expr),* )) => {
        match level() {
            // SAFETY: each arm runs only when the CPU reports the feature its kernel is
            // compiled for; the kernels themselves are safe Rust.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { x86::avx512::$f($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for avx2.
            Level::Avx2 => unsafe { x86::avx2::$f($($arg),*) },
            Level::Scalar => scalar::$f($($arg),*),
        }
    };
}

/// Squared L2 distance. Slices must have equal length.
#[inline]
pub fn l2_sqr(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    dispatch!(l2_sqr(a, b))
}

/// Inner product. Slices must have equal length.
#[inline]
pub fn inner_product(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    dispatch!(inner_product(a, b))
}

/// `row[k] += (scale · x[t]) · cols[t·n + k]` for each t in order, each a fused multiply-add
/// (n = `row.len()`; the table-building step of ADC), with the row kept in registers.
#[inline]
pub fn axpy_rows(scale: f32, x: &[f32], cols: &[f32], row: &mut [f32]) {
    dispatch!(axpy_rows(scale, x, cols, row))
}

/// Asks the CPU to start loading `row` into cache (a hint; no effect on results). Graph walks
/// issue it for a node's unvisited neighbours before computing their distances, so the loads
/// of scattered rows overlap.
#[inline(always)]
pub fn prefetch(row: &[f32]) {
    prefetch_bytes(zerocopy::IntoBytes::as_bytes(row))
}

/// [`prefetch`] for bytes: asks for every cache line of `bytes`. A scan issues it for the next
/// list's codes before scanning the current one, so memory streams the next while the CPU
/// works on this one (lists are a few KiB: too short for the hardware prefetcher to ramp up).
#[inline(always)]
pub fn prefetch_bytes(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch is a hint that never faults and does not change memory; the
        // pointer comes from a live slice anyway.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Dissimilarities under `metric.kernel()` from `q` to four rows (each row at least as long
/// as `q`), each bit-identical to [`dissimilarity`] on the same pair.
#[inline]
pub fn dissimilarity_4(metric: Metric, q: &[f32], r: [&[f32]; 4]) -> [f32; 4] {
    match metric {
        Metric::L2 => dispatch!(l2_sqr_4(q, r)),
        _ => dispatch!(inner_product_4(q, r)).map(|v| -v),
    }
}

/// Fills `kept` with every (value, position) whose value `add[j] + scale · x[j]` lies within
/// `margin` of the `n`-th smallest value (n ≥ 1; `add` as long as `x`), in two passes: the
/// first keeps the minimum of each of about 4n groups of values, whose n-th smallest bounds
/// the true n-th from above; the second keeps what lies within the margin of that bound, and
/// the kept's own n-th smallest then cuts them to the true bar. The exact coarse search
/// screens every centroid's bfloat16 distance this way.
pub fn within(x: &[f32], add: &[f32], scale: f32, n: usize, margin: f32, kept: &mut Vec<(f32, u32)>) {
    assert!(n >= 1 && add.len() == x.len());
    match level() {
        // SAFETY: each arm runs only when the CPU reports the features its kernel needs.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::within_avx512(x, add, scale, n, margin, kept) },
        _ => scalar::within(x, add, scale, n, margin, kept),
    }
}

/// Dissimilarity under `metric.kernel()`: smaller is closer.
#[inline]
pub fn dissimilarity(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => l2_sqr(a, b),
        _ => -inner_product(a, b),
    }
}

/// A float16 value, kept as its bits (IEEE 754 binary16). An HNSW build holds its vectors
/// this way: half the bytes of float32 for each of the millions of distances it waits on
/// memory for. Values made by [`F16::from_f32`] are finite.
#[derive(zerocopy::IntoBytes, zerocopy::Immutable, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct F16(pub u16);

impl F16 {
    /// The largest finite float16.
    pub const MAX: f32 = 65504.0;

    /// `x` rounded to the nearest float16 (ties to even); `None` when `x` is not finite or
    /// rounds beyond [`F16::MAX`].
    pub fn from_f32(x: f32) -> Option<F16> {
        let b = x.to_bits();
        let sign = ((b >> 16) & 0x8000) as u16;
        let a = b & 0x7fff_ffff;
        // 65,520 (0x477f_f000) is the midpoint between F16::MAX and the next power of two:
        // from there on a value rounds to infinity. NaN and infinity lie above it too.
        if a >= 0x477f_f000 {
            return None;
        }
        if a < 0x3880_0000 {
            // Below float16's smallest normal (2^-14): a multiple of 2^-24, rounded. The
            // product is exact (a power of two) and 1,024 becomes the smallest normal's bits.
            let units = (f32::from_bits(a) * 16_777_216.0).round_ties_even() as u16;
            return Some(F16(sign | units));
        }
        let exp = (a >> 23) - 127 + 15;
        let mant = a & 0x7f_ffff;
        let (kept, rest) = (mant >> 13, mant & 0x1fff);
        let mut h = (exp << 10) | kept;
        // Round half to even; a carry out of the mantissa moves into the exponent, as it must.
        if rest > 0x1000 || (rest == 0x1000 && kept & 1 == 1) {
            h += 1;
        }
        Some(F16(sign | h as u16))
    }

    /// The exact float32 value. Written as shifts and one multiply by 2^112 (the difference of
    /// the exponent biases), which handles normal and subnormal values alike and vectorises;
    /// only finite values are ever stored.
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        let h = self.0 as u32;
        let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
        f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
    }
}

/// [`dissimilarity`] on float16 rows: bit for bit the float32 kernel on their values.
#[inline]
pub fn dissimilarity_h(metric: Metric, a: &[F16], b: &[F16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    match metric.kernel() {
        Metric::L2 => dispatch!(l2_sqr_h(a, b)),
        _ => -dispatch!(inner_product_h(a, b)),
    }
}

/// [`dissimilarity_4`] on float16 rows; each result equal to [`dissimilarity_h`].
#[inline]
pub fn dissimilarity_h_4(metric: Metric, q: &[F16], r: [&[F16]; 4]) -> [f32; 4] {
    match metric.kernel() {
        Metric::L2 => dispatch!(l2_sqr_h_4(q, r)),
        _ => dispatch!(inner_product_h_4(q, r)).map(|v| -v),
    }
}

/// Scales `v` to unit L2 norm; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let n = inner_product(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Centroids prepared for nearest-centroid search under squared L2: transposed into tiles of
/// 32 and paired with their squared norms, so the kernel computes ‖c‖² − 2⟨x, c⟩ (+ ‖x‖²) as a
/// register-blocked matrix product (the algebra faiss gets from BLAS). Build once per set of
/// centroids, then call [`NearestL2::search`] on as many rows as needed, from any thread.
pub struct NearestL2 {
    d: usize,
    k: usize,
    tiles: Vec<f32>,
    norms: Vec<f32>,
}

impl NearestL2 {
    /// `centroids` is k × d.
    pub fn new(centroids: &[f32], d: usize) -> Self {
        let k = centroids.len() / d;
        let ntiles = k.div_ceil(scalar::TILE);
        let mut tiles = vec![0f32; ntiles * d * scalar::TILE];
        let mut norms = vec![f32::INFINITY; ntiles * scalar::TILE];
        for (c, row) in centroids.chunks_exact(d).enumerate() {
            let (b, t) = (c / scalar::TILE, c % scalar::TILE);
            for (j, &v) in row.iter().enumerate() {
                tiles[b * d * scalar::TILE + j * scalar::TILE + t] = v;
            }
            norms[c] = inner_product(row, row);
        }
        NearestL2 { d, k, tiles, norms }
    }

    pub fn len(&self) -> usize {
        self.k
    }

    pub fn is_empty(&self) -> bool {
        self.k == 0
    }

    /// For each row of `x` (n × d): (index of the nearest centroid, squared distance).
    pub fn search(&self, x: &[f32], out: &mut [(u32, f32)]) {
        assert_eq!(x.len(), out.len() * self.d);
        if self.k == 0 || out.is_empty() {
            return;
        }
        dispatch!(nearest_l2_tiled(x, self.d, &self.tiles, &self.norms, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand_vec(r: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| r.normal() as f32).collect()
    }

    #[test]
    fn kernels_match_naive_at_every_length() {
        let mut r = Rng::new(1);
        for len in [0, 1, 3, 15, 16, 17, 31, 64, 100, 128, 384] {
            let a = rand_vec(&mut r, len);
            let b = rand_vec(&mut r, len);
            let ip: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let l2: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
            assert!((inner_product(&a, &b) as f64 - ip).abs() < 1e-3 * (1.0 + ip.abs()));
            assert!((l2_sqr(&a, &b) as f64 - l2).abs() < 1e-3 * (1.0 + l2));
            assert!((scalar::inner_product(&a, &b) as f64 - ip).abs() < 1e-3 * (1.0 + ip.abs()));
        }
    }

    /// The register-blocked table update equals one row update per element of x, in order,
    /// bit for bit, on every dispatch path and row length.
    #[test]
    fn axpy_rows_equals_row_updates_in_order() {
        let mut r = Rng::new(7);
        for (n, dsub) in [(256, 12), (256, 1), (16, 4), (100, 3), (64, 8), (300, 5)] {
            let x = rand_vec(&mut r, dsub);
            let cols = rand_vec(&mut r, n * dsub);
            let init = rand_vec(&mut r, n);
            let mut want = init.clone();
            for (t, &xt) in x.iter().enumerate() {
                let a = -2.0 * xt;
                for (v, &u) in want.iter_mut().zip(&cols[t * n..(t + 1) * n]) {
                    *v = a.mul_add(u, *v);
                }
            }
            let mut got = init.clone();
            axpy_rows(-2.0, &x, &cols, &mut got);
            assert_eq!(got, want, "n {n}, dsub {dsub}");
            let mut portable = init.clone();
            scalar::axpy_rows(-2.0, &x, &cols, &mut portable);
            assert_eq!(portable, want);
        }
    }

    /// The four-row kernels equal the one-row kernels bit for bit, on every dispatch path.
    #[test]
    fn four_row_kernels_equal_one_row_kernels() {
        let mut r = Rng::new(3);
        for len in [1, 15, 16, 17, 64, 100, 128, 384] {
            let q = rand_vec(&mut r, len);
            let rows: Vec<Vec<f32>> = (0..4).map(|_| rand_vec(&mut r, len)).collect();
            let four = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
            for m in [Metric::L2, Metric::InnerProduct] {
                let got = dissimilarity_4(m, &q, four);
                for i in 0..4 {
                    assert_eq!(got[i].to_bits(), dissimilarity(m, &q, &rows[i]).to_bits(), "{m} len {len}");
                }
            }
            assert_eq!(scalar::l2_sqr_4(&q, four)[2].to_bits(), scalar::l2_sqr(&q, &rows[2]).to_bits());
        }
    }

    /// Every finite float16 widens exactly and rounds back to itself.
    #[test]
    fn f16_round_trips_every_finite_value() {
        for h in 0..=u16::MAX {
            if (h >> 10) & 0x1f == 0x1f {
                continue;
            }
            let x = F16(h).to_f32();
            assert_eq!(F16::from_f32(x), Some(F16(h)), "{h:#06x} = {x}");
        }
        assert_eq!(F16(0x3c00).to_f32(), 1.0);
        assert_eq!(F16(0x0001).to_f32(), 2f32.powi(-24));
        assert_eq!(F16(0xfbff).to_f32(), -F16::MAX);
    }

    /// Rounding is to the nearest float16, ties to even, across the normal and subnormal ranges;
    /// what does not fit is refused.
    #[test]
    fn f16_rounds_to_nearest_even_and_refuses_what_does_not_fit() {
        let mut r = Rng::new(9);
        for _ in 0..200_000 {
            let x = (r.normal() * 2f64.powi(r.below(40) as i32 - 25)) as f32;
            let h = F16::from_f32(x).unwrap();
            let got = h.to_f32() as f64;
            let err = (got - x as f64).abs();
            // The neighbours of h (by bit pattern, same sign) are no closer.
            for nb in [h.0.wrapping_sub(1), h.0 + 1] {
                if (nb >> 10) & 0x1f == 0x1f || (nb ^ h.0) & 0x8000 != 0 {
                    continue;
                }
                let other = (F16(nb).to_f32() as f64 - x as f64).abs();
                assert!(err < other || (err == other && h.0 & 1 == 0), "{x}: {got} vs {}", F16(nb).to_f32());
            }
        }
        // Ties: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 and goes to the even one.
        assert_eq!(F16::from_f32(1.0 + 2f32.powi(-11)), Some(F16(0x3c00)));
        assert_eq!(F16::from_f32(1.0 + 3.0 * 2f32.powi(-11)), Some(F16(0x3c02)));
        assert_eq!(F16::from_f32(65519.0), Some(F16(0x7bff)));
        for x in [65520.0, -1e6, f32::INFINITY, f32::NAN] {
            assert_eq!(F16::from_f32(x), None, "{x}");
        }
        assert_eq!(F16::from_f32(-0.0), Some(F16(0x8000)));
        assert_eq!(F16::from_f32(1e-30), Some(F16(0)));
    }

    /// The float16 kernels equal the float32 kernels on the widened rows, bit for bit, on the
    /// scalar path and on every vector path this CPU has.
    #[test]
    fn half_kernels_equal_float_kernels_on_every_path() {
        let mut r = Rng::new(4);
        for len in [1, 15, 16, 17, 64, 100, 128, 384] {
            let half =
                |r: &mut Rng| -> Vec<F16> { (0..len).map(|_| F16::from_f32(r.normal() as f32).unwrap()).collect() };
            let wide = |h: &[F16]| -> Vec<f32> { h.iter().map(|v| v.to_f32()).collect() };
            let q = half(&mut r);
            let rows: Vec<Vec<F16>> = (0..4).map(|_| half(&mut r)).collect();
            let four = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
            let (qw, rw): (Vec<f32>, Vec<Vec<f32>>) = (wide(&q), rows.iter().map(|h| wide(h)).collect());
            for m in [Metric::L2, Metric::InnerProduct] {
                let got = dissimilarity_h_4(m, &q, four);
                for i in 0..4 {
                    let want = dissimilarity(m, &qw, &rw[i]).to_bits();
                    assert_eq!(got[i].to_bits(), want, "{m} len {len}");
                    assert_eq!(dissimilarity_h(m, &q, &rows[i]).to_bits(), want, "{m} len {len}");
                }
            }
            let want_l2: Vec<u32> = rw.iter().map(|w| scalar::l2_sqr(&qw, w).to_bits()).collect();
            let want_ip: Vec<u32> = rw.iter().map(|w| scalar::inner_product(&qw, w).to_bits()).collect();
            let check = |l2: [f32; 4], ip: [f32; 4], one_l2: f32, one_ip: f32, path: &str| {
                assert_eq!(l2.map(f32::to_bits).to_vec(), want_l2, "{path} l2 len {len}");
                assert_eq!(ip.map(f32::to_bits).to_vec(), want_ip, "{path} ip len {len}");
                assert_eq!(one_l2.to_bits(), want_l2[1], "{path} len {len}");
                assert_eq!(one_ip.to_bits(), want_ip[1], "{path} len {len}");
            };
            let (a, b) = (&q[..], &rows[1][..]);
            check(
                scalar::l2_sqr_h_4(a, four),
                scalar::inner_product_h_4(a, four),
                scalar::l2_sqr_h(a, b),
                scalar::inner_product_h(a, b),
                "scalar",
            );
            // Each vector path the CPU has, the kernels of its module against the same bits.
            #[cfg(target_arch = "x86_64")]
            macro_rules! on_path {
                ($path:ident, $has:expr) => {
                    if $has {
                        // SAFETY: the CPU has the features this module's kernels are compiled for.
                        let got = unsafe {
                            (
                                x86::$path::l2_sqr_h_4(a, four),
                                x86::$path::inner_product_h_4(a, four),
                                x86::$path::l2_sqr_h(a, b),
                                x86::$path::inner_product_h(a, b),
                            )
                        };
                        check(got.0, got.1, got.2, got.3, stringify!($path));
                    }
                };
            }
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                on_path!(avx2, has!("avx2") && has!("fma"));
                on_path!(avx512, has!("avx512f"));
            }
        }
    }

    #[test]
    fn nearest_l2_agrees_with_brute_force() {
        for d in [1, 2, 4, 8, 20, 33] {
            nearest_l2_case(d);
        }
    }

    fn nearest_l2_case(d: usize) {
        let mut r = Rng::new(2);
        let (n, k) = (37, 71);
        let x = rand_vec(&mut r, n * d);
        let c = rand_vec(&mut r, k * d);
        let mut out = vec![(0u32, 0f32); n];
        NearestL2::new(&c, d).search(&x, &mut out);
        for i in 0..n {
            let xi = &x[i * d..(i + 1) * d];
            let best = (0..k)
                .min_by(|&a, &b| l2_sqr(xi, &c[a * d..(a + 1) * d]).total_cmp(&l2_sqr(xi, &c[b * d..(b + 1) * d])))
                .unwrap();
            assert_eq!(out[i].0 as usize, best);
            assert!((out[i].1 - l2_sqr(xi, &c[best * d..(best + 1) * d])).abs() < 1e-3);
        }
    }

    #[test]
    fn metric_names_round_trip() {
        for m in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            assert_eq!(m.name().parse::<Metric>().unwrap(), m);
        }
        assert!("hamming".parse::<Metric>().is_err());
    }

    /// Everything within the margin of the n-th smallest is kept, nothing past it, on the
    /// dispatched path and the scalar one alike.
    #[test]
    fn within_keeps_everything_near_the_nth() {
        let mut r = Rng::new(9);
        let (mut kept, mut plain) = (Vec::new(), Vec::new());
        for (len, n, margin) in
            [(1000, 16, 0.05f32), (5, 2, 0.0), (300, 300, 1.0), (4096, 1, 0.0), (2000, 40, 10.0), (33, 40, 0.1)]
        {
            let x: Vec<f32> = (0..len).map(|_| r.next_f64() as f32).collect();
            let add: Vec<f32> = (0..len).map(|_| r.next_f64() as f32).collect();
            let v: Vec<f32> = x.iter().zip(&add).map(|(x, a)| a - 2.0 * x).collect();
            within(&x, &add, -2.0, n, margin, &mut kept);
            scalar::within(&x, &add, -2.0, n, margin, &mut plain);
            let mut sorted = v.clone();
            sorted.sort_unstable_by(f32::total_cmp);
            let bar = sorted[n.min(len) - 1] + margin;
            let want: Vec<u32> = (0..len as u32).filter(|&i| v[i as usize] <= bar).collect();
            for got in [&kept, &plain] {
                let mut got: Vec<u32> = got.iter().map(|k| k.1).collect();
                got.sort_unstable();
                assert_eq!(got, want, "len {len} n {n} margin {margin}");
            }
        }
    }
}
