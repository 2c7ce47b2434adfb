//! Inner products of a few query rows against many stored rows on Intel AMX tiles, in
//! bfloat16 with float32 sums: one `tdpbf16ps` multiplies a 16 × 32 block of queries by a
//! 32 × 16 block of rows (8,192 multiply-adds), about 16× what AVX-512 FMAs do in the same
//! cycles. The exact coarse search ([`crate::ivf`]) screens every centroid with these
//! products, then recomputes the few that can be among the nearest in float32, so the
//! rounding to bfloat16 never changes a result.
//!
//! Linux hands the tile registers only to processes that ask (`arch_prctl`
//! `ARCH_REQ_XCOMP_PERM`); [`Amx::get`] asks once and says whether the CPU and the kernel
//! allow it. Elsewhere, callers take their float32 path.

/// Query rows a call multiplies at once (a tile's rows).
pub const ROWS: usize = 16;
/// Stored rows one kernel call covers (four tiles of 16); panels are padded to it.
const COLS: usize = 64;
/// bfloat16 values in a tile row (64 bytes): the depth of one product step.
const DEPTH: usize = 32;

/// `x` rounded to the nearest bfloat16, ties to even (finite inputs; an infinity stays one).
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Rows of an n × d matrix rounded to bfloat16 and laid out as AMX's second operand: blocks
/// of 16 rows, each block the pairs of dimensions (2i, 2i + 1) in turn, every row's pair side
/// by side (64 bytes a pair of dimensions). Rows are padded with zeros to a multiple of 64
/// and dimensions to a multiple of 32.
#[derive(Clone, Debug)]
pub struct Bf16Panel {
    rows: usize,
    d: usize,
    dpad: usize,
    data: Vec<u16>,
}

impl Bf16Panel {
    /// `rows` is n × d.
    pub fn new(rows: &[f32], d: usize) -> Self {
        assert!(d > 0 && rows.len().is_multiple_of(d));
        let n = rows.len() / d;
        let dpad = d.div_ceil(DEPTH) * DEPTH;
        let npad = n.div_ceil(COLS) * COLS;
        let mut data = vec![0u16; npad * dpad];
        for (j, row) in rows.chunks_exact(d).enumerate() {
            let block = &mut data[(j / 16) * 16 * dpad..][..16 * dpad];
            for (k, &v) in row.iter().enumerate() {
                block[(k / 2) * 32 + (j % 16) * 2 + k % 2] = to_bf16(v);
            }
        }
        Bf16Panel { rows: n, d, dpad, data }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Row count padded to the kernel's width: the row stride of [`Amx::dots`]'s output.
    pub fn padded_len(&self) -> usize {
        self.data.len() / self.dpad
    }

    /// Row `j`'s value at dimension `k`, as stored.
    fn at(&self, j: usize, k: usize) -> f32 {
        from_bf16(self.data[(j / 16) * 16 * self.dpad + (k / 2) * 32 + (j % 16) * 2 + k % 2])
    }
}

/// Proof that this thread may use the tile registers: the CPU has AMX-BF16 and the kernel
/// granted this process its tile data.
#[derive(Clone, Copy, Debug)]
pub struct Amx(());

impl Amx {
    /// `Some` where AMX bfloat16 products can run (asked of the kernel once per process).
    pub fn get() -> Option<Amx> {
        static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        GRANTED.get_or_init(request).then_some(Amx(()))
    }

