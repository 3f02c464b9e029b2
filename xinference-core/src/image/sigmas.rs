//! The numpy and diffusers numerics the schedulers build their timestep and sigma tables with,
//! reproduced exactly (numpy's rounding and interpolation, diffusers' sigma-to-timestep and
//! Karras ramp) so that tables equal diffusers' to the last bit.

/// `np.linspace(start, end, n)`.
pub(super) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                end
            } else {
                start + step * i as f64
            }
        })
        .collect()
}

/// numpy's round half to even.
pub(super) fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `np.interp(x, arange(len), ys)`.
pub(super) fn interp(x: f64, ys: &[f64]) -> f64 {
    if x <= 0.0 {
        return ys[0];
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last];
    }
    let i = x.floor() as usize;
    let w = x - i as f64;
    ys[i] + (ys[i + 1] - ys[i]) * w
}

/// diffusers' `_sigma_to_t`: the fractional timestep of a sigma on the log-sigma table.
pub(super) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    let mut low = 0;
    for (i, l) in log_sigmas.iter().enumerate() {
        if log_sigma - l >= 0.0 {
            low = i;
        }
    }
    let low = low.min(n - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// Karras et al.'s sigma ramp (rho 7) between the first and last of `in_sigmas`.
pub(super) fn karras(in_sigmas: &[f64], steps: usize) -> Vec<f64> {
    let sigma_min = *in_sigmas.last().unwrap_or(&0.0);
    let sigma_max = in_sigmas[0];
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}
