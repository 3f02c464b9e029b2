//! `POST /v1/images/generations` (text to image, Xinference's and OpenAI's shapes),
//! `POST /v1/images/variations` (image to image, multipart), `POST /v1/images/inpainting`
//! (the same form with `mask_image`), and
//! `GET /v1/images/files/{name}`, which serves the files that `response_format: "url"` writes
//! under `$XINFERENCE_HOME/image/` (nothing outside that folder).

use super::AppState;
use crate::error::ApiJson;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{Map, Value};
use xinference_core::protocol::image::{
    ImageGenerationRequest, ImageResponse, ImageToImageRequest, InpaintingRequest,
};
use xinference_core::{Error, Runtime};

/// Turns the local paths of `url` images into URLs of this server.
fn served_urls(rt: &Runtime, headers: &HeaderMap, mut response: ImageResponse) -> ImageResponse {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let dir = rt.image_dir();
    for image in &mut response.data {
        if let Some(url) = &image.url {
            let path = std::path::Path::new(url);
            if path.parent() == Some(dir.as_path()) {
                if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    image.url = Some(format!("http://{host}/v1/images/files/{name}"));
                }
            }
        }
    }
    response
}

/// Text to image.
pub async fn generations(
    State(rt): State<AppState>,
    headers: HeaderMap,
    ApiJson(request, _): ApiJson<ImageGenerationRequest>,
) -> ApiResult<Json<ImageResponse>> {
    let response = rt.text_to_image(request).await?;
    Ok(Json(served_urls(&rt, &headers, response)))
}

fn field_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::from(Error::bad_request(format!("invalid multipart body: {e}")))
}

/// Image to image: multipart `model`, `image` (or `image[]`), `prompt`, `negative_prompt`,
/// `n`, `response_format`, `size`, `strength`, `kwargs` (a JSON object string).
pub async fn variations(
    State(rt): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> ApiResult<Json<ImageResponse>> {
    let (request, _) = image_form(multipart).await?;
    let response = rt.image_to_image(request).await?;
    Ok(Json(served_urls(&rt, &headers, response)))
}

/// Inpainting: the fields of [`variations`] and `mask_image` (Xinference's multipart form).
pub async fn inpainting(
    State(rt): State<AppState>,
    headers: HeaderMap,
    multipart: Multipart,
) -> ApiResult<Json<ImageResponse>> {
    let (r, mask_image) = image_form(multipart).await?;
    let request = InpaintingRequest {
        model: r.model,
        image: r.image,
        mask_image: mask_image.unwrap_or_default(),
        prompt: r.prompt,
        n: r.n,
        response_format: r.response_format,
        size: r.size,
        kwargs: r.kwargs,
    };
    let response = rt.inpainting(request).await?;
    Ok(Json(served_urls(&rt, &headers, response)))
}

/// The multipart form of image to image and inpainting (and its `mask_image`, when sent).
async fn image_form(mut multipart: Multipart) -> ApiResult<(ImageToImageRequest, Option<Vec<u8>>)> {
    let mut request = ImageToImageRequest::default();
    let mut mask = None;
    let mut kwargs_text = None;
    let mut top = Map::new();
    while let Some(field) = multipart.next_field().await.map_err(field_error)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "image" | "image[]" | "images[]" => {
                let bytes = field.bytes().await.map_err(field_error)?;
                if request.image.is_empty() {
                    request.image = bytes.to_vec();
                }
            }
            "mask_image" | "mask" => {
                let bytes = field.bytes().await.map_err(field_error)?;
                mask.get_or_insert(bytes.to_vec());
            }
            _ => {
                let text = field.text().await.map_err(field_error)?;
                match name.as_str() {
                    "model" => request.model = text,
                    "prompt" => request.prompt = text,
                    "n" => {
                        request.n = Some(text.trim().parse().map_err(|_| {
                            ApiError::from(Error::bad_request(format!(
                                "n must be an integer, not {text:?}"
                            )))
                        })?)
                    }
                    "response_format" => request.response_format = Some(text),
                    "size" => request.size = Some(text).filter(|s| !s.is_empty()),
                    "kwargs" => kwargs_text = Some(text),
                    "negative_prompt" | "sampler_name" | "output_format" => {
                        top.insert(name, Value::String(text));
                    }
                    "strength" | "guidance_scale" | "num_inference_steps" | "seed" => {
                        top.insert(name, Value::String(text));
                    }
                    _ => {}
                }
            }
        }
    }
    if request.model.is_empty() {
        return Err(ApiError::from(Error::bad_request("model is required")));
    }
    let mut kwargs = match kwargs_text {
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            _ if text.trim().is_empty() => Map::new(),
            _ => {
                return Err(ApiError::from(Error::bad_request(
                    "kwargs must be a JSON object encoded as a string",
                )))
            }
        },
        None => Map::new(),
    };
    for (k, v) in top {
        kwargs.entry(k).or_insert(v);
    }
    request.kwargs = kwargs;
    Ok((request, mask))
}

/// A generated image file.
pub async fn file(
    State(rt): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (bytes, mime) = rt.image_file(&name).await?;
    Ok(([(header::CONTENT_TYPE, mime)], bytes))
}

/// Xinference's `GET /v1/requests/{request_id}/progress` for image requests that named a
/// `request_id`: `{"progress": 0..1}`, updated after each denoising step.
pub async fn progress(
    State(rt): State<AppState>,
    Path(request_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        serde_json::json!({"progress": rt.request_progress(&request_id)?}),
    ))
}