    /// `out[r · padded_len + j] = Σ_k bf16(a[r][k]) · bf16(row j[k])` for each row r of `a`
    /// (at most [`ROWS`] rows of `panel`'s d values) and each row j of `panel`; rows of `out`
    /// past `a`'s and columns past `panel.len()` hold zeros. Products of bfloat16 values are
    /// exact in float32; the sums are float32's.
    pub fn dots(self, panel: &Bf16Panel, a: &[f32], out: &mut [f32]) {
        let (d, dpad, npad) = (panel.d, panel.dpad, panel.padded_len());
        assert!(a.len().is_multiple_of(d) && a.len() / d <= ROWS, "at most {ROWS} rows of {d}");
        assert!(out.len() >= ROWS * npad);
        let mut tile = vec![0u16; ROWS * dpad];
        for (row, src) in tile.chunks_exact_mut(dpad).zip(a.chunks_exact(d)) {
            row.iter_mut().zip(src).for_each(|(t, &v)| *t = to_bf16(v));
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Amx` exists only where the CPU has AMX-BF16 and the kernel granted the
        // tile data (`request`). `tile` holds 16 rows of `dpad` values, `panel.data` npad /
        // 16 blocks of 16 × dpad, and `out` at least 16 rows of npad: every load and store of
        // `kernel` lies inside them (see its comment).
        unsafe {
            x86::configure();
            for group in 0..npad / COLS {
                x86::kernel(
                    tile.as_ptr(),
                    dpad,
                    panel.data.as_ptr().add(group * COLS * dpad),
                    out.as_mut_ptr().add(group * COLS),
                    npad,
                );
            }
            x86::release();
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (tile, out);
    }
}

/// [`Amx::dots`] computed one product at a time in f64 from the same bfloat16 values: the
/// reference the tiles are checked against.
pub fn dots_reference(panel: &Bf16Panel, a: &[f32], out: &mut [f32]) {
    let (d, npad) = (panel.d, panel.padded_len());
    out[..ROWS * npad].fill(0.0);
    for (r, q) in a.chunks_exact(d).enumerate() {
        for j in 0..panel.rows {
            let s: f64 = q.iter().enumerate().map(|(k, &v)| from_bf16(to_bf16(v)) as f64 * panel.at(j, k) as f64).sum();
            out[r * npad + j] = s as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn request() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let (tile, bf16) = (leaf7.edx >> 24 & 1 == 1, leaf7.edx >> 22 & 1 == 1);
    if !(tile && bf16) {
        return false;
    }
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes which state components this
    // process may use; it fails (and we say no) on kernels without AMX support.
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    if r != 0 {
        log::debug!("AMX present but not granted by the kernel: {}", std::io::Error::last_os_error());
    }
    r == 0
}

#[cfg(not(target_arch = "x86_64"))]
fn request() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;

    /// Palette 1, all eight tiles 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    const CONFIG: Config = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
            t += 1;
        }
        Config(c)
    };

    /// Loads the tile configuration on this thread.
    ///
    /// # Safety
    /// The process must hold the tile data permission and the CPU have AMX.
    pub unsafe fn configure() {
        asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
    }

    /// Gives the tile state back (the kernel then need not save it on a switch).
    ///
    /// # Safety
    /// As [`configure`].
    pub unsafe fn release() {
        asm!("tilerelease", options(nostack, nomem));
    }

    /// C (16 × 64 floats at `c`, row stride `ldc` floats) = A × B: A is 16 rows of `dpad`
    /// bfloat16 at `a` (row stride dpad), B four panel blocks of 16 rows at `b`, each 16 ×
    /// dpad values. Each step loads A's next 32 dimensions (16 rows × 64 bytes) and the
    /// same 16 pairs of dimensions of each block (16 × 64 bytes, 1,024 bytes further each
    /// step), so after dpad / 32 steps A has been read to its rows' ends and each block to
    /// its end.
    ///
    /// # Safety
    /// [`configure`] ran on this thread; `a` points at 16 × dpad values, `b` at 4 × 16 ×
    /// dpad, `c` at 16 rows of `ldc` ≥ 64 floats; dpad is a positive multiple of 32.
    pub unsafe fn kernel(a: *const u16, dpad: usize, b: *const u16, c: *mut f32, ldc: usize) {
        let block = 16 * dpad;
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a} + {lda}*1]",
            "tileloadd tmm5, [{b0} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm5",
            "tileloadd tmm6, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm1, tmm4, tmm6",
            "tileloadd tmm7, [{b2} + {ldb}*1]",
            "tdpbf16ps tmm2, tmm4, tmm7",
            "tileloadd tmm5, [{b3} + {ldb}*1]",
            "tdpbf16ps tmm3, tmm4, tmm5",
            "add {a}, 64",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "add {b2}, 1024",
            "add {b3}, 1024",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c0} + {ldc}*1], tmm0",
            "tilestored [{c1} + {ldc}*1], tmm1",
            "tilestored [{c2} + {ldc}*1], tmm2",
            "tilestored [{c3} + {ldc}*1], tmm3",
            a = inout(reg) a => _,
            lda = in(reg) dpad * 2,
            b0 = inout(reg) b => _,
            b1 = inout(reg) b.add(block) => _,
            b2 = inout(reg) b.add(2 * block) => _,
            b3 = inout(reg) b.add(3 * block) => _,
            ldb = in(reg) 64usize,
            n = inout(reg) dpad / 32 => _,
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            c2 = in(reg) c.add(32),
            c3 = in(reg) c.add(48),
            ldc = in(reg) ldc * 4,
            options(nostack),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        for x in [0.0f32, 1.0, -2.5, 3.3, 1e-30, 6.0e37, -123.456] {
            let h = from_bf16(to_bf16(x));
            assert!((h - x).abs() <= x.abs() * (1.0 / 256.0), "{x} -> {h}");
        }
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
    }

    /// Every shape the coarse search meets: dimensions not a multiple of 32, rows not a
    /// multiple of 64, fewer than 16 query rows. Skipped (saying so) where AMX is absent.
    #[test]
    fn tiles_equal_the_reference() {
        let Some(amx) = Amx::get() else {
            eprintln!("SKIPPED AMX tile test: this CPU (or its kernel) offers no AMX-BF16");
            return;
        };
        let mut r = Rng::new(3);
        for (n, d, q) in [(64, 32, 16), (100, 128, 16), (1000, 384, 5), (33, 20, 1), (4096, 96, 16), (1, 7, 3)] {
            let rows: Vec<f32> = (0..n * d).map(|_| r.normal() as f32 * 10.0).collect();
            let a: Vec<f32> = (0..q * d).map(|_| r.normal() as f32).collect();
            let panel = Bf16Panel::new(&rows, d);
            let npad = panel.padded_len();
            let (mut got, mut want) = (vec![f32::NAN; ROWS * npad], vec![0f32; ROWS * npad]);
            amx.dots(&panel, &a, &mut got);
            dots_reference(&panel, &a, &mut want);
            for r in 0..ROWS {
                for j in 0..npad {
                    let (g, w) = (got[r * npad + j], want[r * npad + j]);
                    let scale: f32 = if r < q && j < n {
                        (0..d).map(|k| (from_bf16(to_bf16(a[r * d + k])) * panel.at(j, k)).abs()).sum()
                    } else {
                        0.0
                    };
                    assert!(
                        (g - w).abs() <= scale * d as f32 * f32::EPSILON,
                        "n {n} d {d} row {r} col {j}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
