//! Portable kernels. Written as fixed 16-lane accumulators so that LLVM vectorises them at
//! whatever width the enclosing `target_feature` allows; `x86.rs` re-instantiates them.

const LANES: usize = 16;

/// An element the distance kernels read: float32 as it is, or float16 ([`F16`]) widened
/// exactly to float32 first, so a kernel over float16 rows is bit for bit the float32 kernel
/// over their widened values.
pub trait Lane: Copy {
    fn get(self) -> f32;
}

impl Lane for f32 {
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }
}

impl Lane for F16 {
    #[inline(always)]
    fn get(self) -> f32 {
        self.to_f32()
    }
}

use super::F16;

#[inline(always)]
pub fn inner_product<T: Lane>(a: &[T], b: &[T]) -> f32 {
    one_row(a, b, |x, y| x * y)
}

#[inline(always)]
pub fn l2_sqr<T: Lane>(a: &[T], b: &[T]) -> f32 {
    one_row(a, b, |x, y| (x - y) * (x - y))
}

/// `Σ term(a[i], b[i])` in 16 lanes, the lanes summed in order, then the tail.
#[inline(always)]
fn one_row<T: Lane>(a: &[T], b: &[T], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += term(x[i].get(), y[i].get());
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ta.iter().zip(tb) {
        s += term(x.get(), y.get());
    }
    s
}

