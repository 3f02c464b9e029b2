//! Noise schedulers, read from `scheduler/scheduler_config.json` as diffusers reads them: PNDM
//! (PLMS, `skip_prk_steps`), DDIM (eta 0), Euler, Euler ancestral and DPM-Solver++ 2M (optionally
//! with Karras sigmas). `timestep_spacing` (leading, linspace, trailing), `steps_offset`,
//! `prediction_type` (epsilon, v_prediction), `set_alpha_to_one` and `clip_sample` are honoured.
//! Xinference's `sampler_name` picks another scheduler built from the same config, as
//! `SchedulerClass.from_config(pipe.scheduler.config)` does.
//!
//! Latents are plain `Vec<f32>` (batch x channels x height x width, contiguous): every step is an
//! element-wise update, and ancestral noise comes from the request's [`TorchGenerator`].

use super::schedule::{
    alphas_cumprod, discrete_timesteps, final_sigma_min, flag, num, prediction_type,
    sigma_schedule, sigma_timesteps, text, SigmaOptions,
};
use super::torch_rng::TorchGenerator;
use crate::{Error, Result};
use serde_json::Value;

/// Which scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `PNDMScheduler` (PLMS steps only, as SD 1.5 configures it).
    Pndm,
    /// `DDIMScheduler` with eta 0.
    Ddim,
    /// `EulerDiscreteScheduler`.
    Euler,
    /// `EulerAncestralDiscreteScheduler`.
    EulerAncestral,
    /// `DPMSolverMultistepScheduler` (dpmsolver++, order 2, midpoint).
    DpmSolverPP2M,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The noise.
    Epsilon,
    /// The velocity `alpha * noise - sigma * x0`.
    VPrediction,
}

/// The settings diffusers keeps in `scheduler_config.json`.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The scheduler the folder names (`_class_name`).
    pub kind: SchedulerKind,
    /// Every key of the file, for defaults of the class chosen later.
    raw: serde_json::Map<String, Value>,
}

/// Xinference's `sampler_name` values this build serves, with the scheduler each selects.
pub const SAMPLERS: &[(&str, SchedulerKind, bool)] = &[
    ("DDIM", SchedulerKind::Ddim, false),
    ("PNDM", SchedulerKind::Pndm, false),
    ("Euler", SchedulerKind::Euler, false),
    ("Euler a", SchedulerKind::EulerAncestral, false),
    ("DPM++ 2M", SchedulerKind::DpmSolverPP2M, false),
    ("DPM++ 2M Karras", SchedulerKind::DpmSolverPP2M, true),
];

impl SchedulerConfig {
    /// Parses `scheduler_config.json`.
    pub fn from_json(raw: &Value) -> Result<Self> {
        let raw = raw
            .as_object()
            .cloned()
            .ok_or_else(|| Error::bad_request("scheduler_config.json is not a JSON object"))?;
        let class = raw
            .get("_class_name")
            .and_then(Value::as_str)
            .unwrap_or("PNDMScheduler");
        let kind = match class {
            "PNDMScheduler" => SchedulerKind::Pndm,
            "DDIMScheduler" => SchedulerKind::Ddim,
            "EulerDiscreteScheduler" => SchedulerKind::Euler,
            "EulerAncestralDiscreteScheduler" => SchedulerKind::EulerAncestral,
            "DPMSolverMultistepScheduler" => SchedulerKind::DpmSolverPP2M,
            other => {
                return Err(Error::bad_request(format!(
                    "scheduler {other} is not supported by this build (PNDM, DDIM, Euler, \
                     Euler ancestral and DPM-Solver++ multistep are)"
                )))
            }
        };
        Ok(SchedulerConfig { kind, raw })
    }

    /// The scheduler for one request: the folder's, or the one `sampler_name` selects
    /// (`None`, `"default"` and `""` keep the folder's). Unknown names are a 400.
    pub fn build(&self, sampler_name: Option<&str>, steps: usize) -> Result<Scheduler> {
        let (kind, karras_override) = match sampler_name.map(str::trim) {
            None | Some("") | Some("default") => (self.kind, None),
            Some(name) => {
                let (_, kind, karras) = SAMPLERS
                    .iter()
                    .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        let names: Vec<&str> = SAMPLERS.iter().map(|s| s.0).collect();
                        Error::bad_request(format!(
                            "Unknown sampler_name {name:?}; this build serves: default, {}",
                            names.join(", ")
                        ))
                    })?;
                (*kind, Some(*karras))
            }
        };
        if steps == 0 || steps > 1000 {
            return Err(Error::bad_request(format!(
                "num_inference_steps must be from 1 to 1000, not {steps}"
            )));
        }
        Scheduler::new(kind, &self.raw, karras_override, steps)
    }
}

