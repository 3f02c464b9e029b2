//! The model runtime: the table of launched models and their lifecycle. Each launched model
//! gets loader work on its own thread and one [`Worker`] thread per replica; async callers
//! await results and never run model compute themselves.

mod answer;
mod audio;
mod batcher;
mod chat;
mod chat_input;
mod chat_output;
mod describe;
mod embed;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod image;
mod launch;
mod llm_run;
mod memory;
pub mod metrics;
mod rerank;
mod structured;
mod worker;

pub use audio::{TranscriptionEvent, TranscriptionStream};
pub use batcher::EmbedBatcher;
pub use chat::{ChatOutput, ChunkStream, CompletionOutput};
pub use health::ModelHealth;
pub use image::parse_size;
pub(crate) use worker::panic_text;
pub use worker::Worker;

use crate::hub::{LaunchProgress, ProgressSnapshot};
use crate::llm::LlmEngine;
use crate::protocol::xinference::{DescriptionMap, InstanceInfo, InstanceStatus};
use crate::registry::{ModelFamily, ModelSpec, Registry};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Settings of a runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `$XINFERENCE_HOME`: custom registrations, cache, downloads.
    pub home: PathBuf,
    /// Requests that may wait in each replica's queue before callers get 429.
    pub queue_capacity: usize,
    /// Compute threads shared by every model (default: `CANDLE_NUM_THREADS`, else the
    /// machine's cores). See [`crate::compute`].
    pub compute_threads: Option<usize>,
    /// Browser origins (`http://localhost:3000`, or `*` for any) whose pages may call the API
    /// cross-origin. Empty (the default): no CORS headers, and a state-changing request that a
    /// browser sends from another origin is refused with 403. Same-origin pages and clients
    /// that send no `Origin` (SDKs, curl) are not affected.
    pub allowed_origins: Vec<String>,
    /// Auth config file (users, permissions, API keys; see [`crate::auth::config`]). `None`
    /// (the default): auth is off and every route is open.
    pub auth_config: Option<PathBuf>,
    /// Folders a launch's `model_path` (and a spec's local `model_uri`) must lie under while
    /// auth is on. Empty (the default): with auth on, launches cannot name local paths.
    /// Ignored with auth off.
    pub model_roots: Vec<PathBuf>,
    /// Requests one API key (or one logged-in user) may have in flight at once; past it the
    /// answer is a 429 with `Retry-After`. `None` (the default): no limit.
    pub max_concurrent_per_key: Option<usize>,
}

impl RuntimeConfig {
    /// Settings rooted at `home`, with default queue sizes.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            home: home.into(),
            queue_capacity: 64,
            compute_threads: None,
            allowed_origins: Vec::new(),
            auth_config: None,
            model_roots: Vec::new(),
            max_concurrent_per_key: None,
        }
    }

    /// Settings from the environment: `XINFERENCE_HOME`, default `~/.xinference`;
    /// `XINFERENCE_ALLOWED_ORIGINS`, a comma-separated list of origins.
    pub fn from_env() -> Self {
        let mut config = Self::new(default_home());
        config.allowed_origins = std::env::var("XINFERENCE_ALLOWED_ORIGINS")
            .map(|list| parse_origins(&list))
            .unwrap_or_default();
        config
    }
}

/// A comma-separated origin list, trimmed, empty entries and trailing slashes dropped.
pub fn parse_origins(list: &str) -> Vec<String> {
    list.split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect()
}

/// `$XINFERENCE_HOME`, or `~/.xinference`.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("XINFERENCE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    user_home.join(".xinference")
}

/// A loaded model's workers, one per replica, by capability.
pub(crate) enum Loaded {
    /// An embedding model.
    Embedding(Vec<EmbedBatcher>),
    /// A language model.
    Llm(Vec<Worker<LlmEngine>>),
    /// A rerank model (cross-encoder or LLM reranker).
    Rerank(Vec<rerank::RerankReplica>),
    /// A speech-to-text model.
    Audio(Vec<audio::AudioWorker>),
    /// An image model (Stable Diffusion).
    Image(Vec<image::ImageReplica>),
}

impl Loaded {
    fn shutdown(&self) {
        match self {
            Loaded::Embedding(replicas) => replicas.iter().for_each(EmbedBatcher::shutdown),
            Loaded::Llm(workers) => workers.iter().for_each(Worker::shutdown),
            Loaded::Rerank(replicas) => replicas.iter().for_each(|r| r.worker.shutdown()),
            Loaded::Audio(workers) => workers.iter().for_each(Worker::shutdown),
            Loaded::Image(replicas) => replicas.iter().for_each(|r| r.worker.shutdown()),
        }
    }