/// `Σ term(q[i], r[i])` for four rows at once: four independent accumulator chains instead of
/// one, so the FMA latency is hidden (graph searches compute distances to a node's neighbours
/// four at a time). Accumulated lane by lane as the one-row kernels do, so each result is
/// bit-identical to theirs.
#[inline(always)]
fn rows_4<T: Lane>(q: &[T], r: [&[T]; 4], term: impl Fn(f32, f32) -> f32 + Copy) -> [f32; 4] {
    let n = q.len();
    let (r0, r1, r2, r3) = (&r[0][..n], &r[1][..n], &r[2][..n], &r[3][..n]);
    let (mut a0, mut a1, mut a2, mut a3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let chunks = q
        .chunks_exact(LANES)
        .zip(r0.chunks_exact(LANES))
        .zip(r1.chunks_exact(LANES))
        .zip(r2.chunks_exact(LANES))
        .zip(r3.chunks_exact(LANES));
    for ((((x, y0), y1), y2), y3) in chunks {
        for i in 0..LANES {
            let x = x[i].get();
            a0[i] += term(x, y0[i].get());
            a1[i] += term(x, y1[i].get());
            a2[i] += term(x, y2[i].get());
            a3[i] += term(x, y3[i].get());
        }
    }
    let full = n - n % LANES;
    let finish = |a: &[f32; LANES], y: &[T]| {
        let mut s: f32 = a.iter().sum();
        for (&x, &y) in q[full..].iter().zip(&y[full..]) {
            s += term(x.get(), y.get());
        }
        s
    };
    [finish(&a0, r0), finish(&a1, r1), finish(&a2, r2), finish(&a3, r3)]
}

/// Squared L2 from `q` to four rows; each bit-identical to [`l2_sqr`] on the same pair.
#[inline(always)]
pub fn l2_sqr_4<T: Lane>(q: &[T], r: [&[T]; 4]) -> [f32; 4] {
    rows_4(q, r, |x, y| (x - y) * (x - y))
}

/// Inner products of `q` with four rows; each bit-identical to [`inner_product`].
#[inline(always)]
pub fn inner_product_4<T: Lane>(q: &[T], r: [&[T]; 4]) -> [f32; 4] {
    rows_4(q, r, |x, y| x * y)
}

/// The float16 kernels (a dispatch target of their own).
#[inline(always)]
pub fn l2_sqr_h(a: &[F16], b: &[F16]) -> f32 {
    l2_sqr(a, b)
}

#[inline(always)]
pub fn inner_product_h(a: &[F16], b: &[F16]) -> f32 {
    inner_product(a, b)
}

#[inline(always)]
pub fn l2_sqr_h_4(q: &[F16], r: [&[F16]; 4]) -> [f32; 4] {
    l2_sqr_4(q, r)
}

#[inline(always)]
pub fn inner_product_h_4(q: &[F16], r: [&[F16]; 4]) -> [f32; 4] {
    inner_product_4(q, r)
}

/// `row[k] += (scale · x[t]) · cols[t·n + k]` for each t in order (n = `row.len()`; each
/// update one fused multiply-add), with 128 entries of `row` held in registers across all of
/// `x` instead of loaded and stored again for each t (building an 8-bit PQ table is dsub such
/// updates per sub-quantizer).
#[inline(always)]
pub fn axpy_rows(scale: f32, x: &[f32], cols: &[f32], row: &mut [f32]) {
    const WIDTH: usize = 128;
    let n = row.len();
    assert!(cols.len() >= x.len() * n, "a column of n values per element of x");
    for (c, part) in row.chunks_mut(WIDTH).enumerate() {
        // A whole chunk as fixed-size arrays: with a length known only at run time LLVM kept
        // the accumulators on the stack, a load and a store around every multiply-add.
        if let Ok(part) = <&mut [f32; WIDTH]>::try_from(&mut *part) {
            let mut acc = *part;
            for (t, &xt) in x.iter().enumerate() {
                let a = scale * xt;
                let (col, _) = cols[t * n + c * WIDTH..].as_chunks::<WIDTH>();
                for (v, &u) in acc.iter_mut().zip(&col[0]) {
                    *v = a.mul_add(u, *v);
                }
            }
            *part = acc;
            continue;
        }
        let mut acc = [0f32; WIDTH];
        acc[..part.len()].copy_from_slice(part);
        for (t, &xt) in x.iter().enumerate() {
            let a = scale * xt;
            for (v, &u) in acc.iter_mut().zip(&cols[t * n + c * WIDTH..][..part.len()]) {
                *v = a.mul_add(u, *v);
            }
        }
        part.copy_from_slice(&acc[..part.len()]);
    }
}

/// Centroids per tile of the nearest-centroid kernel.
pub const TILE: usize = 32;

/// Nearest centroid for every row of `x` (n × d) against centroids stored in tiles: tile `b`
/// is d × TILE floats (centroid `b·TILE + t`, component `j` at `j·TILE + t`), `norms` the
/// squared norms padded with +∞. Four rows × 32 centroids of accumulators stay in registers,
/// so each centroid load feeds four FMAs and each row value one broadcast: a GEMM micro-kernel.
#[inline(always)]
pub fn nearest_l2_tiled(x: &[f32], d: usize, tiles: &[f32], norms: &[f32], out: &mut [(u32, f32)]) {
    let n = out.len();
    let ntiles = norms.len() / TILE;
    let mut i = 0;
    while i < n {
        let rows: [&[f32]; 4] = std::array::from_fn(|r| {
            let row = (i + r).min(n - 1);
            &x[row * d..(row + 1) * d]
        });
        // The best per lane, kept branch-free so the compare vectorises; reduced at the end
        // (smallest value, then smallest centroid number: the first minimum in scan order).
        let mut bestv = [[f32::INFINITY; TILE]; 4];
        let mut bestb = [[0u32; TILE]; 4];
        for b in 0..ntiles {
            let tile = &tiles[b * d * TILE..(b + 1) * d * TILE];
            let mut acc = [[0f32; TILE]; 4];
            for j in 0..d {
                let c = &tile[j * TILE..(j + 1) * TILE];
                for r in 0..4 {
                    let xv = rows[r][j];
                    for t in 0..TILE {
                        acc[r][t] += xv * c[t];
                    }
                }
            }
            let nb = &norms[b * TILE..(b + 1) * TILE];
            for r in 0..4 {
                for t in 0..TILE {
                    let v = nb[t] - 2.0 * acc[r][t];
                    let better = v < bestv[r][t];
                    bestv[r][t] = if better { v } else { bestv[r][t] };
                    bestb[r][t] = if better { b as u32 } else { bestb[r][t] };
                }
            }
        }
        for r in 0..4.min(n - i) {
            let mut best = (0u32, f32::INFINITY);
            for t in 0..TILE {
                let id = bestb[r][t] * TILE as u32 + t as u32;
                if bestv[r][t] < best.1 || (bestv[r][t] == best.1 && id < best.0) {
                    best = (id, bestv[r][t]);
                }
            }
            out[i + r] = (best.0, (best.1 + inner_product(rows[r], rows[r])).max(0.0));
        }
        i += 4;
    }
}

/// See [`super::within`]: a bar from a first pass, the values under it from a second.
#[inline(always)]
pub fn within(x: &[f32], add: &[f32], scale: f32, n: usize, margin: f32, kept: &mut Vec<(f32, u32)>) {
    let groups = within_groups(n) * LANES;
    let mut mins = vec![f32::INFINITY; groups];
    for (j, (&xv, &av)) in x.iter().zip(add).enumerate() {
        let g = &mut mins[j % groups];
        *g = g.min(av + scale * xv);
    }
    let mut bar = within_bar(&mut mins, n, margin);
    kept.clear();
    for (j, (&xv, &av)) in x.iter().zip(add).enumerate() {
        let v = av + scale * xv;
        if v <= bar {
            kept.push((v, j as u32));
        }
    }
    lower(kept, n, margin, &mut bar);
}

/// Vectors of 16 groups [`within`]'s first pass keeps minima of: four groups a value sought,
/// so that the n-th smallest minimum lies near the n-th smallest value.
#[inline(always)]
pub fn within_groups(n: usize) -> usize {
    n.div_ceil(4).max(1)
}

/// The bar from the groups' minima: each is a different value's, so their n-th smallest is at
/// least the true n-th smallest, and everything within the margin of that lies under it.
#[inline(always)]
pub fn within_bar(mins: &mut [f32], n: usize, margin: f32) -> f32 {
    if n > mins.len() {
        return f32::INFINITY;
    }
    mins.select_nth_unstable_by(n - 1, f32::total_cmp);
    mins[n - 1] + margin
}

/// The last step of [`within`]: the kept's n-th smallest is now the true one; what lies past it
/// plus the margin goes.
#[inline(always)]
pub fn lower(kept: &mut Vec<(f32, u32)>, n: usize, margin: f32, bar: &mut f32) {
    if kept.len() > n {
        kept.select_nth_unstable_by(n - 1, |a, b| a.0.total_cmp(&b.0));
        *bar = bar.min(kept[n - 1].0 + margin);
        let b = *bar;
        kept.retain(|v| v.0 <= b);
    }
}
