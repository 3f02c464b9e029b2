//! Launching: validate a [`LaunchRequest`] against the registry, then download and load on a
//! loader thread while the caller optionally waits for the model to be ready.

use super::{EmbedBatcher, Instance, InstanceState, Loaded, Runtime, Worker};
use crate::embedding::load_embedding_model;
use crate::hub::{resolve_model_files, Stage};
use crate::llm::LlmEngine;
use crate::protocol::xinference::{InstanceStatus, LaunchRequest};
use crate::registry::{resolve_engine, ModelType, Support};
use crate::{Error, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

impl Runtime {
    /// Launches a model and returns its uid. With `wait_ready`, returns once the model serves
    /// (or with the reason it failed); otherwise at once, while progress can be polled.
    pub async fn launch_model(
        self: &Arc<Self>,
        request: LaunchRequest,
        wait_ready: bool,
    ) -> Result<String> {
        let instance = self.prepare_launch(&request)?;
        let uid = instance.uid.clone();
        let mut status = instance.status_tx.subscribe();
        let runtime = self.clone();
        let model_path = request.model_path.clone().map(PathBuf::from);
        std::thread::Builder::new()
            .name(format!("launch-{uid}"))
            .spawn(move || runtime.load(instance, model_path))
            .map_err(|e| Error::internal(format!("cannot start the loader thread: {e}")))?;
        if !wait_ready {
            return Ok(uid);
        }
        loop {
            let current = *status.borrow_and_update();
            match current {
                InstanceStatus::Ready => return Ok(uid),
                InstanceStatus::Error => {
                    let reason = self
                        .instance(&uid)
                        .ok()
                        .and_then(|i| i.state.lock().expect("instance lock").error.clone())
                        .unwrap_or_else(|| "unknown error".to_owned());
                    return Err(Error::bad_request(format!(
                        "Failed to launch model {uid}: {reason}"
                    )));
                }
                InstanceStatus::Terminating | InstanceStatus::Terminated => {
                    return Err(Error::new(
                        crate::ErrorKind::Cancelled,
                        format!("Launch of model {uid} was cancelled"),
                    ))
                }
                _ => {}
            }
            if status.changed().await.is_err() {
                return Err(Error::internal(format!(
                    "launch of {uid} ended without a status"
                )));
            }
        }
    }

    /// Checks the request and registers a new instance in the CREATING state.
    fn prepare_launch(&self, request: &LaunchRequest) -> Result<Arc<Instance>> {
        if request.model_name.is_empty() {
            return Err(Error::bad_request(
                "Invalid input. Please specify the model name",
            ));
        }
        check_names(request)?;
        let model_type: ModelType = request.model_type.as_deref().unwrap_or("LLM").parse()?;
        let size = request
            .model_size_in_billions
            .as_ref()
            .map(size_text)
            .transpose()?;
        let not_found = || {
            Error::bad_request(format!(
                "Model not found, name: {}, format: {}, size: {}, quantization: {}",
                request.model_name,
                request.model_format.as_deref().unwrap_or("None"),
                size.as_deref().unwrap_or("None"),
                request.quantization.as_deref().unwrap_or("None"),
            ))
        };
        let family = self
            .registry
            .find(model_type, &request.model_name)
            .ok_or_else(not_found)?;
        if model_type == ModelType::Llm && request.model_engine.is_none() {
            return Err(Error::bad_request(
                "Invalid input. Please specify the `model_engine` field.",
            ));
        }
        let candidates = family.matching_specs(
            request.model_format.as_deref(),
            size.as_deref(),
            request.quantization.as_deref(),
        );
        // Prefer a spec the requested engine can run (e.g. ggufv2 for `llama.cpp`).
        let spec = candidates
            .iter()
            .find(|s| resolve_engine(&family, request.model_engine.as_deref(), s).is_ok())
            .or(candidates.first())
            .map(|s| (*s).clone())
            .ok_or_else(not_found)?;
        let engine = resolve_engine(&family, request.model_engine.as_deref(), &spec)?;
        if self.auth.is_some() {
            // With access control on, a launch loads local files only from the allowed roots.
            let roots = &self.config.model_roots;
            if let Some(path) = &request.model_path {
                crate::registry::confine_to_roots("model_path", path, roots)?;
            }
            if let Some(uri) = &spec.model_uri {
                let path = uri.strip_prefix("file://").unwrap_or(uri);
                crate::registry::confine_to_roots("model_uri", path, roots)?;
            }
        }
        if let Support::NotYet(why) = crate::registry::support(&family, &spec) {
            return Err(Error::bad_request(format!(
                "Cannot launch {}: {why}",
                family.name
            )));
        }
        let replicas = parse_replica(request.replica.as_ref())?;
        let request_limit = parse_request_limits(request.request_limits.as_ref())?;
        let parallel = parse_parallel(request.extra.get("n_parallel"))?;
        let prefix_cache_bytes = parse_prefix_cache_bytes(request.extra.get("prefix_cache_bytes"))?;
        check_n_gpu(request.n_gpu.as_ref())?;
        if let Some(hub) = &request.download_hub {
            if !matches!(hub.as_str(), "huggingface" | "auto") {
                return Err(Error::bad_request(format!(
                    "download_hub {hub} is not available in this build; use huggingface"
                )));
            }
        }
        let uid = request
            .model_uid
            .clone()
            .unwrap_or_else(|| family.name.clone());
        crate::registry::check_plain_name("model_uid", &uid)?;
        let (status_tx, _) = watch::channel(InstanceStatus::Creating);
        let instance = Arc::new(Instance {
            uid: uid.clone(),
            family,
            spec,
            engine,
            replicas,
            request_limit,
            parallel,
            prefix_cache_bytes,
            prefix_caches: Mutex::new(Vec::new()),
            batchers: Mutex::new(Vec::new()),
            audio_models: Mutex::new(Vec::new()),
            kv_slots: Mutex::new(Vec::new()),
            counters: Default::default(),
            created_ts: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            progress: Default::default(),
            state: Mutex::new(InstanceState {
                status: InstanceStatus::Creating,
                error: None,
                loaded: None,
            }),
            status_tx,
            next_replica: AtomicUsize::new(0),
        });
        self.insert_instance(&uid, &instance)?;
        Ok(instance)
    }

    /// Puts `instance` in the table under `uid`: refused while a model that has not failed
    /// holds the uid; a failed one is replaced, and its workers (a model whose compute
    /// panicked still holds them) are freed off the caller's thread.
    fn insert_instance(&self, uid: &str, instance: &Arc<Instance>) -> Result<()> {
        let mut instances = self.instances.lock().expect("instances lock");
        if let Some(existing) = instances.get(uid) {
            if existing.status() != InstanceStatus::Error {
                return Err(Error::bad_request(format!(
                    "Model is already in the model list, uid: {uid}"
                )));
            }
        }
        let replaced = instances.insert(uid.to_owned(), instance.clone());
        drop(instances);
        let old_loaded =
            replaced.and_then(|old| old.state.lock().expect("instance lock").loaded.take());
        if let Some(loaded) = old_loaded {
            std::thread::spawn(move || loaded.shutdown());
        }
        Ok(())
    }

    /// Loader thread body: resolve files, load one model per replica, start the workers.
    fn load(&self, instance: Arc<Instance>, model_path: Option<PathBuf>) {
        instance.set_status(InstanceStatus::Loading, None);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.load_inner(&instance, model_path)
        }))
        .unwrap_or_else(|p| {
            Err(Error::internal(format!(
                "loader panicked: {}",
                super::panic_text(&p)
            )))
        });
        match result {
            Ok(loaded) => {
                let mut state = instance.state.lock().expect("instance lock");
                if state.status == InstanceStatus::Loading {
                    state.loaded = Some(Arc::new(loaded));
                    drop(state);
                    instance.progress.set_stage(Stage::Ready);
                    instance.set_status(InstanceStatus::Ready, None);
                } else {
                    // Terminated while loading: free what was loaded.
                    drop(state);
                    loaded.shutdown();
                }
            }
            Err(e) => {
                tracing::error!("launch of {} failed: {e}", instance.uid);
                instance.progress.set_stage(Stage::Error);
                instance.set_status(InstanceStatus::Error, Some(e.to_string()));
            }
        }
    }

    fn load_inner(&self, instance: &Instance, model_path: Option<PathBuf>) -> Result<Loaded> {
        let files = resolve_model_files(
            &self.config.home,
            &instance.family,
            &instance.spec,
            model_path.as_deref(),
            &instance.progress,
        )?;
        super::memory::check_fits(
            super::memory::weight_bytes(&files),
            instance.replicas,
            super::memory::available_bytes(),
        )?;
        instance.progress.set_stage(Stage::Loading);
        match instance.family.model_type {
            ModelType::Embedding => {
                let max_tokens = instance.family.max_tokens.map(|t| t as usize);
                let workers = (0..instance.replicas)
                    .map(|r| {
                        let model = load_embedding_model(&files, max_tokens)?;
                        EmbedBatcher::spawn(
                            &instance.replica_uid(r),
                            model,
                            self.config.queue_capacity,
                            instance.request_limit,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Loaded::Embedding(workers))
            }
            ModelType::Llm => self.load_llm(instance, &files),
            ModelType::Rerank => {
                let workers = (0..instance.replicas)
                    .map(|r| {
                        let model = crate::rerank::load_rerank_model(&files, &instance.family)?;
                        Worker::spawn(
                            &instance.replica_uid(r),
                            model,
                            self.config.queue_capacity,
                            instance.request_limit,
                        )
                        .map(super::rerank::RerankReplica::new)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Loaded::Rerank(workers))
            }
            ModelType::Audio => {
                let workers = (0..instance.replicas)
                    .map(|r| {
                        let model: Arc<dyn crate::audio::SpeechToText> =
                            Arc::from(crate::audio::load_audio_model(&files)?);
                        instance
                            .audio_models
                            .lock()
                            .expect("instance lock")
                            .push(model.clone());
                        Worker::spawn_pool(
                            &instance.replica_uid(r),
                            super::audio::AUDIO_SLOTS,
                            || model.clone(),
                            self.config.queue_capacity,
                            instance.request_limit,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Loaded::Audio(workers))
            }
            ModelType::Image => {
                let replicas = (0..instance.replicas)
                    .map(|r| {
                        let model = crate::image::load_image_model(&files)?;
                        let limits = model.limits();
                        Worker::spawn(
                            &instance.replica_uid(r),
                            model,
                            self.config.queue_capacity,
                            instance.request_limit,
                        )
                        .map(|w| super::image::ImageReplica::new(w, limits))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Loaded::Image(replicas))
            }
            other => Err(Error::bad_request(format!(
                "{other} models cannot be run by this build yet"
            ))),
        }
    }

    /// An LLM's replicas, each with `parallel` sequence slots (forks sharing the weights), one
    /// worker per slot.
    fn load_llm(&self, instance: &Instance, files: &std::path::Path) -> Result<Loaded> {
        let family = &instance.family;
        let template = family.json.get("chat_template").and_then(Value::as_str);
        let list = |key: &str| family.json.get(key).cloned().unwrap_or(Value::Null);
        let stop: Vec<String> = serde_json::from_value(list("stop")).unwrap_or_default();
        let stop_ids: Vec<u32> = serde_json::from_value(list("stop_token_ids")).unwrap_or_default();
        // What the path holds decides (a folder with config.json is safetensors, a
        // .gguf file GGUF); the spec's format settles a folder that holds both.
        let safetensors = crate::llm::is_safetensors_model(files, &instance.spec.model_format);
        let mut workers = Vec::new();
        for r in 0..instance.replicas {
            let mut engine = if safetensors {
                LlmEngine::load_safetensors(files, template, &stop, &stop_ids)?
            } else {
                LlmEngine::load_gguf(files, template, &stop, &stop_ids)?
            };
            engine.set_prefix_cache_budget(instance.prefix_cache_bytes);
            if let Some(cache) = engine.prefix_cache() {
                instance
                    .prefix_caches
                    .lock()
                    .expect("instance lock")
                    .push(cache);
            }
            if let Some(batcher) = engine.batcher() {
                instance
                    .batchers
                    .lock()
                    .expect("instance lock")
                    .push(batcher);
            }
            // Sequence slots: forks share the weights, each with its own KV cache, so
            // concurrent requests are served side by side instead of queueing behind a
            // long generation; their decode steps meet in one batched pass where the
            // family supports it (llm/step_batcher.rs), else take turns.
            let forks: Vec<LlmEngine> = (1..instance.parallel)
                .map_while(|_| engine.fork())
                .collect();
            let replica = instance.replica_uid(r);
            for (slot, engine) in std::iter::once(engine).chain(forks).enumerate() {
                instance
                    .kv_slots
                    .lock()
                    .expect("instance lock")
                    .push((engine.kv_usage(), engine.context_length()));
                workers.push(Worker::spawn(
                    &format!("{replica}-slot{slot}"),
                    engine,
                    self.config.queue_capacity,
                    instance.request_limit,
                )?);
            }
        }
        Ok(Loaded::Llm(workers))
    }
}

fn size_text(v: &Value) -> Result<String> {
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(Error::bad_request(format!(
            "model_size_in_billions must be a number or string, not {other}"
        ))),
    }
}

/// The most replicas one launch may ask for; each also has to fit in memory (`memory.rs`).
const MAX_REPLICAS: u64 = 64;

fn parse_replica(v: Option<&Value>) -> Result<usize> {
    match v {
        None => Ok(1),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=MAX_REPLICAS).contains(&n)) => {
            Ok(n.as_u64().unwrap_or(1) as usize)
        }
        Some(other) => Err(Error::bad_request(format!(
            "replica must be an integer from 1 to {MAX_REPLICAS}, not {other}"
        ))),
    }
}

/// Sequences an LLM serves at once per replica (`n_parallel`, llama.cpp's `--parallel`).
const DEFAULT_PARALLEL: usize = 4;

fn parse_parallel(v: Option<&Value>) -> Result<usize> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_PARALLEL),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=64).contains(&n)) => {
            Ok(n.as_u64().unwrap_or(1) as usize)
        }
        Some(other) => Err(Error::bad_request(format!(
            "n_parallel must be an integer from 1 to 64, not {other}"
        ))),
    }
}

