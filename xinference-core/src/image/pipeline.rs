//! A Stable Diffusion pipeline loaded from a diffusers folder: CLIP text encoder, UNet, VAE
//! and scheduler, every size read from the folder's configs. It runs text to image (and image
//! to image from an initial image, inpainting with a mask) as `StableDiffusionPipeline` /
//! `StableDiffusionImg2ImgPipeline` / `StableDiffusionInpaintPipeline` (and their SDXL
//! counterparts, the refiner's aesthetic-score time ids included) do on CPU in float32, with
//! the request's seed drawn through [`TorchGenerator`]. A 9-channel UNet (an inpainting
//! model) takes the mask and the masked image's latents beside the noisy latents.

use super::config::{read_json, UNetSettings, VaeSettings};
use super::scheduler::{Scheduler, SchedulerConfig};
use super::text::TextEncoders;
use super::torch_rng::TorchGenerator;
use super::unet::{AddedConditions, UNet};
use super::vae::Vae;
use crate::{kernels, Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest width or height served (pixels).
pub const MAX_SIDE: usize = 2048;

/// One generation request, resolved (defaults applied, sizes checked by [`DiffusionPipeline`]).
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// The prompt.
    pub prompt: String,
    /// What to steer away from (classifier-free guidance's unconditional prompt).
    pub negative_prompt: Option<String>,
    /// Images to make.
    pub n: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale (guidance is off at 1 or below).
    pub guidance_scale: f64,
    /// The seed of the torch-compatible generator.
    pub seed: u64,
    /// Xinference's `sampler_name` (`None` or `"default"`: the folder's scheduler).
    pub sampler_name: Option<String>,
    /// Image to image: the initial image (RGB, `height x width x 3`, values in [0, 1]) and the
    /// strength (0..=1) of the noise added to it.
    pub init_image: Option<(Vec<f32>, f64)>,
    /// Inpainting: the mask over the initial image (`height x width` values in [0, 1]; from 0.5
    /// up the pixel is repainted, below it is kept), as diffusers' masked-latent method (or,
    /// for a 9-channel UNet, as its extra input).
    pub mask: Option<Vec<f32>>,
}

/// What a generation returns: each image as `height x width x 3` floats in [0, 1].
pub struct Generated {
    /// The images.
    pub images: Vec<Vec<f32>>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// A model's sizes and scheduler: what a request is checked against, without the weights.
#[derive(Debug, Clone)]
pub struct ImageLimits {
    /// The image side used when a request gives no size (`unet.sample_size * vae_scale`).
    pub default_size: usize,
    /// Width and height must be multiples of this.
    pub size_multiple: usize,
    /// The folder's scheduler settings.
    pub scheduler: SchedulerConfig,
    /// An inpainting UNet (9 input channels: latents, mask, masked-image latents): every
    /// request needs an image and a mask.
    pub needs_mask: bool,
    /// An SDXL refiner (`requires_aesthetics_score`): it refines images, every request needs
    /// an image.
    pub needs_image: bool,
}

impl ImageLimits {
    /// Checks a requested size (400 when not a multiple of what the model needs or too large).
    pub fn check_size(&self, width: usize, height: usize) -> Result<()> {
        let m = self.size_multiple;
        for (name, v) in [("width", width), ("height", height)] {
            if v == 0 || !v.is_multiple_of(m) {
                return Err(Error::bad_request(format!(
                    "{name} {v} is not a positive multiple of {m}, which this model needs"
                )));
            }
            if v > MAX_SIDE {
                return Err(Error::bad_request(format!(
                    "{name} {v} is larger than the maximum of {MAX_SIDE} pixels"
                )));
            }
        }
        Ok(())
    }