/// One request's scheduler state.
pub struct Scheduler {
    kind: SchedulerKind,
    prediction: Prediction,
    /// The timesteps the UNet sees, in order.
    timesteps: Vec<f64>,
    /// Euler / DPM: sigmas per step plus the final one.
    sigmas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    /// `num_train_timesteps // num_inference_steps` (DDIM, PNDM).
    step_ratio: i64,
    init_noise_sigma: f64,
    clip_sample: Option<f64>,
    step_index: usize,
    // PNDM state.
    counter: usize,
    ets: Vec<Vec<f32>>,
    cur_sample: Option<Vec<f32>>,
    // DPM state.
    model_outputs: Vec<Vec<f32>>,
    lower_order_nums: usize,
    lower_order_final: bool,
    final_sigma_zero: bool,
}

impl Scheduler {
    fn new(
        kind: SchedulerKind,
        raw: &serde_json::Map<String, Value>,
        karras_override: Option<bool>,
        steps: usize,
    ) -> Result<Self> {
        let train = num(raw, "num_train_timesteps", 1000.0) as usize;
        let alphas_cumprod = alphas_cumprod(raw, train)?;
        let prediction = prediction_type(raw)?;
        let default_spacing = match kind {
            SchedulerKind::Pndm | SchedulerKind::Ddim => "leading",
            _ => "linspace",
        };
        let spacing = text(raw, "timestep_spacing", default_spacing);
        let offset = num(raw, "steps_offset", 0.0);
        let step_ratio = (train / steps) as i64;
        let final_alpha_cumprod = if flag(raw, "set_alpha_to_one", true) {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let final_sigma_min = final_sigma_min(raw)?;
        let (timesteps, sigmas, init_noise_sigma) = match kind {
            SchedulerKind::Pndm | SchedulerKind::Ddim => {
                let timesteps = discrete_timesteps(kind, spacing, train, steps, offset)?;
                (timesteps, Vec::new(), 1.0)
            }
            SchedulerKind::Euler | SchedulerKind::EulerAncestral | SchedulerKind::DpmSolverPP2M => {
                let dpm = kind == SchedulerKind::DpmSolverPP2M;
                let timesteps = sigma_timesteps(spacing, dpm, train, steps, offset)?;
                let use_karras =
                    karras_override.unwrap_or_else(|| flag(raw, "use_karras_sigmas", false));
                sigma_schedule(SigmaOptions {
                    timesteps,
                    alphas_cumprod: &alphas_cumprod,
                    dpm,
                    use_karras,
                    final_sigma_min,
                    spacing,
                    steps,
                })
            }
        };
        let clip_sample = (kind == SchedulerKind::Ddim && flag(raw, "clip_sample", true))
            .then(|| num(raw, "clip_sample_range", 1.0));
        let lower_order_final = flag(raw, "lower_order_final", true);
        Ok(Scheduler {
            kind,
            prediction,
            timesteps,
            sigmas,
            alphas_cumprod,
            final_alpha_cumprod,
            step_ratio,
            init_noise_sigma,
            clip_sample,
            step_index: 0,
            counter: 0,
            ets: Vec::new(),
            cur_sample: None,
            model_outputs: Vec::new(),
            lower_order_nums: 0,
            lower_order_final,
            final_sigma_zero: !final_sigma_min,
        })
    }

    /// The timesteps the UNet is run at, in order.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// What the initial noise is multiplied by.
    pub fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    /// The factor the UNet input is multiplied by at step `index` (`scale_model_input`).
    pub fn input_scale(&self, index: usize) -> f64 {
        match self.kind {
            SchedulerKind::Euler | SchedulerKind::EulerAncestral => {
                let s = self.sigmas[index];
                1.0 / (s * s + 1.0).sqrt()
            }
            _ => 1.0,
        }
    }

    /// Noise `clean` latents to the level of timestep index `start` (image to image:
    /// `scheduler.add_noise(latents, noise, timesteps[start])`).
    pub fn add_noise(&self, clean: &[f32], noise: &[f32], start: usize) -> Vec<f32> {
        match self.kind {
            SchedulerKind::Euler | SchedulerKind::EulerAncestral => {
                let s = self.sigmas[start] as f32;
                clean.iter().zip(noise).map(|(c, n)| c + n * s).collect()
            }
            SchedulerKind::DpmSolverPP2M => {
                let s = self.sigmas[start];
                let alpha = 1.0 / (s * s + 1.0).sqrt();
                let (a, b) = (alpha as f32, (s * alpha) as f32);
                clean
                    .iter()
                    .zip(noise)
                    .map(|(c, n)| a * c + b * n)
                    .collect()
            }
            _ => {
                let t = self.timesteps[start] as usize;
                let ac = self.alphas_cumprod[t];
                let (a, b) = (ac.sqrt() as f32, (1.0 - ac).sqrt() as f32);
                clean
                    .iter()
                    .zip(noise)
                    .map(|(c, n)| a * c + b * n)
                    .collect()
            }
        }
    }

    /// Starts the schedule at timestep index `start` (image to image skips the first steps).
    pub fn set_begin_index(&mut self, start: usize) {
        self.step_index = start;
    }

    /// One denoising step: the next latents from the model's output at the current step.
    pub fn step(
        &mut self,
        model_output: &[f32],
        sample: &[f32],
        generator: &mut TorchGenerator,
    ) -> Vec<f32> {
        let out = match self.kind {
            SchedulerKind::Pndm => self.step_plms(model_output, sample),
            SchedulerKind::Ddim => self.step_ddim(model_output, sample),
            SchedulerKind::Euler => self.step_euler(model_output, sample, generator),
            SchedulerKind::EulerAncestral => self.step_euler_a(model_output, sample, generator),
            SchedulerKind::DpmSolverPP2M => self.step_dpm(model_output, sample),
        };
        self.step_index += 1;
        out
    }

    fn alpha_at(&self, t: i64) -> f64 {
        if t >= 0 {
            self.alphas_cumprod[t as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    fn step_ddim(&self, eps: &[f32], sample: &[f32]) -> Vec<f32> {
        let t = self.timesteps[self.step_index] as i64;
        let prev = t - self.step_ratio;
        let a_t = self.alpha_at(t);
        let a_prev = self.alpha_at(prev);
        let b_t = 1.0 - a_t;
        let (sa, sb) = (a_t.sqrt() as f32, b_t.sqrt() as f32);
        let (sa_prev, dir) = (a_prev.sqrt() as f32, (1.0 - a_prev).sqrt() as f32);
        let clip = self.clip_sample.map(|c| c as f32);
        eps.iter()
            .zip(sample)
            .map(|(&m, &x)| {
                let (mut x0, e) = match self.prediction {
                    Prediction::Epsilon => ((x - sb * m) / sa, m),
                    Prediction::VPrediction => (sa * x - sb * m, sa * m + sb * x),
                };
                if let Some(c) = clip {
                    x0 = x0.clamp(-c, c);
                }
                sa_prev * x0 + dir * e
            })
            .collect()
    }

    fn step_plms(&mut self, model_output: &[f32], sample: &[f32]) -> Vec<f32> {
        let mut timestep = self.timesteps[self.step_index] as i64;
        let mut prev = timestep - self.step_ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.drain(..self.ets.len() - 3);
            }
            self.ets.push(model_output.to_vec());
        } else {
            prev = timestep;
            timestep += self.step_ratio;
        }
        let e = &self.ets;
        let k = e.len();
        let mut sample = sample.to_vec();
        let combined: Vec<f32> = if k == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output.to_vec()
        } else if k == 1 && self.counter == 1 {
            if let Some(cur) = self.cur_sample.take() {
                sample = cur;
            }
            model_output
                .iter()
                .zip(&e[k - 1])
                .map(|(m, a)| (m + a) / 2.0)
                .collect()
        } else if k == 2 {
            e[1].iter()
                .zip(&e[0])
                .map(|(a, b)| (3.0 * a - b) / 2.0)
                .collect()
        } else if k == 3 {
            (0..sample.len())
                .map(|i| (23.0 * e[2][i] - 16.0 * e[1][i] + 5.0 * e[0][i]) / 12.0)
                .collect()
        } else {
            (0..sample.len())
                .map(|i| {
                    (1.0 / 24.0)
                        * (55.0 * e[k - 1][i] - 59.0 * e[k - 2][i] + 37.0 * e[k - 3][i]
                            - 9.0 * e[k - 4][i])
                })
                .collect()
        };
        let a_t = self.alpha_at(timestep);
        let a_prev = self.alpha_at(prev);
        let b_t = 1.0 - a_t;
        let b_prev = 1.0 - a_prev;
        let sample_coeff = (a_prev / a_t).sqrt() as f32;
        let denom = (a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt()) as f32;
        let diff = (a_prev - a_t) as f32;
        let (sa, sb) = (a_t.sqrt() as f32, b_t.sqrt() as f32);
        let v = self.prediction == Prediction::VPrediction;
        self.counter += 1;
        combined
            .iter()
            .zip(&sample)
            .map(|(&m, &x)| {
                let m = if v { sa * m + sb * x } else { m };
                sample_coeff * x - diff * m / denom
            })
            .collect()
    }

    fn x0_from_sigma(&self, m: f32, x: f32, sigma: f32) -> f32 {
        match self.prediction {
            Prediction::Epsilon => x - sigma * m,
            Prediction::VPrediction => {
                m * (-sigma / (sigma * sigma + 1.0).sqrt()) + x / (sigma * sigma + 1.0)
            }
        }
    }

    fn step_euler(&self, m: &[f32], x: &[f32], generator: &mut TorchGenerator) -> Vec<f32> {
        let sigma = self.sigmas[self.step_index] as f32;
        let dt = (self.sigmas[self.step_index + 1] - self.sigmas[self.step_index]) as f32;
        // diffusers draws (and with s_churn 0 discards) noise every step; keep the stream aligned.
        let _ = generator.randn(m.len());
        m.iter()
            .zip(x)
            .map(|(&m, &x)| {
                let x0 = self.x0_from_sigma(m, x, sigma);
                x + (x - x0) / sigma * dt
            })
            .collect()
    }

    fn step_euler_a(&self, m: &[f32], x: &[f32], generator: &mut TorchGenerator) -> Vec<f32> {
        let from = self.sigmas[self.step_index];
        let to = self.sigmas[self.step_index + 1];
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let sigma = from as f32;
        let dt = (down - from) as f32;
        let noise = generator.randn(m.len());
        let up = up as f32;
        m.iter()
            .zip(x)
            .zip(&noise)
            .map(|((&m, &x), &n)| {
                let x0 = self.x0_from_sigma(m, x, sigma);
                x + (x - x0) / sigma * dt + n * up
            })
            .collect()
    }

    fn alpha_sigma(sigma: f64) -> (f64, f64) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        (alpha, sigma * alpha)
    }

