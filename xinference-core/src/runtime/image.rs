//! The image capability of the runtime: request options (Xinference's `kwargs`, OpenAI's
//! top-level fields, the family's `default_generate_config`), checks before queueing, the
//! generation on a replica's worker (stopping between steps when the caller went away), and
//! the response: base64 or files under `$XINFERENCE_HOME/image/`.

use super::{Loaded, Runtime, Worker};
use crate::image::codec::{self, OutputFormat};
use crate::image::{GenerateParams, ImageGenerator, ImageLimits};
use crate::protocol::image::{
    ImageData, ImageGenerationRequest, ImageResponse, ImageToImageRequest, InpaintingRequest,
};
use crate::registry::ModelType;
use crate::{Error, Result};
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One replica of an image model: its worker and what requests are checked against.
pub(crate) struct ImageReplica {
    pub(crate) worker: Worker<Box<dyn ImageGenerator>>,
    limits: ImageLimits,
}

impl ImageReplica {
    pub(crate) fn new(worker: Worker<Box<dyn ImageGenerator>>, limits: ImageLimits) -> Self {
        ImageReplica { worker, limits }
    }
}

/// Progress of image requests by `request_id`: (steps done, steps in all). Entries stay after
/// the request ends (progress 1.0); the oldest are dropped past [`PROGRESS_ENTRIES`].
#[derive(Default)]
pub(crate) struct ProgressTable(Mutex<ProgressEntries>);

type ProgressEntries = (HashMap<String, (usize, usize)>, VecDeque<String>);

/// Requests whose progress is remembered.
const PROGRESS_ENTRIES: usize = 1024;

impl ProgressTable {
    fn set(&self, id: &str, done: usize, total: usize) {
        let mut guard = self.0.lock().expect("progress lock");
        let (map, order) = &mut *guard;
        if map.insert(id.to_owned(), (done, total)).is_none() {
            order.push_back(id.to_owned());
            while order.len() > PROGRESS_ENTRIES {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    fn get(&self, id: &str) -> Option<(usize, usize)> {
        self.0.lock().expect("progress lock").0.get(id).copied()
    }
}

/// Sets the flag when dropped: the request's future is gone (client disconnected) or done.
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `kwargs` as an object: a JSON object, a string holding one, or nothing.
pub(crate) fn kwargs_object(kwargs: Option<&Value>) -> Result<Map<String, Value>> {
    match kwargs {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(Value::Null) => Ok(Map::new()),
            _ => Err(Error::bad_request(
                "kwargs must be a JSON object (or a string holding one)",
            )),
        },
        Some(other) => Err(Error::bad_request(format!(
            "kwargs must be a JSON object, not {other}"
        ))),
    }
}

/// Parses `512*512`, `512x512` (any non-digit separates); `None` for absent or `auto`.
pub fn parse_size(size: Option<&str>) -> Result<Option<(usize, usize)>> {
    let Some(text) = size
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "auto")
    else {
        return Ok(None);
    };
    let numbers: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .collect();
    match numbers.as_slice() {
        [w, h] => match (w.parse::<usize>(), h.parse::<usize>()) {
            (Ok(w), Ok(h)) => Ok(Some((w, h))),
            _ => Err(Error::bad_request(format!("size {text:?} is too large"))),
        },
        _ => Err(Error::bad_request(format!(
            "size {text:?} must be WIDTH*HEIGHT or WIDTHxHEIGHT, e.g. 512*512"
        ))),
    }
}

fn opt_f64(o: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::bad_request(format!("{key} must be a number, not {s:?}"))),
        Some(other) => Err(Error::bad_request(format!(
            "{key} must be a number, not {other}"
        ))),
    }
}

fn opt_u64(o: &Map<String, Value>, key: &str) -> Result<Option<u64>> {
    match opt_f64(o, key)? {
        None => Ok(None),
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64 => Ok(Some(v as u64)),
        Some(v) => Err(Error::bad_request(format!(
            "{key} must be a non-negative integer, not {v}"
        ))),
    }
}

fn opt_str(o: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::bad_request(format!(
            "{key} must be a string, not {other}"
        ))),
    }
}

/// What one request resolved to, besides the generation parameters.
#[derive(Clone, Copy)]
struct Delivery {
    as_url: bool,
    format: OutputFormat,
}