/// The byte budget of each replica's prompt-prefix cache (`prefix_cache_bytes`; 0: off).
fn parse_prefix_cache_bytes(v: Option<&Value>) -> Result<usize> {
    match v {
        None | Some(Value::Null) => Ok(crate::llm::prefix_cache::DEFAULT_PREFIX_CACHE_BYTES),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().unwrap_or(0) as usize),
        Some(other) => Err(Error::bad_request(format!(
            "prefix_cache_bytes must be a non-negative integer, not {other}"
        ))),
    }
}

fn parse_request_limits(v: Option<&Value>) -> Result<Option<usize>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().map(|n| n as usize)),
        Some(other) => Err(Error::bad_request(format!(
            "request_limits must be a non-negative integer or null, not {other}"
        ))),
    }
}

fn check_n_gpu(v: Option<&Value>) -> Result<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "auto" || s == "none" => Ok(()),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(()),
        Some(other) => Err(Error::bad_request(format!(
            "n_gpu {other} cannot be served: this build runs models on the CPU (use \"auto\" or null)"
        ))),
    }
}

/// The request's strings that name cache folders and files are plain names
/// (`registry::paths`), checked before anything else: a 400 naming the field. Only a
/// registered spec's own (validated) strings ever become paths.
fn check_names(request: &LaunchRequest) -> Result<()> {
    let plain = crate::registry::check_plain_name;
    plain("model_name", &request.model_name)?;
    for (field, value) in [
        ("model_uid", &request.model_uid),
        ("model_format", &request.model_format),
        ("quantization", &request.quantization),
    ] {
        if let Some(value) = value {
            plain(field, value)?;
        }
    }
    Ok(())
}
