//! Image wire types: Xinference's and OpenAI's `POST /v1/images/generations`, and the
//! fields of `POST /v1/images/variations` (image to image, multipart).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/images/generations`. Xinference's client sends its options in `kwargs` (a JSON
/// string); OpenAI's sends `output_format` and friends at the top level; both are accepted,
/// and generation options (`negative_prompt`, `guidance_scale`, `num_inference_steps`, `seed`,
/// `sampler_name`) are read from either place.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageGenerationRequest {
    /// The model uid.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Images to make (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// `url` (default) or `b64_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
    /// `512*512` (Xinference) or `512x512` (OpenAI); `auto` or absent: the model's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Options as a JSON object, or a string holding one (Xinference's client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kwargs: Option<Value>,
    /// The end user (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field (OpenAI's `output_format`, options given at the top level).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageGenerationRequest {
    /// A request for `prompt` (the model is set by the handle that sends it).
    pub fn new(prompt: impl Into<String>) -> Self {
        ImageGenerationRequest {
            prompt: prompt.into(),
            ..Default::default()
        }
    }
}

/// Image to image (`POST /v1/images/variations`): the multipart fields, decoded.
#[derive(Debug, Clone, Default)]
pub struct ImageToImageRequest {
    /// The model uid.
    pub model: String,
    /// The initial image file (PNG, JPEG or WebP bytes).
    pub image: Vec<u8>,
    /// The prompt.
    pub prompt: String,
    /// Images to make (default 1).
    pub n: Option<i64>,
    /// `url` (default) or `b64_json`.
    pub response_format: Option<String>,
    /// Output size; absent: the initial image's size (rounded down to what the model needs).
    pub size: Option<String>,
    /// Options (`negative_prompt`, `strength`, `guidance_scale`, `num_inference_steps`, `seed`,
    /// `sampler_name`, `output_format`).
    pub kwargs: Map<String, Value>,
}

/// Inpainting (`POST /v1/images/inpainting`): the multipart fields, decoded.
#[derive(Debug, Clone, Default)]
pub struct InpaintingRequest {
    /// The model uid.
    pub model: String,
    /// The image to repaint (PNG, JPEG or WebP bytes).
    pub image: Vec<u8>,
    /// The mask, the image's size: white (from half grey up) is repainted, black is kept.
    pub mask_image: Vec<u8>,
    /// The prompt.
    pub prompt: String,
    /// Images to make (default 1).
    pub n: Option<i64>,
    /// `url` (default) or `b64_json`.
    pub response_format: Option<String>,
    /// Output size; absent: the image's size (rounded down to what the model needs).
    pub size: Option<String>,
    /// Options (`negative_prompt`, `strength` (default 1.0), `guidance_scale`,
    /// `num_inference_steps`, `seed`, `sampler_name`, `output_format`).
    pub kwargs: Map<String, Value>,
}

/// One image of a response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageData {
    /// Where the image can be fetched: an HTTP URL from the server, a local file path in process.
    pub url: Option<String>,
    /// The image file, base64.
    pub b64_json: Option<String>,
}

/// The response of the image routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageResponse {
    /// Unix time of creation.
    pub created: u64,
    /// The images.
    pub data: Vec<ImageData>,
    /// `png`, `jpeg` or `webp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// `WIDTHxHEIGHT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The seed the images were drawn with (random when the request gave none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}
