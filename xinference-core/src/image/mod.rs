//! Image generation: Stable Diffusion pipelines read from the diffusers folder layout
//! (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`).
//!
//! - [`pipeline`]: loading and the denoising loop (text to image, image to image, inpainting
//!   with the masked-latent method or a 9-channel inpainting UNet, SDXL refiners).
//! - [`text`]: the prompt encoders (one CLIP, SDXL's two, or a refiner's second alone, with the
//!   pooled projection);
//!   [`clip`]: our CLIP text encoder and tokenizer.
//! - [`unet`]: our UNet (time embedding, SDXL's text_time added conditioning), [`blocks`]:
//!   its down/mid/up blocks, [`layers`]: their resnet and spatial-transformer layers, [`ops`]:
//!   the convolutions and group norms under them; [`config`]: UNet/VAE settings from the
//!   configs; [`vae`]: the autoencoder (decoder, and the encoder whose latent distribution
//!   we sample ourselves) over the same layers; [`attention`]: attention a block of queries
//!   at a time.
//! - [`scheduler`]: PNDM, DDIM, Euler, Euler ancestral, DPM-Solver++ 2M (Karras).
//! - [`torch_rng`]: `torch.Generator("cpu")` + `torch.randn`, so a seed means what it means in
//!   diffusers.
//! - [`codec`]: PNG/JPEG/WebP out, uploaded images in.

pub mod attention;
pub mod blocks;
pub mod clip;
pub mod codec;
pub mod config;
pub mod layers;
pub mod norm_linear;
pub mod ops;
pub mod packed;
pub mod pipeline;
pub mod pool;
mod schedule;
pub mod scheduler;
mod sigmas;
pub mod text;
mod tiles;
pub mod torch_rng;
pub mod unet;
pub mod vae;
pub mod weights;
pub mod winograd;

pub use pipeline::{DiffusionPipeline, GenerateParams, Generated, ImageLimits};

use crate::Result;
use std::path::Path;

/// The image capability: one loaded text-to-image (and image-to-image) model.
pub trait ImageGenerator: Send {
    /// What requests are checked against before they are queued.
    fn limits(&self) -> ImageLimits;
    /// Generates; `on_step(done, total)` after each denoising step, false to stop.
    fn generate(
        &self,
        params: &GenerateParams,
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Generated>;
}

impl ImageGenerator for DiffusionPipeline {
    fn limits(&self) -> ImageLimits {
        DiffusionPipeline::limits(self)
    }

    fn generate(
        &self,
        params: &GenerateParams,
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Generated> {
        DiffusionPipeline::generate(self, params, on_step)
    }
}

/// Loads the image model in `dir` (a diffusers Stable Diffusion or SDXL folder).
pub fn load_image_model(dir: &Path) -> Result<Box<dyn ImageGenerator>> {
    if !dir.join("model_index.json").exists() {
        return Err(crate::Error::bad_request(format!(
            "{} is not a diffusers pipeline folder (no model_index.json)",
            dir.display()
        )));
    }
    Ok(Box::new(DiffusionPipeline::load(dir)?))
}
