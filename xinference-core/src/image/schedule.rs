//! Building a scheduler's schedule from `scheduler_config.json`: the training betas' cumulative
//! alphas, the spaced timesteps (PNDM/DDIM) and the sigmas (Euler, DPM-Solver, Karras), as
//! diffusers computes them. The stepping itself is [`super::scheduler`]'s.

use super::scheduler::{Prediction, SchedulerKind};
use super::sigmas::{interp, karras, linspace, round_even, sigma_to_t};
use crate::{Error, Result};
use serde_json::Value;

pub(super) fn num(raw: &serde_json::Map<String, Value>, key: &str, default: f64) -> f64 {
    raw.get(key).and_then(Value::as_f64).unwrap_or(default)
}

pub(super) fn text<'a>(
    raw: &'a serde_json::Map<String, Value>,
    key: &str,
    default: &'a str,
) -> &'a str {
    raw.get(key).and_then(Value::as_str).unwrap_or(default)
}

pub(super) fn flag(raw: &serde_json::Map<String, Value>, key: &str, default: bool) -> bool {
    raw.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// The cumulative products of `1 - beta` over `train` training steps (`beta_start`,
/// `beta_end`, `beta_schedule`), as diffusers computes them: `torch.cumprod` over float32.
pub(super) fn alphas_cumprod(
    raw: &serde_json::Map<String, Value>,
    train: usize,
) -> Result<Vec<f64>> {
    let beta_start = num(raw, "beta_start", 0.0001);
    let beta_end = num(raw, "beta_end", 0.02);
    let betas: Vec<f32> = match text(raw, "beta_schedule", "linear") {
        "scaled_linear" => linspace(beta_start.sqrt(), beta_end.sqrt(), train)
            .into_iter()
            .map(|b| (b as f32) * (b as f32))
            .collect(),
        "linear" => linspace(beta_start, beta_end, train)
            .into_iter()
            .map(|b| b as f32)
            .collect(),
        other => {
            return Err(Error::bad_request(format!(
                "beta_schedule {other} is not supported (linear and scaled_linear are)"
            )))
        }
    };
    let mut acc = 1f32;
    Ok(betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            f64::from(acc)
        })
        .collect())
}

/// The config's `prediction_type`.
pub(super) fn prediction_type(raw: &serde_json::Map<String, Value>) -> Result<Prediction> {
    match text(raw, "prediction_type", "epsilon") {
        "epsilon" => Ok(Prediction::Epsilon),
        "v_prediction" => Ok(Prediction::VPrediction),
        other => Err(Error::bad_request(format!(
            "prediction_type {other} is not supported (epsilon and v_prediction are)"
        ))),
    }
}

/// Whether the config's `final_sigmas_type` is `sigma_min` (`zero`, the default, is false).
pub(super) fn final_sigma_min(raw: &serde_json::Map<String, Value>) -> Result<bool> {
    match text(raw, "final_sigmas_type", "zero") {
        "zero" => Ok(false),
        "sigma_min" => Ok(true),
        other => Err(Error::bad_request(format!(
            "final_sigmas_type {other} is not supported (zero and sigma_min are)"
        ))),
    }
}

/// The 400 for a `timestep_spacing` this build does not serve.
pub(super) fn spacing_error(spacing: &str) -> Error {
    Error::bad_request(format!(
        "timestep_spacing {spacing} is not supported (leading, linspace, trailing are)"
    ))
}

/// PNDM's (PLMS steps) and DDIM's timesteps, in the order the UNet sees them.
pub(super) fn discrete_timesteps(
    kind: SchedulerKind,
    spacing: &str,
    train: usize,
    steps: usize,
    offset: f64,
) -> Result<Vec<f64>> {
    let n = train as f64;
    let step_ratio = (train / steps) as i64;
    // Ascending first.
    let mut asc: Vec<f64> = match spacing {
        "linspace" => linspace(0.0, n - 1.0, steps)
            .into_iter()
            .map(round_even)
            .collect(),
        "leading" => (0..steps)
            .map(|i| (i as i64 * step_ratio) as f64 + offset)
            .collect(),
        "trailing" => {
            let ratio = n / steps as f64;
            let mut v: Vec<f64> = (0..)
                .map(|i| n - ratio * i as f64)
                .take_while(|t| *t > 0.0)
                .map(|t| round_even(t) - 1.0)
                .collect();
            v.reverse();
            v
        }
        _ => return Err(spacing_error(spacing)),
    };
    if kind == SchedulerKind::Pndm {
        // PNDM's linspace does not reverse; its timesteps get the offset only when leading.
        let k = asc.len();
        let mut plms: Vec<f64> = asc[..k - 1].to_vec();
        if k >= 2 {
            plms.push(asc[k - 2]);
        }
        plms.push(asc[k - 1]);
        plms.reverse();
        Ok(plms)
    } else {
        asc.reverse();
        Ok(asc)
    }
}