fn delivery(response_format: Option<&str>, options: &Map<String, Value>) -> Result<Delivery> {
    let as_url = match response_format.map(str::trim) {
        None | Some("") | Some("url") => true,
        Some("b64_json") => false,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "response_format {other:?} is not one of url, b64_json"
            )))
        }
    };
    let format = OutputFormat::parse(opt_str(options, "output_format")?.as_deref())?;
    Ok(Delivery { as_url, format })
}

/// The generation options: the family's defaults, then top-level fields, then `kwargs`.
fn merged_options(
    defaults: Option<&Value>,
    extra: &Map<String, Value>,
    kwargs: Map<String, Value>,
) -> Map<String, Value> {
    let mut options = defaults
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    options.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    options.extend(kwargs);
    options
}

impl Runtime {
    /// The folder generated image files are written to: `$XINFERENCE_HOME/image`.
    pub fn image_dir(&self) -> PathBuf {
        self.config.home.join("image")
    }

    /// A generated image file by name (400 for a name that is not a plain file name in
    /// [`Runtime::image_dir`], 404 when missing): its bytes and media type.
    pub async fn image_file(&self, name: &str) -> Result<(Vec<u8>, &'static str)> {
        crate::registry::check_plain_name("image file name", name)?;
        let mime = match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some("png") => "image/png",
            Some("jpg") | Some("jpeg") => "image/jpeg",
            Some("webp") => "image/webp",
            _ => return Err(Error::not_found(format!("no image file {name}"))),
        };
        let path = self.image_dir().join(name);
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| Error::internal(format!("reading an image file failed: {e}")))?
            .map_err(|_| Error::not_found(format!("no image file {name}")))?;
        Ok((bytes, mime))
    }

    /// Progress (0 to 1) of the image request that named `request_id` in its options
    /// (Xinference's `GET /v1/requests/{request_id}/progress`); 404 when unknown.
    pub fn request_progress(&self, request_id: &str) -> Result<f64> {
        let (done, total) = self
            .image_progress
            .get(request_id)
            .ok_or_else(|| Error::not_found(format!("no request with request_id {request_id}")))?;
        Ok(if total == 0 {
            0.0
        } else {
            done as f64 / total as f64
        })
    }

    /// Text to image (`POST /v1/images/generations`).
    pub async fn text_to_image(&self, request: ImageGenerationRequest) -> Result<ImageResponse> {
        let kwargs = kwargs_object(request.kwargs.as_ref())?;
        self.run_image(
            &request.model,
            request.prompt,
            request.n,
            request.response_format.as_deref(),
            request.size.as_deref(),
            &request.extra,
            kwargs,
            None,
        )
        .await
    }

    /// Image to image (`POST /v1/images/variations`): the initial image is noised by `strength`
    /// (default 0.8, as diffusers) and denoised towards the prompt.
    pub async fn image_to_image(&self, request: ImageToImageRequest) -> Result<ImageResponse> {
        if request.image.is_empty() {
            return Err(Error::bad_request("image is required"));
        }
        let kwargs = request.kwargs;
        self.run_image(
            &request.model,
            request.prompt,
            request.n,
            request.response_format.as_deref(),
            request.size.as_deref(),
            &Map::new(),
            kwargs,
            Some(Upload {
                image: request.image,
                mask: None,
            }),
        )
        .await
    }

    /// Inpainting (`POST /v1/images/inpainting`): where `mask_image` is white (from half
    /// grey up) the image is repainted towards the prompt, elsewhere it is kept, with the
    /// masked-latent method of diffusers' `StableDiffusionInpaintPipeline` for 4-channel
    /// UNets (`strength` defaults to 1.0 as there). The mask must have the image's size.
    pub async fn inpainting(&self, request: InpaintingRequest) -> Result<ImageResponse> {
        if request.image.is_empty() {
            return Err(Error::bad_request("image is required"));
        }
        if request.mask_image.is_empty() {
            return Err(Error::bad_request("mask_image is required"));
        }
        let mut kwargs = request.kwargs;
        kwargs.entry("strength").or_insert_with(|| Value::from(1.0));
        self.run_image(
            &request.model,
            request.prompt,
            request.n,
            request.response_format.as_deref(),
            request.size.as_deref(),
            &Map::new(),
            kwargs,
            Some(Upload {
                image: request.image,
                mask: Some(request.mask_image),
            }),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_image(
        &self,
        model: &str,
        prompt: String,
        n: Option<i64>,
        response_format: Option<&str>,
        size: Option<&str>,
        extra: &Map<String, Value>,
        kwargs: Map<String, Value>,
        upload: Option<Upload>,
    ) -> Result<ImageResponse> {
        let record = self.begin_request(model);
        let result = self
            .run_image_unrecorded(
                model,
                prompt,
                n,
                response_format,
                size,
                extra,
                kwargs,
                upload,
            )
            .await;
        super::metrics::finish(record, result)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_image_unrecorded(
        &self,
        model: &str,
        prompt: String,
        n: Option<i64>,
        response_format: Option<&str>,
        size: Option<&str>,
        extra: &Map<String, Value>,
        kwargs: Map<String, Value>,
        upload: Option<Upload>,
    ) -> Result<ImageResponse> {
        let instance = self.instance(model)?;
        if instance.family.model_type != ModelType::Image {
            return Err(Error::bad_request(format!(
                "Model {model} is not an image model (its type is {})",
                instance.family.model_type
            )));
        }
        check_abilities(model, &instance.family.abilities, upload.as_ref())?;
        let options = merged_options(
            instance.family.json.get("default_generate_config"),
            extra,
            kwargs,
        );
        let delivery = delivery(response_format, &options)?;
        let n = match n {
            None => 1,
            Some(n) if (1..=16).contains(&n) => n as usize,
            Some(n) => {
                return Err(Error::bad_request(format!(
                    "n must be from 1 to 16, not {n}"
                )))
            }
        };
        let loaded = instance.loaded()?;
        let Loaded::Image(replicas) = &*loaded else {
            return Err(Error::bad_request(format!(
                "Model {model} is not an image model"
            )));
        };
        let replica = &replicas[instance.pick_replica(replicas.len())];
        let limits = &replica.limits;
        let requested = parse_size(size)?;
        let strength = opt_f64(&options, "strength")?.unwrap_or(0.8);
        let (width, height, init, mask) = canvas(limits, requested, upload, strength).await?;
        let seed = match opt_f64(&options, "seed")? {
            None => rand::random::<u32>() as u64,
            Some(s) if s < 0.0 => rand::random::<u32>() as u64,
            Some(_) => opt_u64(&options, "seed")?.unwrap_or(0),
        };
        let params = GenerateParams {
            prompt,
            negative_prompt: opt_str(&options, "negative_prompt")?,
            n,
            width,
            height,
            steps: opt_u64(&options, "num_inference_steps")?.unwrap_or(50) as usize,
            guidance_scale: opt_f64(&options, "guidance_scale")?.unwrap_or(7.5),
            seed,
            sampler_name: opt_str(&options, "sampler_name")?,
            init_image: init,
            mask,
        };
        limits.check(&params)?;
        tracing::info!(
            "image request on {model}: {width}x{height}, n={n}, {} steps, seed {seed}",
            params.steps
        );
        let request_id = opt_str(&options, "request_id")?;
        if let Some(id) = &request_id {
            self.image_progress.set(id, 0, params.steps);
        }
        let progress = self.image_progress.clone();
        let gone = Arc::new(AtomicBool::new(false));
        let _flag_on_drop = Gone(gone.clone());
        let dir = self.image_dir();
        let data = replica
            .worker
            .call(move |model| {
                let generated = model.generate(&params, &mut |done, total| {
                    if let Some(id) = &request_id {
                        progress.set(id, done, total);
                    }
                    !gone.load(Ordering::Relaxed)
                })?;
                generated
                    .images
                    .iter()
                    .map(|pixels| {
                        deliver(pixels, generated.width, generated.height, &delivery, &dir)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        Ok(ImageResponse {
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            data,
            output_format: Some(
                match delivery.format {
                    OutputFormat::Png => "png",
                    OutputFormat::Jpeg => "jpeg",
                    OutputFormat::Webp => "webp",
                }
                .to_owned(),
            ),
            size: Some(format!("{width}x{height}")),
            seed: Some(seed),
        })
    }
}

/// The width and height of the images, the init image and its strength, and the mask.
type Canvas = (usize, usize, Option<(Vec<f32>, f64)>, Option<Vec<f32>>);

/// The size of the images, and the decoded init image (with `strength`) and mask of an
/// upload (decoded on a blocking thread), each size checked against the model's limits.
async fn canvas(
    limits: &ImageLimits,
    requested: Option<(usize, usize)>,
    upload: Option<Upload>,
    strength: f64,
) -> Result<Canvas> {
    Ok(match upload {
        None => {
            let (w, h) = requested.unwrap_or((limits.default_size, limits.default_size));
            limits.check_size(w, h)?;
            (w, h, None, None)
        }
        Some(upload) => {
            if let Some((w, h)) = requested {
                limits.check_size(w, h)?;
            }
            let multiple = limits.size_multiple;
            let (pixels, w, h, mask) = tokio::task::spawn_blocking(move || {
                let (pixels, w, h) = codec::decode(&upload.image, requested, multiple)?;
                let mask = match &upload.mask {
                    None => None,
                    Some(mask) => {
                        codec::check_same_size(&upload.image, mask)?;
                        Some(codec::decode_mask(mask, w, h)?)
                    }
                };
                Ok::<_, Error>((pixels, w, h, mask))
            })
            .await
            .map_err(|e| Error::internal(format!("decoding the image failed: {e}")))??;
            limits.check_size(w, h)?;
            (w, h, Some((pixels, strength)), mask)
        }
    })
}

/// Whether a model with `abilities` serves an upload (image to image, or inpainting with a
/// mask). Inpainting runs on any model that can do image to image (the masked-latent method
/// needs nothing more), or that the registry says inpaints.
fn check_abilities(model: &str, abilities: &[String], upload: Option<&Upload>) -> Result<()> {
    let able = |a: &str| abilities.iter().any(|x| x == a);
    match upload {
        Some(u) if u.mask.is_some() && !able("image2image") && !able("inpainting") => {
            Err(Error::bad_request(format!(
                "Model {model} does not support inpainting (abilities: {})",
                abilities.join(", ")
            )))
        }
        Some(u) if u.mask.is_none() && !able("image2image") => Err(Error::bad_request(format!(
            "Model {model} does not support image to image (abilities: {})",
            abilities.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// One generated image as the request asked for it: encoded, then base64 or written under
/// `dir` (its path the `url`). Runs on the model's worker.
fn deliver(
    pixels: &[f32],
    width: usize,
    height: usize,
    delivery: &Delivery,
    dir: &std::path::Path,
) -> Result<ImageData> {
    let bytes = codec::encode(pixels, width, height, delivery.format)?;
    if !delivery.as_url {
        return Ok(ImageData {
            url: None,
            b64_json: Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
        });
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(format!(
        "{}.{}",
        uuid::Uuid::new_v4().simple(),
        delivery.format.extension()
    ));
    std::fs::write(&path, &bytes)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(ImageData {
        url: Some(path.to_string_lossy().into_owned()),
        b64_json: None,
    })
}

/// The uploaded files of an image to image or inpainting request.
struct Upload {
    image: Vec<u8>,
    mask: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_both_spellings() {
        assert_eq!(parse_size(Some("512*512")).unwrap(), Some((512, 512)));
        assert_eq!(parse_size(Some("640x512")).unwrap(), Some((640, 512)));
        assert_eq!(parse_size(Some("auto")).unwrap(), None);
        assert_eq!(parse_size(None).unwrap(), None);
        assert!(parse_size(Some("512")).is_err());
        assert!(parse_size(Some("big")).is_err());
    }

    #[test]
    fn family_defaults_come_first_then_top_level_then_kwargs() {
        let defaults = serde_json::json!({"guidance_scale": 0, "num_inference_steps": 1});
        let mut extra = Map::new();
        extra.insert("num_inference_steps".into(), Value::from(4));
        extra.insert("seed".into(), Value::from(1));
        let mut kwargs = Map::new();
        kwargs.insert("seed".into(), Value::from(2));
        let o = merged_options(Some(&defaults), &extra, kwargs);
        assert_eq!(o["guidance_scale"], 0);
        assert_eq!(o["num_inference_steps"], 4);
        assert_eq!(o["seed"], 2);
    }

    #[test]
    fn kwargs_may_be_a_string() {
        let m = kwargs_object(Some(&Value::String("{\"seed\": 3}".into()))).unwrap();
        assert_eq!(m["seed"], 3);
        assert!(kwargs_object(Some(&Value::String("[1]".into()))).is_err());
    }
}