    /// What the first replica whose compute panicked said; `None` while all are sound.
    fn failure(&self) -> Option<String> {
        let first = |mut healths: Box<dyn Iterator<Item = &ModelHealth> + '_>| {
            healths.find_map(|h| h.failure().map(str::to_owned))
        };
        match self {
            Loaded::Embedding(replicas) => first(Box::new(replicas.iter().map(|r| r.health()))),
            Loaded::Llm(workers) => first(Box::new(workers.iter().map(|w| w.health()))),
            Loaded::Rerank(replicas) => first(Box::new(replicas.iter().map(|r| r.worker.health()))),
            Loaded::Audio(workers) => first(Box::new(workers.iter().map(|w| w.health()))),
            Loaded::Image(replicas) => first(Box::new(replicas.iter().map(|r| r.worker.health()))),
        }
    }
}

/// Mutable state of an instance.
pub(crate) struct InstanceState {
    pub status: InstanceStatus,
    pub error: Option<String>,
    pub loaded: Option<Arc<Loaded>>,
}

/// One launched model.
pub struct Instance {
    pub(crate) uid: String,
    pub(crate) family: ModelFamily,
    pub(crate) spec: ModelSpec,
    pub(crate) engine: String,
    pub(crate) replicas: usize,
    pub(crate) request_limit: Option<usize>,
    /// Sequence slots per replica (LLMs).
    pub(crate) parallel: usize,
    /// Bytes each LLM replica's prompt-prefix cache may hold (`prefix_cache_bytes`).
    pub(crate) prefix_cache_bytes: usize,
    /// The prompt-prefix caches of the loaded LLM replicas (for the description).
    pub(crate) prefix_caches: Mutex<Vec<Arc<crate::llm::PrefixCache>>>,
    /// The decode-step batchers of the loaded LLM replicas (for the description).
    pub(crate) batchers: Mutex<Vec<Arc<crate::llm::StepBatcher>>>,
    /// The loaded speech-to-text replicas' models (for the description: their shared passes).
    pub(crate) audio_models: Mutex<Vec<Arc<dyn crate::audio::SpeechToText>>>,
    /// Every LLM sequence slot's KV fill and its capacity (the context length), for metrics.
    pub(crate) kv_slots: Mutex<Vec<(crate::llm::KvUsage, usize)>>,
    /// Requests, errors, tokens and latencies, for metrics.
    pub(crate) counters: Arc<metrics::ModelCounters>,
    pub(crate) created_ts: u64,
    pub(crate) progress: LaunchProgress,
    pub(crate) state: Mutex<InstanceState>,
    pub(crate) status_tx: watch::Sender<InstanceStatus>,
    next_replica: AtomicUsize,
}

impl InstanceState {
    /// The status, ERROR once a loaded replica's compute has panicked.
    fn status(&self) -> InstanceStatus {
        match self.failure() {
            Some(_) => InstanceStatus::Error,
            None => self.status,
        }
    }

    /// Why a ready model failed: its compute panicked.
    fn failure(&self) -> Option<String> {
        match (&self.loaded, self.status) {
            (Some(loaded), InstanceStatus::Ready) => loaded.failure(),
            _ => None,
        }
    }

    /// The error reported with the status: why the launch failed, or the compute's panic.
    fn error(&self) -> Option<String> {
        self.failure()
            .map(|panic| format!("the model's computation panicked: {panic}"))
            .or_else(|| self.error.clone())
    }
}

impl Instance {
    /// The status: as loading set it, or ERROR once a replica's compute has panicked.
    pub(crate) fn status(&self) -> InstanceStatus {
        self.state.lock().expect("instance lock").status()
    }

    /// The error reported with an ERROR status.
    pub(crate) fn error(&self) -> Option<String> {
        self.state.lock().expect("instance lock").error()
    }

    fn set_status(&self, status: InstanceStatus, error: Option<String>) {
        let mut state = self.state.lock().expect("instance lock");
        state.status = status;
        if error.is_some() {
            state.error = error;
        }
        drop(state);
        self.status_tx.send_replace(status);
    }

    /// The loaded workers, or why there are none (503 while loading).
    pub(crate) fn loaded(&self) -> Result<Arc<Loaded>> {
        let state = self.state.lock().expect("instance lock");
        if let Some(panic) = state.failure() {
            return Err(Error::not_ready(format!(
                "Model {uid} has failed: its computation panicked ({panic}) and it serves no \
                 more requests. Terminate it (DELETE /v1/models/{uid}) and launch it again.",
                uid = self.uid
            )));
        }
        match (&state.loaded, state.status) {
            (Some(l), InstanceStatus::Ready) => Ok(l.clone()),
            (_, InstanceStatus::Error) => Err(Error::bad_request(format!(
                "Model {} failed to launch: {}",
                self.uid,
                state.error.as_deref().unwrap_or("unknown error")
            ))),
            _ => Err(Error::not_ready(format!(
                "Model {} is not ready yet (it is still loading); retry later",
                self.uid
            ))),
        }
    }

    /// Round-robin choice of a replica.
    pub(crate) fn pick_replica(&self, count: usize) -> usize {
        self.next_replica.fetch_add(1, Ordering::Relaxed) % count.max(1)
    }

    /// The replica uid Xinference reports (`<uid>-rep<N>`).
    pub(crate) fn replica_uid(&self, index: usize) -> String {
        format!("{}-rep{index}", self.uid)
    }
}

