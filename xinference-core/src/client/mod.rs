//! The `Client`: one API for an in-process runtime and for a running server over HTTP.
//!
//! ```no_run
//! # async fn demo() -> xinference_core::Result<()> {
//! use xinference_core::{Client, LaunchRequest, ModelType};
//! let client = Client::local_from_env()?;
//! let uid = client
//!     .launch_model(LaunchRequest::new("all-MiniLM-L6-v2").model_type(ModelType::Embedding))
//!     .await?;
//! let model = client.get_model(&uid).await?.into_embedding()?;
//! let response = model.create_embedding("A man is eating food.").await?;
//! println!("{} dimensions", response.data.len());
//! # Ok(()) }
//! ```

mod audio;
mod handles;
mod launch;
mod remote;

pub use audio::AudioModel;
pub use handles::{EmbeddingModel, ImageModel, LlmModel, ModelHandle, RerankModel};
use remote::seg;
pub use remote::RemoteClient;

use crate::hub::{list_cached, CacheEntry, ProgressSnapshot};
use crate::protocol::xinference::{InstanceInfo, LaunchRequest, ModelDescription};
use crate::registry::{EngineOptions, ModelType, RegistrationSummary};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a client's calls go.
#[derive(Clone)]
pub(crate) enum Transport {
    /// The runtime in this process.
    Local(Arc<Runtime>),
    /// A server over HTTP.
    Remote(RemoteClient),
}

/// The Xinference client: launch, list, describe and use models, in process or remotely.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
}

impl Client {
    /// A client over a runtime in this process.
    pub fn local(runtime: Arc<Runtime>) -> Self {
        Client {
            transport: Transport::Local(runtime),
        }
    }

    /// A client over a new in-process runtime rooted at `$XINFERENCE_HOME` (default `~/.xinference`).
    pub fn local_from_env() -> Result<Self> {
        Ok(Self::local(Arc::new(Runtime::new(
            RuntimeConfig::from_env(),
        )?)))
    }

    /// A client of the server at `endpoint` (e.g. `http://127.0.0.1:9997`).
    pub fn remote(endpoint: &str, api_key: Option<String>) -> Result<Self> {
        Ok(Client {
            transport: Transport::Remote(RemoteClient::new(endpoint, api_key)?),
        })
    }

    /// The in-process runtime, when this client has one.
    pub fn runtime(&self) -> Option<&Arc<Runtime>> {
        match &self.transport {
            Transport::Local(r) => Some(r),
            Transport::Remote(_) => None,
        }
    }

    /// Launches a model and waits until it serves; returns its uid.
    pub async fn launch_model(&self, request: LaunchRequest) -> Result<String> {
        self.launch_model_with(request, true).await
    }

    /// Launches a model; with `wait_ready` false returns at once (poll [`Client::launch_progress`]).
    /// The request goes as it is, as Xinference's `launch_model` sends it: a language model
    /// needs its `model_engine` here (the typed `launch_llm` and friends choose one from the
    /// format when it is missing, [`LaunchRequest::engine_or_default`]).
    pub async fn launch_model_with(
        &self,
        request: LaunchRequest,
        wait_ready: bool,
    ) -> Result<String> {
        match &self.transport {
            Transport::Local(r) => r.launch_model(request, wait_ready).await,
            Transport::Remote(c) => c.launch_model(&request, wait_ready).await,
        }
    }

    /// Launches `request` as a model of type `expected` (set when the request has no type),
    /// waits until it serves and returns its handle.
    async fn launch_as(
        &self,
        mut request: LaunchRequest,
        expected: ModelType,
    ) -> Result<ModelHandle> {
        if request.model_type.is_none() {
            request = request.model_type(expected);
        }
        let kind = request.kind()?;
        if kind != expected {
            return Err(Error::bad_request(format!(
                "launch request for {} is of type {kind}, not {expected}",
                request.model_name
            )));
        }
        request.validate()?;
        request.model_engine = request.engine_or_default();
        let uid = self.launch_model(request).await?;
        ModelHandle::of_type(self.transport.clone(), &uid, kind)
    }

