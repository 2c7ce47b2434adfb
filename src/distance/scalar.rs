//! Portable kernels. Written as fixed 16-lane accumulators so that LLVM vectorises them at
//! whatever width the enclosing `target_feature` allows; `x86.rs` re-instantiates them.

const LANES: usize = 16;

#[inline(always)]
pub fn inner_product(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

#[inline(always)]
pub fn l2_sqr(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let t = x[i] - y[i];
            acc[i] += t * t;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ta.iter().zip(tb) {
        s += (x - y) * (x - y);
    }
    s
}

/// Four inner products against one `y`, so `y` is read once for four rows.
#[inline(always)]
fn inner_product4(x: [&[f32]; 4], y: &[f32]) -> [f32; 4] {
    let d = y.len();
    let mut acc = [[0f32; LANES]; 4];
    let full = d - d % LANES;
    let mut j = 0;
    while j < full {
        let yc = &y[j..j + LANES];
        for r in 0..4 {
            let xc = &x[r][j..j + LANES];
            for i in 0..LANES {
                acc[r][i] += xc[i] * yc[i];
            }
        }
        j += LANES;
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        out[r] = acc[r].iter().sum::<f32>();
        for t in full..d {
            out[r] += x[r][t] * y[t];
        }
    }
    out
}

#[inline(always)]
pub fn nearest_l2(x: &[f32], d: usize, centroids: &[f32], c_norms: &[f32], out: &mut [(u32, f32)]) {
    let mut rows = x.chunks_exact(4 * d);
    let mut outs = out.chunks_exact_mut(4);
    for (block, o) in (&mut rows).zip(&mut outs) {
        let xs = [
            &block[..d],
            &block[d..2 * d],
            &block[2 * d..3 * d],
            &block[3 * d..],
        ];
        let mut best = [(0u32, f32::INFINITY); 4];
        for (c, (cv, &cn)) in centroids.chunks_exact(d).zip(c_norms).enumerate() {
            let ip = inner_product4(xs, cv);
            for r in 0..4 {
                let v = cn - 2.0 * ip[r];
                if v < best[r].1 {
                    best[r] = (c as u32, v);
                }
            }
        }
        for r in 0..4 {
            let xn = inner_product(xs[r], xs[r]);
            o[r] = (best[r].0, (best[r].1 + xn).max(0.0));
        }
    }
    for (xr, o) in rows.remainder().chunks_exact(d).zip(outs.into_remainder()) {
        let mut best = (0u32, f32::INFINITY);
        for (c, (cv, &cn)) in centroids.chunks_exact(d).zip(c_norms).enumerate() {
            let v = cn - 2.0 * inner_product(xr, cv);
            if v < best.1 {
                best = (c as u32, v);
            }
        }
        *o = (best.0, (best.1 + inner_product(xr, xr)).max(0.0));
    }
}

/// Nearest centroid for small `d` (PQ sub-vectors: dsub = 2..8), where a dot product is too
/// short to vectorise: with the centroids transposed to d × k, the inner loop runs over
/// centroids instead, k lanes wide.
#[inline(always)]
pub fn nearest_l2_transposed(
    x: &[f32],
    d: usize,
    ct: &[f32],
    c_norms: &[f32],
    out: &mut [(u32, f32)],
) {
    let k = c_norms.len();
    let mut acc = vec![0f32; k];
    for (xr, o) in x.chunks_exact(d).zip(out.iter_mut()) {
        acc.copy_from_slice(c_norms);
        for (j, &xj) in xr.iter().enumerate() {
            let m2x = -2.0 * xj;
            for (a, &c) in acc.iter_mut().zip(&ct[j * k..(j + 1) * k]) {
                *a += m2x * c;
            }
        }
        let mut best = (0u32, f32::INFINITY);
        for (c, &v) in acc.iter().enumerate() {
            if v < best.1 {
                best = (c as u32, v);
            }
        }
        *o = (best.0, (best.1 + inner_product(xr, xr)).max(0.0));
    }
}