    /// Checks what a request asks before any compute (size, scheduler, steps, counts).
    pub fn check(&self, p: &GenerateParams) -> Result<()> {
        self.check_size(p.width, p.height)?;
        self.scheduler.build(p.sampler_name.as_deref(), p.steps)?;
        if !(1..=16).contains(&p.n) {
            return Err(Error::bad_request(format!(
                "n must be from 1 to 16, not {}",
                p.n
            )));
        }
        if !p.guidance_scale.is_finite() || p.guidance_scale < 0.0 {
            return Err(Error::bad_request("guidance_scale must be a number >= 0"));
        }
        if let Some((pixels, strength)) = &p.init_image {
            if !(0.0..=1.0).contains(strength) {
                return Err(Error::bad_request("strength must be between 0 and 1"));
            }
            if pixels.len() != p.width * p.height * 3 {
                return Err(Error::bad_request(
                    "the initial image does not match the size",
                ));
            }
        }
        match (&p.mask, &p.init_image) {
            (Some(mask), Some(_)) if mask.len() != p.width * p.height => {
                return Err(Error::bad_request(
                    "the mask image does not match the size of the image",
                ))
            }
            (Some(_), None) => return Err(Error::bad_request("a mask needs an image")),
            (None, None) if self.needs_image => {
                return Err(Error::bad_request(
                    "this is an SDXL refiner: it refines an image (use /v1/images/variations \
                     with an image), it does not generate from text alone",
                ))
            }
            (None, _) if self.needs_mask => {
                return Err(Error::bad_request(
                    "this is an inpainting model (its UNet takes a mask and the masked image): \
                     use /v1/images/inpainting with an image and a mask_image",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

/// A loaded pipeline.
pub struct DiffusionPipeline {
    text: TextEncoders,
    unet: UNet,
    vae: Vae,
    scheduler: SchedulerConfig,
    vae_settings: VaeSettings,
    /// Pixels per latent (2 ^ (VAE blocks - 1)).
    vae_scale: usize,
    /// Sizes must be multiples of this (VAE scale x UNet downsampling).
    size_multiple: usize,
    /// The size the model was trained at (`unet.sample_size * vae_scale`).
    default_size: usize,
    latent_channels: usize,
    /// A 9-channel inpainting UNet: the mask and the masked image's latents join its input.
    inpainting_unet: bool,
    /// SDXL refiner time ids (`requires_aesthetics_score`): original size, crop top-left and an
    /// aesthetic score (6.0, 2.5 on the unconditional side) instead of the target size.
    aesthetics: bool,
    device: Device,
}

/// The weight files of one component folder: single-file or sharded safetensors (the
/// `.safetensors.index.json` lists the shards), preferring full precision over an fp16 variant.
pub fn weight_files(dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    for name in [
        format!("{stem}.safetensors.index.json"),
        format!("{stem}.fp16.safetensors.index.json"),
    ] {
        let index = dir.join(&name);
        if index.exists() {
            let json = read_json(&index)?;
            let map = json
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    Error::bad_request(format!("{} has no weight_map", index.display()))
                })?;
            let mut files: Vec<String> = map
                .values()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            files.sort();
            files.dedup();
            return files
                .into_iter()
                .map(|f| {
                    let path = dir.join(&f);
                    if f.contains('/') || f.contains("..") || !path.exists() {
                        Err(Error::bad_request(format!(
                            "shard {f} listed in {} is missing",
                            index.display()
                        )))
                    } else {
                        Ok(path)
                    }
                })
                .collect();
        }
    }
    for name in [
        format!("{stem}.safetensors"),
        format!("{stem}.fp16.safetensors"),
    ] {
        let file = dir.join(&name);
        if file.exists() {
            return Ok(vec![file]);
        }
    }
    Err(Error::bad_request(format!(
        "{} holds no {stem}.safetensors (single or sharded); only safetensors weights are read",
        dir.display()
    )))
}

/// The weights of `files`, read tensor by tensor (not memory-mapped: see [`super::weights`]).
fn var_builder(files: &[PathBuf], device: &Device) -> Result<VarBuilder<'static>> {
    Ok(super::weights::ReadSafetensors::var_builder(
        files,
        DType::F32,
        device,
    )?)
}

impl DiffusionPipeline {
    /// Loads a diffusers Stable Diffusion folder (`model_index.json` at its root).
    pub fn load(root: &Path) -> Result<Self> {
        let index = read_json(&root.join("model_index.json"))?;
        let class = index
            .get("_class_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !root.join("text_encoder").is_dir() && !root.join("text_encoder_2").is_dir() {
            return Err(Error::bad_request(format!(
                "{class}: this pipeline has neither text_encoder/ nor text_encoder_2/"
            )));
        }
        let aesthetics = index
            .get("requires_aesthetics_score")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let device = Device::Cpu;
        let text = TextEncoders::load(root, &index, &device)?;
        let unet_dir = root.join("unet");
        let unet_settings = UNetSettings::from_json(&read_json(&unet_dir.join("config.json"))?)?;
        let unet = UNet::new(
            var_builder(
                &weight_files(&unet_dir, "diffusion_pytorch_model")?,
                &device,
            )?,
            &unet_settings,
        )?;
        let time_ids = if aesthetics { 5 } else { 6 };
        match (unet.pooled_width(time_ids), text.pooled_width()) {
            (None, _) => {}
            (Some(_), None) => {
                return Err(Error::bad_request(
                    "the UNet has SDXL's text_time conditioning but the folder has no \
                     text_encoder_2 with a projection",
                ))
            }
            (Some(u), Some(t)) if u != t => {
                return Err(Error::bad_request(format!(
                    "the UNet's add_embedding expects a pooled text width of {u}, but \
                     text_encoder_2 projects to {t}"
                )))
            }
            _ => {}
        }
        let vae_dir = root.join("vae");
        let vae_settings = VaeSettings::from_json(&read_json(&vae_dir.join("config.json"))?)?;
        let vae_vb = var_builder(&weight_files(&vae_dir, "diffusion_pytorch_model")?, &device)?;
        let vae = Vae::new(vae_vb, &vae_settings)?;
        let latent_channels = vae_settings.config.latent_channels;
        // Latents alone, or (inpainting UNets) latents + mask + masked-image latents.
        let inpainting_unet = unet_settings.in_channels == 2 * latent_channels + 1;
        if unet_settings.in_channels != latent_channels && !inpainting_unet {
            return Err(Error::bad_request(format!(
                "a UNet with {} input channels over {latent_channels}-channel latents is not \
                 supported: {latent_channels} (latents) or {} (inpainting: latents, mask, \
                 masked-image latents) are",
                unet_settings.in_channels,
                2 * latent_channels + 1
            )));
        }
        let scheduler = SchedulerConfig::from_json(&read_json(
            &root.join("scheduler").join("scheduler_config.json"),
        )?)?;
        let vae_scale = 1 << (vae_settings.config.block_out_channels.len() - 1);
        let unet_down = 1 << (unet_settings.config.blocks.len() - 1);
        Ok(DiffusionPipeline {
            text,
            unet,
            vae,
            scheduler,
            vae_scale,
            size_multiple: (vae_scale * unet_down).max(8),
            default_size: unet_settings.sample_size * vae_scale,
            latent_channels,
            inpainting_unet,
            aesthetics,
            vae_settings,
            device,
        })
    }

    /// What requests are checked against before they are queued.
    pub fn limits(&self) -> ImageLimits {
        ImageLimits {
            default_size: self.default_size,
            size_multiple: self.size_multiple,
            scheduler: self.scheduler.clone(),
            needs_mask: self.inpainting_unet,
            needs_image: self.aesthetics,
        }
    }

    /// The VAE latents of an RGB image (`height x width x 3` in [0, 1]), sampled from the
    /// encoder's distribution with `generator` (diffusers' `retrieve_latents`), then scaled.
    fn encode_image(
        &self,
        pixels: &[f32],
        p: &GenerateParams,
        generator: &mut TorchGenerator,
    ) -> Result<Tensor> {
        // HWC in [0, 1] to CHW in [-1, 1].
        let plane = p.height * p.width;
        let mut image = vec![0f32; 3 * plane];
        for (i, rgb) in pixels.chunks_exact(3).enumerate() {
            for (c, v) in rgb.iter().enumerate() {
                image[c * plane + i] = 2.0 * v - 1.0;
            }
        }
        let (mean, std, (lh, lw)) =
            kernels::on_pool(|| self.vae.encode(&image, (1, p.height, p.width)));
        let noise = generator.randn(mean.len());
        let (shift, scale) = (
            self.vae_settings.shift_factor as f32,
            self.vae_settings.scaling_factor as f32,
        );
        let sample: Vec<f32> = mean
            .iter()
            .zip(&std)
            .zip(&noise)
            .map(|((m, s), z)| (m + s * z - shift) * scale)
            .collect();
        Ok(Tensor::from_vec(
            sample,
            (1, self.latent_channels, lh, lw),
            &self.device,
        )?)
    }

    /// The starting latents (and, for inpainting, what each step is blended with).
    fn initial_latents(
        &self,
        p: &GenerateParams,
        scheduler: &mut Scheduler,
        generator: &mut TorchGenerator,
        shape: (usize, usize, usize, usize),
    ) -> Result<Start> {
        let len = shape.0 * shape.1 * shape.2 * shape.3;
        let Some((pixels, strength)) = &p.init_image else {
            let sigma = scheduler.init_noise_sigma() as f32;
            let latents = generator
                .randn(len)
                .into_iter()
                .map(|v| v * sigma)
                .collect();
            return Ok(Start {
                latents,
                start: 0,
                inpaint: None,
                unet_extra: None,
            });
        };
        // diffusers' get_timesteps: skip the first steps - int(steps * strength) entries of
        // the schedule (which PNDM makes one longer than `steps`).
        let init = ((p.steps as f64 * strength) as usize).min(p.steps);
        let start = p.steps - init;
        if init == 0 || start >= scheduler.timesteps().len() {
            return Err(Error::bad_request(
                "strength is too low: no denoising step would run (raise strength or \
                 num_inference_steps)",
            ));
        }
        scheduler.set_begin_index(start);
        // diffusers' inpainting pipelines with a 9-channel UNet encode the image only when
        // they noise it (strength below 1); every other path encodes it first.
        let full = p.mask.is_some() && *strength == 1.0;
        let clean: Vec<f32> = if full && self.inpainting_unet {
            Vec::new()
        } else {
            self.encode_image(pixels, p, generator)?
                .broadcast_as(shape)?
                .flatten_all()?
                .to_vec1()?
        };
        let noise = generator.randn(len);
        let Some(mask) = &p.mask else {
            return Ok(Start {
                latents: scheduler.add_noise(&clean, &noise, start),
                start,
                inpaint: None,
                unet_extra: None,
            });
        };
        // StableDiffusion(XL)InpaintPipeline: pure noise at full strength.
        let latents = if full {
            let sigma = scheduler.init_noise_sigma() as f32;
            noise.iter().map(|v| v * sigma).collect()
        } else {
            scheduler.add_noise(&clean, &noise, start)
        };
        let (_, channels, lh, lw) = shape;
        // The mask at latent size: torch's nearest interpolation, binarised at 0.5.
        let small: Vec<f32> = (0..lh)
            .flat_map(|y| (0..lw).map(move |x| (y, x)))
            .map(|(y, x)| {
                let (sy, sx) = (y * p.height / lh, x * p.width / lw);
                if mask[sy * p.width + sx] >= 0.5 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        // diffusers then encodes the masked image (the mask's pixels at 0 in [-1, 1]) with the
        // same generator; 4-channel UNets do not use it, but the draw is made so that later
        // draws (ancestral noise) match.
        if !self.inpainting_unet {
            generator.randn(channels * lh * lw);
            let mask = (0..shape.0 * channels)
                .flat_map(|_| small.iter().copied())
                .collect();
            return Ok(Start {
                latents,
                start,
                inpaint: Some(Inpaint { clean, noise, mask }),
                unet_extra: None,
            });
        }
        let masked: Vec<f32> = pixels
            .chunks_exact(3)
            .zip(mask)
            .flat_map(|(rgb, m)| {
                if *m >= 0.5 {
                    [0.5; 3]
                } else {
                    [rgb[0], rgb[1], rgb[2]]
                }
            })
            .collect();
        let masked = self.encode_image(&masked, p, generator)?;
        let mask = Tensor::from_vec(small, (1, 1, lh, lw), &self.device)?;
        let rows = if p.guidance_scale > 1.0 {
            2 * shape.0
        } else {
            shape.0
        };
        let extra = Tensor::cat(&[&mask, &masked], 1)?
            .broadcast_as((rows, channels + 1, lh, lw))?
            .contiguous()?;
        Ok(Start {
            latents,
            start,
            inpaint: None,
            unet_extra: Some(extra),
        })
    }

    /// SDXL's time ids per UNet batch row (unconditional rows first): original size, crop
    /// top-left (0, 0) and target size, or for a refiner the aesthetic score (diffusers'
    /// defaults: 6.0, and 2.5 for the unconditional rows) instead of the target size.
    fn time_ids(&self, p: &GenerateParams, guided: bool) -> Result<Tensor> {
        let (h, w) = (p.height as f32, p.width as f32);
        let row = |uncond: bool| -> Vec<f32> {
            if self.aesthetics {
                vec![h, w, 0.0, 0.0, if uncond { 2.5 } else { 6.0 }]
            } else {
                vec![h, w, 0.0, 0.0, h, w]
            }
        };
        let uncond = if guided { p.n } else { 0 };
        let ids: Vec<f32> = (0..uncond + p.n).flat_map(|i| row(i < uncond)).collect();
        let width = if self.aesthetics { 5 } else { 6 };
        Ok(Tensor::from_vec(ids, (uncond + p.n, width), &self.device)?)
    }

    /// Runs the pipeline. `on_step(done, total)` is called after each denoising step; when it
    /// returns false the generation stops (the caller went away) with a cancelled error.
    pub fn generate(
        &self,
        p: &GenerateParams,
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Generated> {
        self.limits().check(p)?;
        let mut scheduler = self.scheduler.build(p.sampler_name.as_deref(), p.steps)?;
        let guided = p.guidance_scale > 1.0;
        let cond = self.text.encode(
            &p.prompt,
            p.negative_prompt.as_deref(),
            p.n,
            guided,
            &self.device,
        )?;
        let time_ids = self.time_ids(p, guided)?;
        let added = cond.pooled.as_ref().map(|pooled| AddedConditions {
            text_embeds: pooled,
            time_ids: &time_ids,
        });
        let (lh, lw) = (p.height / self.vae_scale, p.width / self.vae_scale);
        let shape = (p.n, self.latent_channels, lh, lw);
        let mut generator = TorchGenerator::new(p.seed);
        let Start {
            mut latents,
            start,
            inpaint,
            unet_extra,
        } = self.initial_latents(p, &mut scheduler, &mut generator, shape)?;
        let all_timesteps = scheduler.timesteps().to_vec();
        let total = all_timesteps.len() - start;
        for (done, index) in (start..all_timesteps.len()).enumerate() {
            let t = all_timesteps[index];
            let x = Tensor::from_slice(&latents, shape, &self.device)?;
            let scale = scheduler.input_scale(index);
            let x = if scale != 1.0 { (x * scale)? } else { x };
            let input = if guided {
                Tensor::cat(&[&x, &x], 0)?
            } else {
                x
            };
            let input = match &unet_extra {
                Some(extra) => Tensor::cat(&[&input, extra], 1)?,
                None => input,
            };
            let out =
                kernels::on_pool(|| self.unet.forward(&input, t, &cond.context, added.as_ref()))?;
            let noise_pred = if guided {
                let uncond = out.narrow(0, 0, p.n)?;
                let cond = out.narrow(0, p.n, p.n)?;
                (&uncond + ((cond - &uncond)? * p.guidance_scale)?)?
            } else {
                out
            };
            let noise_pred: Vec<f32> = noise_pred.flatten_all()?.to_vec1()?;
            latents = scheduler.step(&noise_pred, &latents, &mut generator);
            if let Some(inp) = &inpaint {
                // Outside the mask, the initial image noised to the next step's level.
                let kept = if index + 1 < all_timesteps.len() {
                    scheduler.add_noise(&inp.clean, &inp.noise, index + 1)
                } else {
                    inp.clean.clone()
                };
                for ((l, k), m) in latents.iter_mut().zip(&kept).zip(&inp.mask) {
                    *l = (1.0 - m) * k + m * *l;
                }
            }
            if !on_step(done + 1, total) {
                return Err(Error::new(
                    crate::ErrorKind::Cancelled,
                    "image generation cancelled: the client went away",
                ));
            }
        }
        let (scale, shift) = (
            self.vae_settings.scaling_factor as f32,
            self.vae_settings.shift_factor as f32,
        );
        let latents: Vec<f32> = latents.iter().map(|v| v / scale + shift).collect();
        let per = self.latent_channels * lh * lw;
        let mut images = Vec::with_capacity(p.n);
        for z in latents.chunks_exact(per) {
            let (decoded, (h, w)) = kernels::on_pool(|| self.vae.decode(z, (1, lh, lw)));
            // CHW around [-1, 1] to HWC in [0, 1].
            let plane = h * w;
            let mut pixels = vec![0f32; 3 * plane];
            for (i, rgb) in pixels.chunks_exact_mut(3).enumerate() {
                for (c, v) in rgb.iter_mut().enumerate() {
                    *v = (decoded[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0);
                }
            }
            images.push(pixels);
        }
        Ok(Generated {
            images,
            width: p.width,
            height: p.height,
        })
    }
}

/// The latents a generation starts from.
struct Start {
    latents: Vec<f32>,
    /// Index of the first timestep run.
    start: usize,
    inpaint: Option<Inpaint>,
    /// A 9-channel UNet's extra input channels, one row per UNet batch row: the latent-size
    /// mask and the masked image's latents.
    unet_extra: Option<Tensor>,
}

/// Inpainting's per-step blend: the clean image latents, the noise they are re-noised with,
/// and the latent-size mask (1: generated, 0: kept), all `n x channels x h x w`.
struct Inpaint {
    clean: Vec<f32>,
    noise: Vec<f32>,
    mask: Vec<f32>,
}
