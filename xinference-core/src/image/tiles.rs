//! The micro-kernels of [`super::packed`]: one tile of `c += a · b` from two packed panels,
//! with the tile's columns in vector registers (the `a` side broadcast value by value, the `b`
//! side loaded a row at a time), for AVX-512, AVX2 + FMA, or plain Rust, chosen at run time.

/// The micro-kernel family the CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 6 x 64 tiles (and narrower ones for a last partial panel).
    Avx512,
    /// 6 x 16 tiles (and 6 x 8).
    Avx2,
    /// 4 x 8 tiles in plain Rust.
    Portable,
}

impl Isa {
    /// The best family this CPU runs (`XINFERENCE_NO_AVX512` set: AVX2 at most).
    pub fn detect() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::env::var_os("XINFERENCE_NO_AVX512").is_none()
                    && std::arch::is_x86_feature_detected!("avx512f")
                {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    return Isa::Avx2;
                }
            }
            Isa::Portable
        })
    }

    /// Rows and columns of one tile.
    pub fn tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (6, 64),
            Isa::Avx2 => (6, 16),
            Isa::Portable => (4, 8),
        }
    }
}

/// One tile: `c[rows×cols] = (accumulate ? c : 0) + a[rows×kc] · b[kc×nr]`, `a` a packed
/// panel (`kc` groups of `mr`), `b` a packed panel (`kc` rows of `nr`), `c` rows `stride`
/// apart.
///
/// # Safety
/// `a` holds `kc` x `mr` values, `b` `kc` x `nr`, `c` `rows` rows of `cols` values; nothing
/// else touches them meanwhile.
pub unsafe fn tile(
    isa: Isa,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: (*mut f32, usize),
    (rows, cols): (usize, usize),
    accumulate: bool,
) {
    let (_, nr) = isa.tile();
    let b = (b, nr);
    let args = (c, (rows, cols), accumulate);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => match cols.div_ceil(16) {
            1 => x86::tile_avx512_1(kc, a, b, args.0, args.1, args.2),
            2 => x86::tile_avx512_2(kc, a, b, args.0, args.1, args.2),
            3 => x86::tile_avx512_3(kc, a, b, args.0, args.1, args.2),
            _ => x86::tile_avx512_4(kc, a, b, args.0, args.1, args.2),
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if cols <= 8 => x86::tile_avx2_1(kc, a, b, args.0, args.1, args.2),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::tile_avx2_2(kc, a, b, args.0, args.1, args.2),
        _ => tile_portable(kc, a, b.0, c, (rows, cols), accumulate),
    }
}

/// Stores a tile computed in `acc` (`MR` rows of `NR`) into `c`, adding what is there when
/// `accumulate`.
#[inline(always)]
unsafe fn store_partial<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    (c, stride): (*mut f32, usize),
    (rows, cols): (usize, usize),
    accumulate: bool,
) {
    for (i, row) in acc.iter().enumerate().take(rows) {
        let dst = std::slice::from_raw_parts_mut(c.add(i * stride), cols);
        if accumulate {
            dst.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        } else {
            dst.copy_from_slice(&row[..cols]);
        }
    }
}

/// The tile in plain Rust (4 x 8; the compiler vectorises the inner loop).
unsafe fn tile_portable(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: (*mut f32, usize),
    rows_cols: (usize, usize),
    accumulate: bool,
) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut acc = [[0f32; NR]; MR];
    for p in 0..kc {
        let brow = std::slice::from_raw_parts(b.add(p * NR), NR);
        for (i, row) in acc.iter_mut().enumerate() {
            let av = *a.add(p * MR + i);
            row.iter_mut().zip(brow).for_each(|(r, bv)| *r += av * bv);
        }
    }
    store_partial(&acc, c, rows_cols, accumulate);
}

/// The AVX-512 and AVX2 micro-kernels.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::store_partial;
    use std::arch::x86_64::*;

    /// Defines a tile of `$mr` rows by `$nv` vectors of `$lanes` (see [`super::tile`]).
    macro_rules! tile_kernel {
        ($name:ident, $feature:literal, $vec:ty, $lanes:literal, $mr:literal, $nv:literal,
         $zero:ident, $load:ident, $store:ident, $set1:ident, $fmadd:ident, $add:ident) => {
            /// # Safety
            /// As [`super::tile`]; the CPU has the features this is compiled for.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(
                kc: usize,
                a: *const f32,
                (b, bs): (*const f32, usize),
                (c, stride): (*mut f32, usize),
                (rows, cols): (usize, usize),
                accumulate: bool,
            ) {
                const MR: usize = $mr;
                const NR: usize = $nv * $lanes;
                let mut acc: [[$vec; $nv]; MR] = [[$zero(); $nv]; MR];
                for p in 0..kc {
                    let bp = b.add(p * bs);
                    let bv: [$vec; $nv] = std::array::from_fn(|v| $load(bp.add(v * $lanes)));
                    for i in 0..MR {
                        let av = $set1(*a.add(p * MR + i));
                        for v in 0..$nv {
                            acc[i][v] = $fmadd(av, bv[v], acc[i][v]);
                        }
                    }
                }
                if rows == MR && cols == NR {
                    for i in 0..MR {
                        for v in 0..$nv {
                            let dst = c.add(i * stride + v * $lanes);
                            let sum = if accumulate {
                                $add(acc[i][v], $load(dst))
                            } else {
                                acc[i][v]
                            };
                            $store(dst, sum);
                        }
                    }
                    return;
                }
                let mut spill = [[0f32; NR]; MR];
                for i in 0..MR {
                    for v in 0..$nv {
                        $store(spill[i].as_mut_ptr().add(v * $lanes), acc[i][v]);
                    }
                }
                store_partial(&spill, (c, stride), (rows, cols), accumulate);
            }
        };
    }

    macro_rules! avx512 {
        ($name:ident, $nv:literal) => {
            tile_kernel!(
                $name,
                "avx512f",
                __m512,
                16,
                6,
                $nv,
                _mm512_setzero_ps,
                _mm512_loadu_ps,
                _mm512_storeu_ps,
                _mm512_set1_ps,
                _mm512_fmadd_ps,
                _mm512_add_ps
            );
        };
    }
    avx512!(tile_avx512_1, 1);
    avx512!(tile_avx512_2, 2);
    avx512!(tile_avx512_3, 3);
    avx512!(tile_avx512_4, 4);
    macro_rules! avx2 {
        ($name:ident, $nv:literal) => {
            tile_kernel!(
                $name,
                "avx2,fma",
                __m256,
                8,
                6,
                $nv,
                _mm256_setzero_ps,
                _mm256_loadu_ps,
                _mm256_storeu_ps,
                _mm256_set1_ps,
                _mm256_fmadd_ps,
                _mm256_add_ps
            );
        };
    }
    avx2!(tile_avx2_1, 1);
    avx2!(tile_avx2_2, 2);
}