/// The launched-models table. Share it behind an `Arc` (the in-process [`crate::Client`] does).
pub struct Runtime {
    config: RuntimeConfig,
    registry: Arc<Registry>,
    instances: Mutex<BTreeMap<String, Arc<Instance>>>,
    started: Instant,
    /// Denoising progress of image requests that named a `request_id`.
    image_progress: Arc<image::ProgressTable>,
    /// Stored Responses API answers, opened on first use.
    pub(crate) response_store: crate::responses::StoreCell,
    /// Access control, when [`RuntimeConfig::auth_config`] turned it on.
    auth: Option<Arc<crate::auth::Auth>>,
}

impl Runtime {
    /// A runtime over `config.home`, loading the custom registrations persisted there.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.home).map_err(|e| {
            Error::internal(format!(
                "cannot create XINFERENCE_HOME {}: {e}",
                config.home.display()
            ))
        })?;
        crate::compute::configure_threads(config.compute_threads);
        let registry = Arc::new(Registry::open(&config.home)?);
        let auth = match &config.auth_config {
            Some(path) => Some(Arc::new(crate::auth::Auth::open_file(&config.home, path)?)),
            None => None,
        };
        Ok(Runtime {
            auth,
            config,
            registry,
            instances: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            image_progress: Default::default(),
            response_store: Default::default(),
        })
    }

    /// The model registry (built-in and custom families).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Access control; `None` when auth is off.
    pub fn auth(&self) -> Option<&Arc<crate::auth::Auth>> {
        self.auth.as_ref()
    }

    /// Seconds since the runtime started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub(crate) fn instance(&self, uid: &str) -> Result<Arc<Instance>> {
        self.instances
            .lock()
            .expect("instances lock")
            .get(uid)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!("Model not found in the model list, uid: {uid}"))
            })
    }

    /// Descriptions of the launched models that are ready to serve, by uid: a model still
    /// downloading or loading (or failed) is not listed, so that readiness probes and routers
    /// (llm-d's) send it nothing yet; `GET /v1/models/instances` shows every status.
    pub fn list_models(&self) -> BTreeMap<String, DescriptionMap> {
        self.instances
            .lock()
            .expect("instances lock")
            .iter()
            .filter(|(_, i)| i.status() == InstanceStatus::Ready)
            .map(|(uid, i)| (uid.clone(), describe::describe(i)))
            .collect()
    }

    /// The description of one launched model (404 when unknown).
    pub fn describe_model(&self, uid: &str) -> Result<DescriptionMap> {
        Ok(describe::describe(&*self.instance(uid)?))
    }

    /// Status rows of every instance, optionally filtered by name and uid.
    pub fn instance_info(
        &self,
        model_name: Option<&str>,
        model_uid: Option<&str>,
    ) -> Vec<InstanceInfo> {
        self.instances
            .lock()
            .expect("instances lock")
            .values()
            .filter(|i| model_name.is_none_or(|n| i.family.name == n))
            .filter(|i| model_uid.is_none_or(|u| i.uid == u))
            .map(|i| {
                let state = i.state.lock().expect("instance lock");
                InstanceInfo {
                    model_name: i.family.name.clone(),
                    model_uid: i.uid.clone(),
                    model_version: crate::hub::cache_name(&i.family, &i.spec),
                    model_ability: i.family.abilities.clone(),
                    replica: i.replicas,
                    status: state.status(),
                    instance_created_ts: i.created_ts,
                    n_worker: 1,
                    error: state.error(),
                }
            })
            .collect()
    }

    /// Launch progress of a model (404 when unknown).
    pub fn launch_progress(&self, uid: &str) -> Result<ProgressSnapshot> {
        Ok(self.instance(uid)?.progress.snapshot())
    }

    /// Stops a model and frees its memory: its workers finish what they are running and exit
    /// before this returns. An unknown uid is a 400, as in Xinference.
    pub async fn terminate_model(&self, uid: &str) -> Result<()> {
        let instance = self
            .instances
            .lock()
            .expect("instances lock")
            .remove(uid)
            .ok_or_else(|| {
                Error::bad_request(format!("Model not found in the model list, uid: {uid}"))
            })?;
        instance.set_status(InstanceStatus::Terminating, None);
        // The workers' threads hold the last references to the audio models.
        instance.audio_models.lock().expect("instance lock").clear();
        let loaded = instance.state.lock().expect("instance lock").loaded.take();
        if let Some(loaded) = loaded {
            tokio::task::spawn_blocking(move || loaded.shutdown())
                .await
                .map_err(|e| Error::internal(format!("terminate failed: {e}")))?;
        }
        instance.set_status(InstanceStatus::Terminated, None);
        Ok(())
    }

    /// Terminates every model (used at shutdown).
    pub async fn terminate_all(&self) {
        let uids: Vec<String> = self
            .instances
            .lock()
            .expect("instances lock")
            .keys()
            .cloned()
            .collect();
        for uid in uids {
            let _ = self.terminate_model(&uid).await;
        }
    }
}
