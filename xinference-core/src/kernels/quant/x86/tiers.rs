//! The tiers' entry points: each kernel of `super` compiled with the tier's features
//! (`#[target_feature]`), behind a safe function that checks the bounds every read relies on.

use super::*;

/// Panics unless `w` is whole blocks of `format` and every row has the values, scales and
/// sums those blocks read: what makes the unchecked reads above in bounds.
fn checked<const R: usize>(format: Format, w: &[u8], a: &[ActRow<'_>; R]) {
    let (bytes, values) = (format.block_bytes(), format.block_values());
    assert_eq!(
        w.len() % bytes,
        0,
        "{format:?} weights are not whole blocks"
    );
    let nb = w.len() / bytes;
    for row in a {
        assert!(row.qs.len() >= nb * values && row.d.len() >= nb);
        match format {
            Format::Q4_1 | Format::Q5_1 => assert!(row.s.len() >= nb),
            Format::Q4K | Format::Q5K | Format::Q6K => assert!(row.bsums.len() >= nb * 16),
            _ => {}
        }
    }
}

/// Whether a decode row of small-block format `f` runs as a one-by-one prompt tile (unsigned
/// values, the offset taken off once per activation block: no sign flips per product) rather
/// than through [`small`]: faster for Q5_0 on both tiers, Q4_1 with VNNI and Q4_0 / Q8_0 on
/// AVX2 (4-27% on cached rows, `XINFERENCE_BENCH_QUANT=rows`, alternating), no different for
/// Q5_1 and AVX2's Q4_1, slower for Q4_0 and Q8_0 with VNNI (2-10%). The same bits either way.
const fn decode_with_offset(vnni: bool, f: u8) -> bool {
    !(vnni && (f == Q4_0 || f == Q8_0))
}

/// Defines a tier: its `#[target_feature]` kernels, their checked safe entry points and
/// `kernel`, the table [`crate::kernels::quant::kernel`] reads once the CPU is known to have
/// `$features`.
macro_rules! tier {
    ($tier:ident, $features:literal, $v:literal) => {
        pub(crate) mod $tier {
            use super::*;

            #[target_feature(enable = $features)]
            unsafe fn small_t<const R: usize, const F: u8>(
                w: &[u8],
                a: &[ActRow<'_>; R],
            ) -> [f32; R] {
                small::<R, $v, F>(w, a)
            }

            #[target_feature(enable = $features)]
            unsafe fn q45k_t<const R: usize, const FIVE: bool>(
                w: &[u8],
                a: &[ActRow<'_>; R],
            ) -> [f32; R] {
                q45k::<R, $v, FIVE>(w, a)
            }

            #[target_feature(enable = $features)]
            unsafe fn q6k_t<const R: usize>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
                q6k::<R, $v>(w, a)
            }

            #[target_feature(enable = $features)]
            unsafe fn small_tile_t<const F: u8>(
                w: [*const u8; TILE],
                a: &[ActRow<'_>; GROUP],
                nb: usize,
            ) -> [[f32; GROUP]; TILE] {
                const RW: usize = tile_rows($v);
                let mut out = [[0f32; GROUP]; TILE];
                for part in 0..TILE / RW {
                    let rows: [*const u8; RW] = std::array::from_fn(|i| w[part * RW + i]);
                    let got = small_tile::<RW, GROUP, $v, F>(rows, a, nb);
                    out[part * RW..(part + 1) * RW].copy_from_slice(&got);
                }
                out
            }

            /// Q4_K's (`SIX` false) or Q6_K's tile, in parts of the tier's tile rows.
            #[target_feature(enable = $features)]
            unsafe fn k_tile_t<const SIX: bool>(
                w: [*const u8; TILE],
                a: &[ActRow<'_>; GROUP],
                nb: usize,
            ) -> [[f32; GROUP]; TILE] {
                const RW: usize = tile_rows($v);
                let mut out = [[0f32; GROUP]; TILE];
                for part in 0..TILE / RW {
                    let rows: [*const u8; RW] = std::array::from_fn(|i| w[part * RW + i]);
                    let got = if SIX {
                        ktile::q6k_tile::<RW, GROUP, $v>(rows, a, nb)
                    } else {
                        ktile::q4k_tile::<RW, GROUP, $v>(rows, a, nb)
                    };
                    out[part * RW..(part + 1) * RW].copy_from_slice(&got);
                }
                out
            }

            fn k_tile_safe<const SIX: bool>(
                w: &[&[u8]; TILE],
                a: &[ActRow<'_>; GROUP],
            ) -> [[f32; GROUP]; TILE] {
                let format = if SIX { Format::Q6K } else { Format::Q4K };
                for row in w {
                    assert_eq!(row.len(), w[0].len(), "weight rows of different sizes");
                }
                checked(format, w[0], a);
                // SAFETY: as in `small_tile_safe`.
                unsafe {
                    k_tile_t::<SIX>(
                        std::array::from_fn(|i| w[i].as_ptr()),
                        a,
                        w[0].len() / format.block_bytes(),
                    )
                }
            }

            fn small_tile_safe<const F: u8>(
                w: &[&[u8]; TILE],
                a: &[ActRow<'_>; GROUP],
            ) -> [[f32; GROUP]; TILE] {
                let format = [
                    Format::Q4_0,
                    Format::Q4_1,
                    Format::Q5_0,
                    Format::Q5_1,
                    Format::Q8_0,
                ][F as usize];
                for row in w {
                    assert_eq!(row.len(), w[0].len(), "weight rows of different sizes");
                }
                checked(format, w[0], a);
                // SAFETY: `kernel` hands these out only once the CPU has the tier's features;
                // `checked` bounds every read (every weight row has the first one's blocks).
                unsafe {
                    small_tile_t::<F>(
                        std::array::from_fn(|i| w[i].as_ptr()),
                        a,
                        w[0].len() / format.block_bytes(),
                    )
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn panel_unpack_t<const F: u8>(w: &[u8], rows: usize, p: &mut Panel) {
                panel::unpack::<F, $v>(w, rows, p)
            }

            #[target_feature(enable = $features)]
            unsafe fn panel_run_t<const F: u8>(
                p: &mut Panel,
                a: &[ActRow<'_>; GROUP],
                out: &mut [[f32; GROUP]],
            ) {
                const RW: usize = tile_rows($v);
                panel::run::<RW, GROUP, $v, F>(p, a, out)
            }

            fn panel_unpack_safe<const F: u8>(w: &[u8], rows: usize, p: &mut Panel) {
                let bytes = SMALL[F as usize].block_bytes();
                assert!(
                    rows > 0 && w.len() % (rows * bytes) == 0,
                    "weights are not {rows} rows of whole blocks"
                );
                // SAFETY: `kernel` hands these out only once the CPU has the tier's features;
                // every read is within `w`'s whole blocks.
                unsafe { panel_unpack_t::<F>(w, rows, p) }
            }

            fn panel_run_safe<const F: u8>(
                p: &mut Panel,
                a: &[ActRow<'_>; GROUP],
                out: &mut [[f32; GROUP]],
            ) {
                let with_min = matches!(F, Q4_1 | Q5_1);
                assert!(
                    p.vals.len() == p.rows * p.nb
                        && p.d.len() == p.vals.len()
                        && p.m.len() == p.vals.len()
                        && p.rows.is_multiple_of(tile_rows($v))
                        && out.len() >= p.rows,
                    "a panel of {} rows does not fit its output",
                    p.rows
                );
                for row in a {
                    assert!(row.qs.len() >= p.nb * QK && row.d.len() >= p.nb);
                    assert!(!with_min || row.s.len() >= p.nb);
                }
                // SAFETY: as in `panel_unpack_safe`; the checks above bound every read.
                unsafe { panel_run_t::<F>(p, a, out) }
            }

            #[target_feature(enable = $features)]
            unsafe fn panel_unpack_k_t<const SIX: bool>(w: &[u8], rows: usize, p: &mut Panel) {
                panel::unpack_k::<SIX, $v>(w, rows, p)
            }

            #[target_feature(enable = $features)]
            unsafe fn panel_run_k_t<const SIX: bool>(
                p: &Panel,
                a: &[ActRow<'_>; GROUP],
                out: &mut [[f32; GROUP]],
            ) {
                const RW: usize = tile_rows($v);
                panel::run_k::<RW, GROUP, $v, SIX>(p, a, out)
            }

            fn panel_unpack_k_safe<const SIX: bool>(w: &[u8], rows: usize, p: &mut Panel) {
                let bytes = if SIX { 210 } else { 144 };
                assert!(
                    rows > 0 && w.len() % (rows * bytes) == 0,
                    "weights are not {rows} rows of whole super-blocks"
                );
                // SAFETY: as in `panel_unpack_safe`.
                unsafe { panel_unpack_k_t::<SIX>(w, rows, p) }
            }

            fn panel_run_k_safe<const SIX: bool>(
                p: &mut Panel,
                a: &[ActRow<'_>; GROUP],
                out: &mut [[f32; GROUP]],
            ) {
                let blocks = p.rows * p.nb;
                assert!(
                    p.vals.len() == 8 * blocks
                        && p.scales.len() == 8 * blocks
                        && p.extra.len() == blocks
                        && p.d.len() == blocks
                        && p.m.len() == blocks
                        && p.rows.is_multiple_of(tile_rows($v))
                        && out.len() >= p.rows,
                    "a panel of {} rows does not fit its output",
                    p.rows
                );
                for row in a {
                    assert!(
                        row.qs.len() >= p.nb * QK_K
                            && row.d.len() >= p.nb
                            && row.bsums.len() >= p.nb * 16
                    );
                }
                // SAFETY: as in `panel_run_safe`.
                unsafe { panel_run_k_t::<SIX>(p, a, out) }
            }

            /// The tier's panel kernel of `format` (the small-block formats, Q4_K and Q6_K).
            ///
            /// # Safety
            /// The CPU has the tier's features (the kernels returned assume it).
            pub(crate) unsafe fn panel_kernel(format: Format) -> Option<PanelKernel> {
                fn of<const F: u8>() -> PanelKernel {
                    PanelKernel {
                        unpack: panel_unpack_safe::<F>,
                        run: panel_run_safe::<F>,
                    }
                }
                Some(match format {
                    Format::Q4_0 => of::<Q4_0>(),
                    Format::Q4_1 => of::<Q4_1>(),
                    Format::Q5_0 => of::<Q5_0>(),
                    Format::Q5_1 => of::<Q5_1>(),
                    Format::Q8_0 => of::<Q8_0>(),
                    Format::Q4K => PanelKernel {
                        unpack: panel_unpack_k_safe::<false>,
                        run: panel_run_k_safe::<false>,
                    },
                    Format::Q6K => PanelKernel {
                        unpack: panel_unpack_k_safe::<true>,
                        run: panel_run_k_safe::<true>,
                    },
                    _ => return None,
                })
            }

            /// The tier's tile kernel of `format` (small-block formats, Q4_K and Q6_K).
            ///
            /// # Safety
            /// The CPU has the tier's features (the kernels returned assume it).
            pub(crate) unsafe fn tile_kernel(format: Format) -> Option<TileFn> {
                Some(match format {
                    Format::Q4_0 => small_tile_safe::<Q4_0>,
                    Format::Q4_1 => small_tile_safe::<Q4_1>,
                    Format::Q5_0 => small_tile_safe::<Q5_0>,
                    Format::Q5_1 => small_tile_safe::<Q5_1>,
                    Format::Q8_0 => small_tile_safe::<Q8_0>,
                    Format::Q4K => k_tile_safe::<false>,
                    Format::Q6K => k_tile_safe::<true>,
                    _ => return None,
                })
            }

            /// One activation row against `out.len()` weight rows of `row_bytes` each.
            #[target_feature(enable = $features)]
            unsafe fn rows_t<const F: u8>(
                w: &[u8],
                row_bytes: usize,
                a: &[ActRow<'_>; 1],
                out: &mut [f32],
            ) {
                for (c, o) in out.iter_mut().enumerate() {
                    let row = w.get_unchecked(c * row_bytes..(c + 1) * row_bytes);
                    *o = match F {
                        K4 => q45k::<1, $v, false>(row, a)[0],
                        K5 => q45k::<1, $v, true>(row, a)[0],
                        K6 => q6k::<1, $v>(row, a)[0],
                        _ if decode_with_offset($v, F) => {
                            let nb = row_bytes / SMALL[F as usize].block_bytes();
                            small_tile::<1, 1, $v, F>([row.as_ptr()], a, nb)[0][0]
                        }
                        _ => small::<1, $v, F>(row, a)[0],
                    };
                }
            }

            fn rows_safe<const F: u8>(w: &[u8], a: &ActRow<'_>, out: &mut [f32]) {
                let format = match F {
                    K4 => Format::Q4K,
                    K5 => Format::Q5K,
                    K6 => Format::Q6K,
                    _ => SMALL[F as usize],
                };
                if out.is_empty() {
                    return;
                }
                assert!(
                    w.len().is_multiple_of(out.len()),
                    "weights are not {} rows of one size",
                    out.len()
                );
                let row_bytes = w.len() / out.len();
                let a = [*a];
                checked(format, &w[..row_bytes], &a);
                // SAFETY: `kernel` hands these out only once the CPU has the tier's features;
                // `checked` bounds every read of the first row, and every row has its size.
                unsafe { rows_t::<F>(w, row_bytes, &a, out) }
            }

            /// The tier's decode kernel of `format` (all but Q2_K and Q3_K).
            ///
            /// # Safety
            /// The CPU has the tier's features (the kernels returned assume it).
            pub(crate) unsafe fn rows_kernel(format: Format) -> Option<RowsFn> {
                Some(match format {
                    Format::Q4_0 => rows_safe::<Q4_0>,
                    Format::Q4_1 => rows_safe::<Q4_1>,
                    Format::Q5_0 => rows_safe::<Q5_0>,
                    Format::Q5_1 => rows_safe::<Q5_1>,
                    Format::Q8_0 => rows_safe::<Q8_0>,
                    Format::Q4K => rows_safe::<K4>,
                    Format::Q5K => rows_safe::<K5>,
                    Format::Q6K => rows_safe::<K6>,
                    Format::Q2K | Format::Q3K => return None,
                })
            }

            fn small_safe<const R: usize, const F: u8>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
                let format = [
                    Format::Q4_0,
                    Format::Q4_1,
                    Format::Q5_0,
                    Format::Q5_1,
                    Format::Q8_0,
                ][F as usize];
                checked(format, w, a);
                // SAFETY: `kernel` hands these out only once the CPU has the tier's features;
                // `checked` bounds every read.
                unsafe { small_t::<R, F>(w, a) }
            }

            fn q45k_safe<const R: usize, const FIVE: bool>(
                w: &[u8],
                a: &[ActRow<'_>; R],
            ) -> [f32; R] {
                checked(if FIVE { Format::Q5K } else { Format::Q4K }, w, a);
                // SAFETY: as in `small_safe`.
                unsafe { q45k_t::<R, FIVE>(w, a) }
            }

            fn q6k_safe<const R: usize>(w: &[u8], a: &[ActRow<'_>; R]) -> [f32; R] {
                checked(Format::Q6K, w, a);
                // SAFETY: as in `small_safe`.
                unsafe { q6k_t::<R>(w, a) }
            }

            /// The tier's kernel of `format` for `R` rows.
            ///
            /// # Safety
            /// The CPU has the tier's features (the kernels returned assume it).
            pub(crate) unsafe fn kernel<const R: usize>(format: Format) -> DotFn<R> {
                match format {
                    Format::Q4_0 => small_safe::<R, Q4_0>,
                    Format::Q4_1 => small_safe::<R, Q4_1>,
                    Format::Q5_0 => small_safe::<R, Q5_0>,
                    Format::Q5_1 => small_safe::<R, Q5_1>,
                    Format::Q8_0 => small_safe::<R, Q8_0>,
                    Format::Q4K => q45k_safe::<R, false>,
                    Format::Q5K => q45k_safe::<R, true>,
                    Format::Q6K => q6k_safe::<R>,
                    Format::Q2K | Format::Q3K => scalar::kernel::<R>(format),
                }
            }
        }
    };
}

tier!(avx2, "avx2,fma,f16c", false);
tier!(vnni, "avx2,fma,f16c,avx512f,avx512vl,avx512vnni", true);