    fn step_dpm(&mut self, m: &[f32], x: &[f32]) -> Vec<f32> {
        let i = self.step_index;
        let n = self.timesteps.len();
        let lower_final =
            i == n - 1 && ((self.lower_order_final && n < 15) || self.final_sigma_zero);
        let (alpha_s0, sigma_s0) = Self::alpha_sigma(self.sigmas[i]);
        let (a, s) = (alpha_s0 as f32, sigma_s0 as f32);
        let x0: Vec<f32> = m
            .iter()
            .zip(x)
            .map(|(&m, &x)| match self.prediction {
                Prediction::Epsilon => (x - s * m) / a,
                Prediction::VPrediction => a * x - s * m,
            })
            .collect();
        if self.model_outputs.len() == 2 {
            self.model_outputs.remove(0);
        }
        self.model_outputs.push(x0);
        let (alpha_t, sigma_t) = Self::alpha_sigma(self.sigmas[i + 1]);
        let lambda_t = alpha_t.ln() - sigma_t.ln();
        let lambda_s0 = alpha_s0.ln() - sigma_s0.ln();
        let h = lambda_t - lambda_s0;
        let ratio = if sigma_t == 0.0 {
            0.0
        } else {
            (sigma_t / sigma_s0) as f32
        };
        let coeff = (alpha_t * ((-h).exp() - 1.0)) as f32;
        let m0 = &self.model_outputs[self.model_outputs.len() - 1];
        let out: Vec<f32> = if self.lower_order_nums < 1 || lower_final {
            x.iter()
                .zip(m0)
                .map(|(&x, &d)| ratio * x - coeff * d)
                .collect()
        } else {
            let (alpha_s1, sigma_s1) = Self::alpha_sigma(self.sigmas[i - 1]);
            let lambda_s1 = alpha_s1.ln() - sigma_s1.ln();
            let r0 = ((lambda_s0 - lambda_s1) / h) as f32;
            let m1 = &self.model_outputs[0];
            x.iter()
                .zip(m0)
                .zip(m1)
                .map(|((&x, &d0), &d1m)| {
                    let d1 = (1.0 / r0) * (d0 - d1m);
                    ratio * x - coeff * d0 - 0.5 * coeff * d1
                })
                .collect()
        };
        if self.lower_order_nums < 2 {
            self.lower_order_nums += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sd15() -> SchedulerConfig {
        SchedulerConfig::from_json(&json!({
            "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
            "clip_sample": false
        }))
        .unwrap()
    }

    #[test]
    fn pndm_timesteps_repeat_the_second_as_diffusers_does() {
        let s = sd15().build(None, 4).unwrap();
        assert_eq!(s.timesteps(), &[751.0, 501.0, 501.0, 251.0, 1.0]);
    }

    #[test]
    fn unknown_sampler_is_a_bad_request() {
        let e = sd15().build(Some("Heun 9000"), 4).err().unwrap();
        assert_eq!(e.kind().http_status(), 400);
    }
}