/// Euler's and DPM-Solver's timesteps before sigmas are derived, descending. DPM-Solver
/// spaces `steps + 1` points and drops the last.
pub(super) fn sigma_timesteps(
    spacing: &str,
    dpm: bool,
    train: usize,
    steps: usize,
    offset: f64,
) -> Result<Vec<f64>> {
    let n = train as f64;
    Ok(match (spacing, dpm) {
        ("linspace", false) => {
            let mut v = linspace(0.0, n - 1.0, steps);
            v.iter_mut().for_each(|t| *t = f64::from(*t as f32));
            v.reverse();
            v
        }
        ("linspace", true) => {
            let mut v: Vec<f64> = linspace(0.0, n - 1.0, steps + 1)
                .into_iter()
                .map(round_even)
                .collect();
            v.reverse();
            v.truncate(steps);
            v
        }
        ("leading", _) => {
            let ratio = if dpm {
                train / (steps + 1)
            } else {
                train / steps
            } as f64;
            let count = if dpm { steps + 1 } else { steps };
            let mut v: Vec<f64> = (0..count).map(|i| i as f64 * ratio).collect();
            v.reverse();
            v.truncate(steps);
            v.iter_mut().for_each(|t| *t += offset);
            v
        }
        ("trailing", _) => {
            let ratio = n / steps as f64;
            (0..)
                .map(|i| n - ratio * i as f64)
                .take_while(|t| *t > 0.0)
                .map(|t| round_even(t) - 1.0)
                .collect()
        }
        _ => return Err(spacing_error(spacing)),
    })
}

/// What [`sigma_schedule`] derives Euler's and DPM-Solver's sigmas from.
pub(super) struct SigmaOptions<'a> {
    /// The spaced timesteps ([`sigma_timesteps`]).
    pub(super) timesteps: Vec<f64>,
    /// The training schedule's cumulative alphas.
    pub(super) alphas_cumprod: &'a [f64],
    /// DPM-Solver (else Euler or Euler ancestral).
    pub(super) dpm: bool,
    /// Karras sigmas (the timesteps are then derived from them).
    pub(super) use_karras: bool,
    /// The last sigma is the smallest trained one rather than zero.
    pub(super) final_sigma_min: bool,
    /// The `timestep_spacing` (it picks Euler's initial noise sigma).
    pub(super) spacing: &'a str,
    /// The number of inference steps.
    pub(super) steps: usize,
}

/// Euler's and DPM-Solver's timesteps, sigmas (one per step plus the final one) and initial
/// noise sigma.
pub(super) fn sigma_schedule(o: SigmaOptions<'_>) -> (Vec<f64>, Vec<f64>, f64) {
    let SigmaOptions {
        mut timesteps,
        alphas_cumprod,
        dpm,
        use_karras,
        final_sigma_min,
        spacing,
        steps,
    } = o;
    let all_sigmas: Vec<f64> = alphas_cumprod
        .iter()
        .map(|a| ((1.0 - a) / a).sqrt())
        .collect();
    let log_sigmas: Vec<f64> = all_sigmas.iter().map(|s| s.ln()).collect();
    let mut sigmas: Vec<f64>;
    if use_karras {
        let base: Vec<f64> = if dpm {
            all_sigmas.iter().rev().copied().collect()
        } else {
            timesteps.iter().map(|t| interp(*t, &all_sigmas)).collect()
        };
        sigmas = karras(&base, steps);
        timesteps = sigmas
            .iter()
            .map(|s| {
                let t = sigma_to_t(*s, &log_sigmas);
                if dpm {
                    round_even(t)
                } else {
                    t
                }
            })
            .collect();
    } else {
        sigmas = timesteps.iter().map(|t| interp(*t, &all_sigmas)).collect();
    }
    sigmas.push(if final_sigma_min {
        ((1.0 - alphas_cumprod[0]) / alphas_cumprod[0]).sqrt()
    } else {
        0.0
    });
    sigmas.iter_mut().for_each(|s| *s = f64::from(*s as f32));
    let mut init_noise_sigma = 1.0;
    if !dpm {
        timesteps.iter_mut().for_each(|t| *t = f64::from(*t as f32));
        let max = sigmas.iter().cloned().fold(0.0, f64::max);
        init_noise_sigma = if matches!(spacing, "linspace" | "trailing") {
            max
        } else {
            (max * max + 1.0).sqrt()
        };
    }
    (timesteps, sigmas, init_noise_sigma)
}
