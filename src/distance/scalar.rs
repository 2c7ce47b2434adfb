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

/// `y += a · x`.
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (v, &u) in y.iter_mut().zip(x) {
        *v += a * u;
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
        let mut best = [(0u32, f32::INFINITY); 4];
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
                    if v < best[r].1 {
                        best[r] = ((b * TILE + t) as u32, v);
                    }
                }
            }
        }
        for r in 0..4.min(n - i) {
            out[i + r] = (best[r].0, (best[r].1 + inner_product(rows[r], rows[r])).max(0.0));
        }
        i += 4;
    }
}
