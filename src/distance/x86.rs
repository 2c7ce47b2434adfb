//! The portable kernels of `scalar.rs`, compiled again with wider vector units enabled.
//! Callers check the CPU feature first (see `dispatch!` in `mod.rs`).

macro_rules! instantiate {
    ($name:ident, $feat:literal) => {
        pub mod $name {
            use super::super::{scalar, F16};

            /// # Safety
            /// The CPU must support the target feature this module is compiled for.
            #[target_feature(enable = $feat)]
            pub unsafe fn inner_product(a: &[f32], b: &[f32]) -> f32 {
                scalar::inner_product(a, b)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn l2_sqr(a: &[f32], b: &[f32]) -> f32 {
                scalar::l2_sqr(a, b)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn l2_sqr_4(q: &[f32], r: [&[f32]; 4]) -> [f32; 4] {
                scalar::l2_sqr_4(q, r)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn inner_product_4(q: &[f32], r: [&[f32]; 4]) -> [f32; 4] {
                scalar::inner_product_4(q, r)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn l2_sqr_h(a: &[F16], b: &[F16]) -> f32 {
                scalar::l2_sqr_h(a, b)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn inner_product_h(a: &[F16], b: &[F16]) -> f32 {
                scalar::inner_product_h(a, b)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn l2_sqr_h_4(q: &[F16], r: [&[F16]; 4]) -> [f32; 4] {
                scalar::l2_sqr_h_4(q, r)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn inner_product_h_4(q: &[F16], r: [&[F16]; 4]) -> [f32; 4] {
                scalar::inner_product_h_4(q, r)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn axpy_rows(scale: f32, x: &[f32], cols: &[f32], row: &mut [f32]) {
                scalar::axpy_rows(scale, x, cols, row)
            }

            /// # Safety
            /// As for `inner_product`.
            #[target_feature(enable = $feat)]
            pub unsafe fn nearest_l2_tiled(x: &[f32], d: usize, tiles: &[f32], norms: &[f32], out: &mut [(u32, f32)]) {
                scalar::nearest_l2_tiled(x, d, tiles, norms, out)
            }
        }
    };
}

instantiate!(avx2, "avx2,fma");
instantiate!(avx512, "avx512f,avx2,fma");

use super::scalar;

/// `scalar::within` in AVX-512: the first pass keeps its minima in vector registers (16
/// groups each), the second tests each block of 16 with one compare into a mask register
/// (what LLVM makes of the portable loop reduces the 16 tests through shuffles). The same
/// values, the same kept.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn within_avx512(x: &[f32], add: &[f32], scale: f32, n: usize, margin: f32, kept: &mut Vec<(f32, u32)>) {
    use std::arch::x86_64::*;
    let s = _mm512_set1_ps(scale);
    let blocks = x.len().min(add.len()) / 16;
    // SAFETY: for c < blocks, 16 values from c · 16 lie inside both slices.
    let value = |c: usize| unsafe {
        _mm512_add_ps(
            _mm512_loadu_ps(add.as_ptr().add(c * 16)),
            _mm512_mul_ps(s, _mm512_loadu_ps(x.as_ptr().add(c * 16))),
        )
    };
    // More groups than `within_groups` asks for only bring the bar closer to the n-th value.
    let mut lanes = Vec::new();
    match scalar::within_groups(n).next_power_of_two() {
        1 => minima::<1>(blocks, &value, &mut lanes),
        2 => minima::<2>(blocks, &value, &mut lanes),
        4 => minima::<4>(blocks, &value, &mut lanes),
        8 => minima::<8>(blocks, &value, &mut lanes),
        16 => minima::<16>(blocks, &value, &mut lanes),
        _ => minima::<32>(blocks, &value, &mut lanes),
    }
    let mut bar = scalar::within_bar(&mut lanes, n, margin);
    kept.clear();
    let b = _mm512_set1_ps(bar);
    let mut vals = [0f32; 16];
    for c in 0..blocks {
        let v = value(c);
        let mut under = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, b) as u32;
        if under == 0 {
            continue;
        }
        // SAFETY: `vals` holds 16 floats.
        unsafe { _mm512_storeu_ps(vals.as_mut_ptr(), v) };
        while under != 0 {
            let i = under.trailing_zeros() as usize;
            under &= under - 1;
            kept.push((vals[i], (c * 16 + i) as u32));
        }
    }
    for j in blocks * 16..x.len() {
        let v = add[j] + scale * x[j];
        if v <= bar {
            kept.push((v, j as u32));
        }
    }
    scalar::lower(kept, n, margin, &mut bar);
}

/// The first pass of [`within_avx512`]: the minima of `R` vectors of 16 groups (block c goes
/// to vector c mod R), kept in registers, then written out as 16 · R values.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn minima<const R: usize>(
    blocks: usize,
    value: &impl Fn(usize) -> std::arch::x86_64::__m512,
    lanes: &mut Vec<f32>,
) {
    use std::arch::x86_64::*;
    let mut m = [_mm512_set1_ps(f32::INFINITY); R];
    let mut c = 0;
    while c + R <= blocks {
        for (g, mg) in m.iter_mut().enumerate() {
            *mg = _mm512_min_ps(*mg, value(c + g));
        }
        c += R;
    }
    for (g, mg) in m.iter_mut().enumerate().take(blocks - c) {
        *mg = _mm512_min_ps(*mg, value(c + g));
    }
    lanes.resize(R * 16, 0.0);
    for (mg, out) in m.iter().zip(lanes.chunks_exact_mut(16)) {
        // SAFETY: `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *mg) };
    }
}