    /// Launches a language model, waits until it serves and returns its handle.
    ///
    /// ```no_run
    /// # async fn demo(client: xinference_core::Client) -> xinference_core::Result<()> {
    /// use xinference_core::LaunchRequest;
    /// let llm = client
    ///     .launch_llm(LaunchRequest::llm("qwen2.5-instruct").quantization("q4_k_m").n_parallel(2))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn launch_llm(&self, request: LaunchRequest) -> Result<LlmModel> {
        self.launch_as(request, ModelType::Llm).await?.into_llm()
    }

    /// Launches a text embedding model and returns its handle.
    pub async fn launch_embedding(&self, request: LaunchRequest) -> Result<EmbeddingModel> {
        self.launch_as(request, ModelType::Embedding)
            .await?
            .into_embedding()
    }

    /// Launches a rerank model and returns its handle.
    pub async fn launch_rerank(&self, request: LaunchRequest) -> Result<RerankModel> {
        self.launch_as(request, ModelType::Rerank)
            .await?
            .into_rerank()
    }

    /// Launches an image model and returns its handle.
    pub async fn launch_image(&self, request: LaunchRequest) -> Result<ImageModel> {
        self.launch_as(request, ModelType::Image)
            .await?
            .into_image()
    }

    /// Launches a speech-to-text model and returns its handle.
    pub async fn launch_audio(&self, request: LaunchRequest) -> Result<AudioModel> {
        self.launch_as(request, ModelType::Audio)
            .await?
            .into_audio()
    }

    /// Stops a model and frees its memory.
    pub async fn terminate_model(&self, uid: &str) -> Result<()> {
        match &self.transport {
            Transport::Local(r) => r.terminate_model(uid).await,
            Transport::Remote(c) => c
                .delete(&format!("/v1/models/{}", seg(uid)))
                .await
                .map(drop),
        }
    }

    /// Launched models by uid, with their descriptions.
    pub async fn list_models(&self) -> Result<BTreeMap<String, ModelDescription>> {
        match &self.transport {
            Transport::Local(r) => r
                .list_models()
                .into_iter()
                .map(|(uid, d)| Ok((uid, ModelDescription::from_json(d)?)))
                .collect(),
            Transport::Remote(c) => c.list_models().await,
        }
    }

    /// The description of a launched model.
    pub async fn describe_model(&self, uid: &str) -> Result<ModelDescription> {
        match &self.transport {
            Transport::Local(r) => ModelDescription::from_json(r.describe_model(uid)?),
            Transport::Remote(c) => c.get_as(&format!("/v1/models/{}", seg(uid))).await,
        }
    }

    /// A handle to a launched model, exposing only the capabilities it has.
    pub async fn get_model(&self, uid: &str) -> Result<ModelHandle> {
        let description = self.describe_model(uid).await?;
        ModelHandle::new(self.transport.clone(), uid, &description)
    }

    /// Status rows of launched models (optionally one name or uid).
    pub async fn instance_info(
        &self,
        model_name: Option<&str>,
        model_uid: Option<&str>,
    ) -> Result<Vec<InstanceInfo>> {
        match &self.transport {
            Transport::Local(r) => Ok(r.instance_info(model_name, model_uid)),
            Transport::Remote(c) => c.instance_info(model_name, model_uid).await,
        }
    }

    /// Download and load progress of a launch.
    pub async fn launch_progress(&self, uid: &str) -> Result<ProgressSnapshot> {
        match &self.transport {
            Transport::Local(r) => r.launch_progress(uid),
            Transport::Remote(c) => c.get_as(&format!("/v1/models/{}/progress", seg(uid))).await,
        }
    }

    /// Names of the registered families of a type (built-in and custom).
    pub async fn list_model_registrations(
        &self,
        model_type: ModelType,
    ) -> Result<Vec<RegistrationSummary>> {
        match &self.transport {
            Transport::Local(r) => Ok(r.registry().list(model_type)),
            Transport::Remote(c) => c.list_model_registrations(model_type).await,
        }
    }

    /// One family's full JSON.
    pub async fn get_model_registration(&self, model_type: ModelType, name: &str) -> Result<Value> {
        match &self.transport {
            Transport::Local(r) => r.registry().get(model_type, name).map(|f| f.json),
            Transport::Remote(c) => {
                c.get_as(&format!(
                    "/v1/model_registrations/{}/{}",
                    seg(model_type.as_str()),
                    seg(name)
                ))
                .await
            }
        }
    }

    /// Registers a custom family from its JSON; with `persist`, it survives restarts.
    pub async fn register_model(
        &self,
        model_type: ModelType,
        json: &str,
        persist: bool,
    ) -> Result<()> {
        match &self.transport {
            Transport::Local(r) => r.registry().register(model_type, json, persist).map(drop),
            Transport::Remote(c) => c.register_model(model_type, json, persist).await,
        }
    }

    /// Removes a custom family.
    pub async fn unregister_model(&self, model_type: ModelType, name: &str) -> Result<()> {
        match &self.transport {
            Transport::Local(r) => r.registry().unregister(model_type, name),
            Transport::Remote(c) => c
                .delete(&format!(
                    "/v1/model_registrations/{}/{}",
                    seg(model_type.as_str()),
                    seg(name)
                ))
                .await
                .map(drop),
        }
    }

    /// What can run a model: `{engine: [params]}` or `{engine: "why not"}`.
    pub async fn query_engines(
        &self,
        model_name: &str,
        model_type: Option<ModelType>,
    ) -> Result<EngineOptions> {
        match &self.transport {
            Transport::Local(r) => r.registry().engines(model_name, model_type),
            Transport::Remote(c) => c.query_engines(model_name, model_type).await,
        }
    }

    /// Complete entries of the local model cache.
    pub async fn list_cached_models(&self, model_name: Option<&str>) -> Result<Vec<CacheEntry>> {
        match &self.transport {
            Transport::Local(r) => Ok(list_cached(&r.config().home, model_name)),
            Transport::Remote(c) => c.list_cached_models(model_name).await,
        }
    }
}
