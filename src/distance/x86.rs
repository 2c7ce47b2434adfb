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
