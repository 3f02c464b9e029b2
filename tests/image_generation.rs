//! Image generation end to end over real HTTP: tiny random Stable Diffusion pipelines in the real
//! diffusers layout (tests/fixtures/tiny-diffusion, made by
//! scripts/fixtures/make_tiny_diffusion.py) are launched from their folders like real models,
//! and the images we serve must match what diffusers generated from the same folder, prompt and
//! seed, for every scheduler, text to image and image to image.
//!
//! Tolerance: our PNG pixels (0..=255) against diffusers' float output rounded the same way
//! (`(x * 255).round()`): at most 1 level apart anywhere, and under 0.01 levels on average (we
//! measure at most 0.0033). Both run in float32; the differences are summation order (and
//! 1-ulp differences in the Box-Muller transcendental functions), which flip the rounding of a
//! few pixels sitting on a half level.

mod common;

use base64::Engine;
use common::TestServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-diffusion")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("reference.json")).expect("reference");
    serde_json::from_str(&text).expect("reference JSON")
}

/// Launches a tiny pipeline through `POST /v1/models` as the registry family `name`.
async fn launch(http: &reqwest::Client, server: &TestServer, name: &str, uid: &str, dir: &str) {
    let r = http
        .post(format!("{}/v1/models", server.url))
        .json(&json!({
            "model_name": name,
            "model_type": "image",
            "model_uid": uid,
            "model_path": fixture_dir().join(dir).display().to_string(),
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "launch {name}: {body}");
    assert_eq!(body["model_uid"], uid);
}

fn decode_png(bytes: &[u8]) -> (Vec<u8>, u32, u32) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("a PNG")
        .to_rgb8();
    let (w, h) = img.dimensions();
    (img.into_raw(), w, h)
}

fn b64(data: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(data["b64_json"].as_str().expect("b64_json"))
        .expect("base64")
}

/// Compares one served image with diffusers' float image; returns (max, mean) level difference.
fn compare(ours: &[u8], reference: &[f32]) -> (u32, f64) {
    assert_eq!(ours.len(), reference.len());
    let mut max = 0;
    let mut sum = 0u64;
    for (a, r) in ours.iter().zip(reference) {
        let r = (r.clamp(0.0, 1.0) * 255.0).round() as i32;
        let d = (i32::from(*a) - r).unsigned_abs();
        max = max.max(d);
        sum += u64::from(d);
    }
    (max, sum as f64 / ours.len() as f64)
}

fn read_f32(name: &str) -> Vec<f32> {
    std::fs::read(fixture_dir().join(name))
        .expect("reference image")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn kwargs(case: &Value) -> Value {
    let mut k = json!({
        "seed": case["seed"],
        "num_inference_steps": case["steps"],
        "guidance_scale": case["guidance"],
    });
    if case["sampler"] != "default" {
        k["sampler_name"] = case["sampler"].clone();
    }
    if !case["negative"].is_null() {
        k["negative_prompt"] = case["negative"].clone();
    }
    k
}

#[tokio::test]
async fn images_match_diffusers_for_each_pipeline_shape_and_scheduler() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    // SD 1.5's shape under its own registry name; SD 2.1's (v-prediction, sharded UNet, slow
    // tokenizer files) under sd-turbo, the SD 2.1-architecture family Xinference lists.
    launch(&http, &server, "stable-diffusion-v1.5", "sd15", "sd15").await;
    launch(&http, &server, "sd-turbo", "sd21", "sd21").await;
    let reference = reference();
    let init_png = std::fs::read(fixture_dir().join("init.png")).unwrap();
    let mut checked = 0;
    for case in reference["cases"].as_array().unwrap() {
        let Some(file) = case["file"].as_str() else {
            continue;
        };
        let model = case["model"].as_str().unwrap();
        let n = case["n"].as_u64().unwrap() as usize;
        let body: Value = if case["init_image"].is_null() {
            let r = http
                .post(format!("{}/v1/images/generations", server.url))
                .json(&json!({
                    "model": model,
                    "prompt": case["prompt"],
                    "n": n,
                    "size": if checked % 2 == 0 { "64*64" } else { "64x64" },
                    "response_format": "b64_json",
                    // Xinference's client sends kwargs as a JSON string. sd-turbo's registry
                    // defaults (1 step, guidance 0) stand in for the 1-step case's own values.
                    "kwargs": if model == "sd21" && case["steps"] == 1 {
                        json!({"seed": case["seed"]})
                    } else {
                        kwargs(case)
                    }
                    .to_string(),
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{file}");
            r.json().await.unwrap()
        } else {
            if model == "sd21" {
                // sd-turbo is text to image only in Xinference's registry; its image-to-image
                // reference is checked through the SD 1.5 family name below.
                launch_once(&http, &server, "sd21-img").await;
            }
            let uid = if model == "sd21" { "sd21-img" } else { "sd15" };
            let mut k = kwargs(case);
            k["strength"] = case["strength"].clone();
            let form = reqwest::multipart::Form::new()
                .text("model", uid.to_owned())
                .text("prompt", case["prompt"].as_str().unwrap().to_owned())
                .text("n", n.to_string())
                .text("response_format", "b64_json")
                .text("kwargs", k.to_string())
                .part(
                    "image",
                    reqwest::multipart::Part::bytes(init_png.clone()).file_name("init.png"),
                );
            let r = http
                .post(format!("{}/v1/images/variations", server.url))
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{file}");
            r.json().await.unwrap()
        };
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), n, "{file}");
        assert_eq!(body["seed"], case["seed"]);
        let expected = read_f32(file);
        let per_image = expected.len() / n;
        for (i, d) in data.iter().enumerate() {
            let (pixels, w, h) = decode_png(&b64(d));
            assert_eq!((w, h), (64, 64));
            let (max, mean) = compare(&pixels, &expected[i * per_image..(i + 1) * per_image]);
            eprintln!(
                "{file}[{i}] ({}): max {max}, mean {mean:.4}",
                case["sampler"]
            );
            assert!(
                max <= 1 && mean < 0.01,
                "{file} image {i} ({} sampler) differs from diffusers: max {max} levels, mean {mean:.4}",
                case["sampler"]
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 18, "every reference case was checked");
    server.stop().await;
}

async fn launch_once(http: &reqwest::Client, server: &TestServer, uid: &str) {
    let r = http
        .get(format!("{}/v1/models/{uid}", server.url))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        launch(http, server, "stable-diffusion-v1.5", uid, "sd21").await;
    }
}

#[tokio::test]
async fn same_seed_same_bytes_url_files_are_served_and_bad_input_is_4xx() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    launch(&http, &server, "stable-diffusion-v1.5", "sd", "sd15").await;
    let generate = |body: Value| {
        let http = http.clone();
        let url = format!("{}/v1/images/generations", server.url);
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let ask = json!({"model": "sd", "prompt": "an apple", "size": "64x64",
        "response_format": "b64_json", "seed": 5, "num_inference_steps": 3});
    let (s1, first) = generate(ask.clone()).await;
    let (s2, second) = generate(ask.clone()).await;
    assert_eq!((s1, s2), (200, 200), "{first} {second}");
    assert_eq!(
        b64(&first["data"][0]),
        b64(&second["data"][0]),
        "same seed, same bytes"
    );
    assert_eq!(first["output_format"], "png");

    // Progress per denoising step under Xinference's request_id.
    let mut tracked = ask.clone();
    tracked["request_id"] = json!("req-1");
    let (status, body) = generate(tracked).await;
    assert_eq!(status, 200, "{body}");
    let progress: Value = http
        .get(format!("{}/v1/requests/req-1/progress", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(progress["progress"], 1.0, "{progress}");
    let unknown = http
        .get(format!("{}/v1/requests/never-sent/progress", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // url: written under $XINFERENCE_HOME/image and served over HTTP by this server.
    let mut as_url = ask.clone();
    as_url["response_format"] = json!("url");
    let (status, body) = generate(as_url).await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"][0]["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/v1/images/files/", server.url)),
        "{url}"
    );
    let name = url.rsplit('/').next().unwrap();
    assert!(home.path().join("image").join(name).exists());
    let fetched = http.get(&url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["content-type"], "image/png");
    assert_eq!(
        fetched.bytes().await.unwrap().to_vec(),
        b64(&first["data"][0])
    );
    // Nothing outside that folder is served.
    std::fs::write(home.path().join("secret.png"), b"secret").unwrap();
    for bad in [
        "..%2Fsecret.png",
        "%2E%2E%2Fsecret.png",
        "missing.png",
        ".hidden.png",
    ] {
        let r = http
            .get(format!("{}/v1/images/files/{bad}", server.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 400 || status == 404, "{bad}: {status}");
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].is_string(), "{body}");
    }

    // JPEG and WebP on request (OpenAI's output_format).
    for (format, mime) in [
        ("jpeg", image::ImageFormat::Jpeg),
        ("webp", image::ImageFormat::WebP),
    ] {
        let mut req = ask.clone();
        req["output_format"] = json!(format);
        let (status, body) = generate(req).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["output_format"], format);
        let img = image::load_from_memory_with_format(&b64(&body["data"][0]), mime).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64));
    }

    // Bad inputs: 4xx with a JSON detail, and the server keeps serving.
    let bad = [
        json!({"model": "sd", "prompt": "x", "size": "60x64"}),
        json!({"model": "sd", "prompt": "x", "size": "4096*4096"}),
        json!({"model": "sd", "prompt": "x", "size": "large"}),
        json!({"model": "sd", "prompt": "x", "size": "64x64", "kwargs": "{\"sampler_name\": \"Warp drive\"}"}),
        json!({"model": "sd", "prompt": "x", "size": "64x64", "n": 0}),
        json!({"model": "sd", "prompt": "x", "size": "64x64", "response_format": "gif"}),
        json!({"model": "sd", "prompt": "x", "size": "64x64", "output_format": "bmp"}),
        json!({"model": "sd", "prompt": "x", "size": "64x64", "num_inference_steps": 0}),
        json!({"model": "sd", "prompt": "x", "size": "64x64", "kwargs": "not json"}),
        json!({"model": "nope", "prompt": "x"}),
    ];
    for body in bad {
        let (status, answer) = generate(body.clone()).await;
        assert!((400..500).contains(&status), "{body} -> {status} {answer}");
        assert!(answer["detail"].is_string(), "{answer}");
    }
    let form = reqwest::multipart::Form::new()
        .text("model", "sd")
        .text("prompt", "x")
        .part(
            "image",
            reqwest::multipart::Part::bytes(b"not an image".to_vec()).file_name("a.png"),
        );
    let r = http
        .post(format!("{}/v1/images/variations", server.url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["detail"].is_string());
    let (status, again) = generate(ask).await;
    assert_eq!(status, 200);
    assert_eq!(b64(&again["data"][0]), b64(&first["data"][0]));
    server.stop().await;
}

#[tokio::test]
async fn official_openai_and_xinference_clients_generate_images() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    launch(&http, &server, "stable-diffusion-v1.5", "sd", "sd15").await;
    let out = common::run_python("image_clients.py", &[&server.url, "sd"]).await;
    assert!(out.contains("image clients: ok"), "{out}");
    server.stop().await;
}

/// One reference case through HTTP: text to image (JSON), image to image or inpainting
/// (multipart, when the case names an init image / a mask); returns the served PNGs.
async fn serve_case(
    http: &reqwest::Client,
    server: &TestServer,
    folder: &Path,
    case: &Value,
    uid: &str,
    kwargs: Value,
) -> Vec<Vec<u8>> {
    let n = case["n"].as_u64().unwrap();
    let body: Value = if case["init_image"].is_null() {
        let r = http
            .post(format!("{}/v1/images/generations", server.url))
            .json(&json!({
                "model": uid,
                "prompt": case["prompt"],
                "n": n,
                "size": "64x64",
                "response_format": "b64_json",
                "kwargs": kwargs.to_string(),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{case}");
        r.json().await.unwrap()
    } else {
        let init = std::fs::read(fixture_dir().join(case["init_image"].as_str().unwrap())).unwrap();
        let mut form = reqwest::multipart::Form::new()
            .text("model", uid.to_owned())
            .text("prompt", case["prompt"].as_str().unwrap().to_owned())
            .text("n", n.to_string())
            .text("response_format", "b64_json")
            .text("kwargs", kwargs.to_string())
            .part(
                "image",
                reqwest::multipart::Part::bytes(init).file_name("init.png"),
            );
        let route = match case["mask_image"].as_str() {
            None => "variations",
            Some(mask) => {
                let mask = std::fs::read(folder.join(mask)).unwrap();
                form = form.part(
                    "mask_image",
                    reqwest::multipart::Part::bytes(mask).file_name("mask.png"),
                );
                "inpainting"
            }
        };
        let r = http
            .post(format!("{}/v1/images/{route}", server.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{case}");
        r.json().await.unwrap()
    };
    assert_eq!(body["seed"], case["seed"]);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len() as u64, n, "{case}");
    data.iter().map(b64).collect()
}

/// Every served image of a case within the stated tolerance of diffusers' (see the top).
fn assert_matches_reference(folder: &Path, case: &Value, pngs: &[Vec<u8>]) {
    let file = case["file"].as_str().unwrap();
    let expected: Vec<f32> = std::fs::read(folder.join(file))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let per_image = expected.len() / pngs.len();
    for (i, png) in pngs.iter().enumerate() {
        let (pixels, w, h) = decode_png(png);
        assert_eq!((w, h), (64, 64));
        let (max, mean) = compare(&pixels, &expected[i * per_image..(i + 1) * per_image]);
        eprintln!(
            "{file}[{i}] ({}): max {max}, mean {mean:.4}",
            case["sampler"]
        );
        assert!(
            max <= 1 && mean < 0.01,
            "{file} image {i} ({} sampler) differs from diffusers: max {max} levels, mean {mean:.4}",
            case["sampler"]
        );
    }
}

fn read_reference(folder: &Path) -> Value {
    read_reference_file(&folder.join("reference.json"))
}

fn read_reference_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The SDXL refiner's layout (only text_encoder_2, aesthetic-score time ids,
/// `requires_aesthetics_score`) from tests/fixtures/tiny-sdxl/refiner: image to image through
/// `POST /v1/images/variations` matches StableDiffusionXLImg2ImgPipeline; text to image is a 400
/// that says why.
#[tokio::test]
async fn sdxl_refiner_image_to_image_matches_diffusers() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let folder = fixture_dir().join("../tiny-sdxl");
    launch(
        &http,
        &server,
        "stable-diffusion-xl-base-1.0",
        "refiner",
        "../tiny-sdxl/refiner",
    )
    .await;
    let reference = read_reference_file(&folder.join("reference-refiner.json"));
    let cases = reference["cases"].as_array().unwrap();
    for case in cases {
        let mut k = kwargs(case);
        k["strength"] = case["strength"].clone();
        let pngs = serve_case(&http, &server, &folder, case, "refiner", k).await;
        assert_matches_reference(&folder, case, &pngs);
    }
    assert_eq!(cases.len(), 3, "every refiner reference case was checked");
    let r = http
        .post(format!("{}/v1/images/generations", server.url))
        .json(&json!({"model": "refiner", "prompt": "x", "size": "64x64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("refiner"),
        "{body}"
    );
    server.stop().await;
}

/// SDXL (two text encoders, pooled text embeds and time ids through the UNet's text_time
/// conditioning, force_zeros_for_empty_prompt, the SDXL VAE scale) from
/// tests/fixtures/tiny-sdxl, launched as stable-diffusion-xl-base-1.0 and as sdxl-turbo (whose
/// registry defaults, 1 step and guidance 0, stand in for the turbo case's own values).
#[tokio::test]
async fn sdxl_images_match_diffusers() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let folder = fixture_dir().join("../tiny-sdxl");
    launch(
        &http,
        &server,
        "stable-diffusion-xl-base-1.0",
        "sdxl",
        "../tiny-sdxl/sdxl",
    )
    .await;
    launch(&http, &server, "sdxl-turbo", "turbo", "../tiny-sdxl/sdxl").await;
    let reference = read_reference(&folder);
    let cases = reference["cases"].as_array().unwrap();
    for case in cases {
        let turbo = case["steps"] == 1 && case["guidance"] == 0.0;
        let mut k = if turbo {
            json!({"seed": case["seed"]})
        } else {
            kwargs(case)
        };
        if !case["strength"].is_null() {
            k["strength"] = case["strength"].clone();
        }
        let uid = if turbo { "turbo" } else { "sdxl" };
        let pngs = serve_case(&http, &server, &folder, case, uid, k).await;
        assert_matches_reference(&folder, case, &pngs);
    }
    assert_eq!(cases.len(), 6, "every SDXL reference case was checked");
    server.stop().await;
}

/// Inpainting matches diffusers for fixed seeds and samplers through
/// `POST /v1/images/inpainting`: the masked-latent method (StableDiffusionInpaintPipeline over
/// the 4-channel SD 1.5-shape UNet, StableDiffusionXLInpaintPipeline over the SDXL one) and
/// 9-channel inpainting UNets (runwayml/stable-diffusion-inpainting's and SDXL inpainting 0.1's
/// layouts: latents, mask, masked-image latents), which serve nothing but inpainting; bad masks
/// are 4xx with a JSON body.
#[tokio::test]
async fn inpainting_matches_diffusers_and_bad_masks_are_4xx() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let folder = fixture_dir().join("../tiny-inpaint");
    launch(&http, &server, "stable-diffusion-v1.5", "sd15", "sd15").await;
    launch(
        &http,
        &server,
        "stable-diffusion-v1.5",
        "sd15-inpainting",
        "../tiny-inpaint/sd15-inpainting",
    )
    .await;
    launch(
        &http,
        &server,
        "stable-diffusion-xl-base-1.0",
        "sdxl",
        "../tiny-sdxl/sdxl",
    )
    .await;
    launch(
        &http,
        &server,
        "stable-diffusion-xl-base-1.0",
        "sdxl-inpainting",
        "../tiny-inpaint/sdxl-inpainting",
    )
    .await;
    let reference = read_reference(&folder);
    let cases = reference["cases"].as_array().unwrap();
    for (i, case) in cases.iter().enumerate() {
        let mut k = kwargs(case);
        // strength defaults to 1.0 for inpainting, as in diffusers: leave it out once.
        if i > 0 {
            k["strength"] = case["strength"].clone();
        }
        let uid = case["model"].as_str().unwrap();
        let pngs = serve_case(&http, &server, &folder, case, uid, k).await;
        assert_matches_reference(&folder, case, &pngs);
    }
    let models: Vec<&str> = cases.iter().map(|c| c["model"].as_str().unwrap()).collect();
    assert_eq!(
        models,
        [
            "sd15",
            "sd15",
            "sd15",
            "sd15-inpainting",
            "sd15-inpainting",
            "sd15-inpainting",
            "sdxl",
            "sdxl",
            "sdxl-inpainting",
            "sdxl-inpainting"
        ],
        "every inpainting reference case was checked"
    );
    // A 9-channel UNet needs a mask: text to image and image to image are 400s with a reason.
    let r = http
        .post(format!("{}/v1/images/generations", server.url))
        .json(&json!({"model": "sd15-inpainting", "prompt": "x", "size": "64x64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("inpainting"),
        "{body}"
    );

    // The Rust ImageModel::inpainting, in process and over HTTP, gives the same image as the
    // route did for the first case.
    let case = &cases[0];
    let served = serve_case(&http, &server, &folder, case, "sd15", kwargs(case)).await;
    let request = xinference::protocol::image::InpaintingRequest {
        image: std::fs::read(fixture_dir().join("init.png")).unwrap(),
        mask_image: std::fs::read(folder.join("mask.png")).unwrap(),
        prompt: case["prompt"].as_str().unwrap().to_owned(),
        response_format: Some("b64_json".into()),
        kwargs: kwargs(case).as_object().unwrap().clone(),
        ..Default::default()
    };
    for client in [
        xinference::Client::local(server.runtime.clone()),
        xinference::Client::remote(&server.url, None).unwrap(),
    ] {
        let model = client
            .get_model("sd15")
            .await
            .unwrap()
            .into_image()
            .unwrap();
        let out = model.inpainting(request.clone()).await.unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(out.data[0].b64_json.as_deref().unwrap())
            .unwrap();
        assert_eq!(png, served[0], "ImageModel::inpainting");
    }

    let init = std::fs::read(fixture_dir().join("init.png")).unwrap();
    let mut small = Vec::new();
    image::GrayImage::new(32, 32)
        .write_to(
            &mut std::io::Cursor::new(&mut small),
            image::ImageFormat::Png,
        )
        .unwrap();
    let bad_masks: [(&str, Option<Vec<u8>>); 3] = [
        ("size mismatch", Some(small)),
        ("not an image", Some(b"not an image".to_vec())),
        ("missing", None),
    ];
    for (what, mask) in bad_masks {
        let mut form = reqwest::multipart::Form::new()
            .text("model", "sd15")
            .text("prompt", "x")
            .part(
                "image",
                reqwest::multipart::Part::bytes(init.clone()).file_name("init.png"),
            );
        if let Some(mask) = mask {
            form = form.part(
                "mask_image",
                reqwest::multipart::Part::bytes(mask).file_name("mask.png"),
            );
        }
        let r = http
            .post(format!("{}/v1/images/inpainting", server.url))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].is_string(), "{what}: {body}");
    }
    server.stop().await;
}
