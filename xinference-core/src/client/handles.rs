//! Model handles: what `Client::get_model` returns, one type per capability.

use super::Transport;
use crate::anthropic::MessagesOutput;
use crate::protocol::anthropic::{Message, MessagesRequest, StreamEvent};
use crate::protocol::chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest,
    GenerationFields,
};
use crate::protocol::image::{
    ImageGenerationRequest, ImageResponse, ImageToImageRequest, InpaintingRequest,
};
use crate::protocol::message::ChatMessage;
use crate::protocol::openai::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse};
use crate::protocol::rerank::{RerankRequest, RerankResponse};
use crate::protocol::responses::{Response, ResponseStreamEvent, ResponsesRequest};
use crate::protocol::xinference::ModelDescription;
use crate::registry::ModelType;
use crate::responses::ResponsesOutput;
use crate::runtime::{ChatOutput, ChunkStream, CompletionOutput};
use crate::{Error, Result};
use serde_json::{Map, Value};

/// A launched model, by capability. Only the calls the model supports exist on each variant.
#[derive(Clone)]
#[non_exhaustive]
pub enum ModelHandle {
    /// A text embedding model.
    Embedding(EmbeddingModel),
    /// A language model (chat and/or generate).
    Llm(LlmModel),
    /// A rerank model.
    Rerank(RerankModel),
    /// A speech-to-text model.
    Audio(super::AudioModel),
    /// An image model (text to image, image to image).
    Image(ImageModel),
}

impl ModelHandle {
    pub(crate) fn new(
        transport: Transport,
        uid: &str,
        description: &ModelDescription,
    ) -> Result<Self> {
        Self::of_type(transport, uid, description.model_type)
    }

    /// The handle of the model `uid`, known to be of type `kind`.
    pub(crate) fn of_type(transport: Transport, uid: &str, kind: ModelType) -> Result<Self> {
        let uid = uid.to_owned();
        match kind {
            ModelType::Embedding => Ok(ModelHandle::Embedding(EmbeddingModel { transport, uid })),
            ModelType::Llm => Ok(ModelHandle::Llm(LlmModel { transport, uid })),
            ModelType::Rerank => Ok(ModelHandle::Rerank(RerankModel { transport, uid })),
            ModelType::Audio => Ok(ModelHandle::Audio(super::AudioModel { transport, uid })),
            ModelType::Image => Ok(ModelHandle::Image(ImageModel { transport, uid })),
            other => Err(Error::bad_request(format!(
                "Model {uid} is of type {other}, which this build cannot serve yet"
            ))),
        }
    }

    /// The model's uid.
    pub fn uid(&self) -> &str {
        match self {
            ModelHandle::Embedding(m) => &m.uid,
            ModelHandle::Llm(m) => &m.uid,
            ModelHandle::Rerank(m) => &m.uid,
            ModelHandle::Audio(m) => &m.uid,
            ModelHandle::Image(m) => &m.uid,
        }
    }

    /// The embedding handle, or a 400 when the model is not an embedding model.
    pub fn into_embedding(self) -> Result<EmbeddingModel> {
        match self {
            ModelHandle::Embedding(m) => Ok(m),
            other => Err(Error::bad_request(format!(
                "Model {} is not an embedding model",
                other.uid()
            ))),
        }
    }

    /// The rerank handle, or a 400 when the model is not a rerank model.
    pub fn into_rerank(self) -> Result<RerankModel> {
        match self {
            ModelHandle::Rerank(m) => Ok(m),
            other => Err(Error::bad_request(format!(
                "Model {} is not a rerank model",
                other.uid()
            ))),
        }
    }

    /// The speech-to-text handle, or a 400 when the model is not an audio model.
    pub fn into_audio(self) -> Result<super::AudioModel> {
        match self {
            ModelHandle::Audio(m) => Ok(m),
            other => Err(Error::bad_request(format!(
                "Model {} is not an audio model",
                other.uid()
            ))),
        }
    }

    /// The image handle, or a 400 when the model is not an image model.
    pub fn into_image(self) -> Result<ImageModel> {
        match self {
            ModelHandle::Image(m) => Ok(m),
            other => Err(Error::bad_request(format!(
                "Model {} is not an image model",
                other.uid()
            ))),
        }
    }

    /// The language-model handle, or a 400 when the model is not an LLM.
    pub fn into_llm(self) -> Result<LlmModel> {
        match self {
            ModelHandle::Llm(m) => Ok(m),
            other => Err(Error::bad_request(format!(
                "Model {} is not a language model",
                other.uid()
            ))),
        }
    }
}

/// A handle to a launched embedding model.
#[derive(Clone)]
pub struct EmbeddingModel {
    transport: Transport,
    uid: String,
}

impl EmbeddingModel {
    /// The model's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Embeds one text or a list of texts (or token ids).
    pub async fn create_embedding(
        &self,
        input: impl Into<EmbeddingInput>,
    ) -> Result<EmbeddingResponse> {
        self.create_embedding_with(EmbeddingRequest::new(self.uid.clone(), input))
            .await
    }

    /// Embeds with every request option available (`dimensions`, `encoding_format`, ...).
    /// The request's `model` is replaced by this handle's uid.
    pub async fn create_embedding_with(
        &self,
        mut request: EmbeddingRequest,
    ) -> Result<EmbeddingResponse> {
        request.model = self.uid.clone();
        match &self.transport {
            Transport::Local(r) => r.create_embedding(request).await,
            Transport::Remote(c) => c.post_as("/v1/embeddings", &request).await,
        }
    }
}

/// A handle to a launched language model.
#[derive(Clone)]
pub struct LlmModel {
    transport: Transport,
    uid: String,
}

impl ChatCompletionRequest {
    /// A request for `messages` with default settings: typed [`ChatMessage`]s or OpenAI message
    /// objects as JSON `Value`s. The model uid is filled in by the handle.
    pub fn new<M: Into<Value>>(messages: impl IntoIterator<Item = M>) -> Self {
        ChatCompletionRequest {
            model: String::new(),
            messages: messages.into_iter().map(Into::into).collect(),
            generation: GenerationFields::default(),
            logprobs: None,
            top_logprobs: None,
            tools: None,
            tool_choice: None,
            chat_template_kwargs: None,
            extra: Default::default(),
        }
    }

    /// Appends a message to the conversation.
    pub fn message(mut self, message: impl Into<Value>) -> Self {
        self.messages.push(message.into());
        self
    }
    /// Sets the most tokens to generate.
    pub fn max_tokens(mut self, n: u64) -> Self {
        self.generation.max_tokens = Some(n);
        self
    }
    /// Sets the sampling temperature (0 is greedy).
    pub fn temperature(mut self, t: f32) -> Self {
        self.generation.temperature = Some(t);
        self
    }
    /// Sets the RNG seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.generation.seed = Some(seed);
        self
    }
    /// Adds `bias` (-100 to 100) to the logit of each token id before every pick (OpenAI's
    /// `logit_bias`).
    pub fn logit_bias(mut self, biases: impl IntoIterator<Item = (u32, f32)>) -> Self {
        let map: Map<String, Value> = biases
            .into_iter()
            .map(|(id, bias)| (id.to_string(), Value::from(bias)))
            .collect();
        self.generation.logit_bias = Some(Value::Object(map));
        self
    }
    /// Offers tools: OpenAI `{"type": "function", "function": {...}}` objects.
    pub fn tools(mut self, tools: Vec<Value>) -> Self {
        self.tools = Some(tools);
        self
    }
    /// The messages as typed [`ChatMessage`]s (a message that is not a valid OpenAI message is a
    /// [`crate::ErrorKind::BadRequest`]).
    pub fn typed_messages(&self) -> Result<Vec<ChatMessage>> {
        self.messages
            .iter()
            .map(|m| {
                serde_json::from_value(m.clone())
                    .map_err(|e| Error::bad_request(format!("invalid message {m}: {e}")))
            })
            .collect()
    }
}

impl CompletionRequest {
    /// A request to continue `prompt` with default settings.
    pub fn new(prompt: impl Into<String>) -> Self {
        CompletionRequest {
            model: String::new(),
            prompt: Value::String(prompt.into()),
            generation: GenerationFields::default(),
            logprobs: None,
            echo: false,
            extra: Default::default(),
        }
    }
}

impl LlmModel {
    /// The model's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Chats and returns the whole answer (`stream` is ignored).
    pub async fn chat(&self, mut request: ChatCompletionRequest) -> Result<ChatCompletion> {
        request.model = self.uid.clone();
        request.generation.stream = false;
        match &self.transport {
            Transport::Local(r) => match r.chat(request).await? {
                ChatOutput::Whole(c) => Ok(c),
                ChatOutput::Stream(_) => Err(Error::internal("asked for a whole answer")),
            },
            Transport::Remote(c) => c.post_as("/v1/chat/completions", &request).await,
        }
    }

    /// Chats and returns the answer as a stream of chunks.
    ///
    /// The stream is a `futures::Stream`; dropping it stops the generation: in process the
    /// model's slot sees the closed channel at the next token and is free again, over HTTP the
    /// server sees the connection close and does the same.
    pub async fn chat_stream(
        &self,
        mut request: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>> {
        request.model = self.uid.clone();
        request.generation.stream = true;
        match &self.transport {
            Transport::Local(r) => match r.chat(request).await? {
                ChatOutput::Stream(s) => Ok(s),
                ChatOutput::Whole(_) => Err(Error::internal("asked for a stream")),
            },
            Transport::Remote(c) => c.post_stream("/v1/chat/completions", &request).await,
        }
    }

    /// Anthropic Messages API: the whole answer (`stream` is ignored).
    pub async fn messages(&self, mut request: MessagesRequest) -> Result<Message> {
        request.model = self.uid.clone();
        request.stream = false;
        match &self.transport {
            Transport::Local(r) => match r.messages(request).await? {
                MessagesOutput::Whole(m) => Ok(m),
                MessagesOutput::Stream(_) => Err(Error::internal("asked for a whole answer")),
            },
            Transport::Remote(c) => c.post_as("/anthropic/v1/messages", &request).await,
        }
    }

    /// Anthropic Messages API: the answer as a stream of Anthropic events.
    ///
    /// The stream is a `futures::Stream`; dropping it stops the generation: in process the
    /// model's slot sees the closed channel at the next token and is free again, over HTTP the
    /// server sees the connection close and does the same.
    pub async fn messages_stream(
        &self,
        mut request: MessagesRequest,
    ) -> Result<ChunkStream<StreamEvent>> {
        request.model = self.uid.clone();
        request.stream = true;
        match &self.transport {
            Transport::Local(r) => match r.messages(request).await? {
                MessagesOutput::Stream(s) => Ok(s),
                MessagesOutput::Whole(_) => Err(Error::internal("asked for a stream")),
            },
            Transport::Remote(c) => c.post_stream("/anthropic/v1/messages", &request).await,
        }
    }

    /// OpenAI Responses API: the whole response (`stream` is ignored). With `store` (the
    /// default) it is kept on the server (or in process, under `$XINFERENCE_HOME`) for
    /// `previous_response_id`.
    pub async fn responses(&self, mut request: ResponsesRequest) -> Result<Response> {
        request.model = self.uid.clone();
        request.stream = false;
        match &self.transport {
            Transport::Local(r) => match r.responses(request).await? {
                ResponsesOutput::Whole(m) => Ok(*m),
                ResponsesOutput::Stream(_) => Err(Error::internal("asked for a whole answer")),
            },
            Transport::Remote(c) => c.post_as("/v1/responses", &request).await,
        }
    }

    /// OpenAI Responses API: the response as a stream of numbered events, ending with
    /// `response.completed`, `response.incomplete` or `response.failed`.
    ///
    /// The stream is a `futures::Stream`; dropping it stops the generation: in process the
    /// model's slot sees the closed channel at the next token and is free again, over HTTP the
    /// server sees the connection close and does the same.
    pub async fn responses_stream(
        &self,
        mut request: ResponsesRequest,
    ) -> Result<ChunkStream<ResponseStreamEvent>> {
        request.model = self.uid.clone();
        request.stream = true;
        match &self.transport {
            Transport::Local(r) => match r.responses(request).await? {
                ResponsesOutput::Stream(s) => Ok(s),
                ResponsesOutput::Whole(_) => Err(Error::internal("asked for a stream")),
            },
            Transport::Remote(c) => c.post_stream("/v1/responses", &request).await,
        }
    }

    /// Continues a prompt and returns the whole completion (`stream` is ignored).
    pub async fn generate(&self, mut request: CompletionRequest) -> Result<Completion> {
        request.model = self.uid.clone();
        request.generation.stream = false;
        match &self.transport {
            Transport::Local(r) => match r.completion(request).await? {
                CompletionOutput::Whole(c) => Ok(c),
                CompletionOutput::Stream(_) => Err(Error::internal("asked for a whole answer")),
            },
            Transport::Remote(c) => c.post_as("/v1/completions", &request).await,
        }
    }

    /// Continues a prompt and returns the completion as a stream of chunks.
    ///
    /// The stream is a `futures::Stream`; dropping it stops the generation: in process the
    /// model's slot sees the closed channel at the next token and is free again, over HTTP the
    /// server sees the connection close and does the same.
    pub async fn generate_stream(
        &self,
        mut request: CompletionRequest,
    ) -> Result<ChunkStream<Completion>> {
        request.model = self.uid.clone();
        request.generation.stream = true;
        match &self.transport {
            Transport::Local(r) => match r.completion(request).await? {
                CompletionOutput::Stream(s) => Ok(s),
                CompletionOutput::Whole(_) => Err(Error::internal("asked for a stream")),
            },
            Transport::Remote(c) => c.post_stream("/v1/completions", &request).await,
        }
    }
}

/// A handle to a launched rerank model.
#[derive(Clone)]
pub struct RerankModel {
    transport: Transport,
    uid: String,
}

impl RerankModel {
    /// The model's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Orders documents by relevance to a query: build the request with
    /// [`RerankRequest::new`] and set `top_n`, `return_documents`, `return_len` or
    /// `max_chunks_per_doc` on it. The request's `model` is replaced by this handle's uid.
    pub async fn rerank(&self, mut request: RerankRequest) -> Result<RerankResponse> {
        request.model = self.uid.clone();
        match &self.transport {
            Transport::Local(r) => r.rerank(request).await,
            Transport::Remote(c) => c.post_as("/v1/rerank", &request).await,
        }
    }
}

/// A handle to a launched image model.
#[derive(Clone)]
pub struct ImageModel {
    transport: Transport,
    uid: String,
}

impl ImageModel {
    /// The model's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Text to image: build the request with [`ImageGenerationRequest::new`] and set `n`,
    /// `size`, `response_format` or options in `kwargs` (`negative_prompt`, `guidance_scale`,
    /// `num_inference_steps`, `seed`, `sampler_name`, `output_format`). The request's `model`
    /// is replaced by this handle's uid. In process a `url` image is a local file path; over
    /// HTTP it is the server's URL of the file.
    pub async fn text_to_image(
        &self,
        mut request: ImageGenerationRequest,
    ) -> Result<ImageResponse> {
        request.model = self.uid.clone();
        match &self.transport {
            Transport::Local(r) => r.text_to_image(request).await,
            Transport::Remote(c) => c.post_as("/v1/images/generations", &request).await,
        }
    }

    /// Image to image (`strength` and the other options in `kwargs`); over HTTP it is
    /// Xinference's multipart `POST /v1/images/variations`.
    pub async fn image_to_image(&self, mut request: ImageToImageRequest) -> Result<ImageResponse> {
        request.model = self.uid.clone();
        match &self.transport {
            Transport::Local(r) => r.image_to_image(request).await,
            Transport::Remote(c) => {
                let mut form = reqwest::multipart::Form::new()
                    .text("model", request.model)
                    .text("prompt", request.prompt)
                    .text("kwargs", Value::Object(request.kwargs).to_string())
                    .part(
                        "image",
                        reqwest::multipart::Part::bytes(request.image).file_name("image"),
                    );
                if let Some(n) = request.n {
                    form = form.text("n", n.to_string());
                }
                if let Some(f) = request.response_format {
                    form = form.text("response_format", f);
                }
                if let Some(s) = request.size {
                    form = form.text("size", s);
                }
                c.post_multipart_as("/v1/images/variations", form).await
            }
        }
    }

    /// Inpainting (`strength` and the other options in `kwargs`); over HTTP it is
    /// Xinference's multipart `POST /v1/images/inpainting`.
    pub async fn inpainting(&self, mut request: InpaintingRequest) -> Result<ImageResponse> {
        request.model = self.uid.clone();
        match &self.transport {
            Transport::Local(r) => r.inpainting(request).await,
            Transport::Remote(c) => {
                let mut form = reqwest::multipart::Form::new()
                    .text("model", request.model)
                    .text("prompt", request.prompt)
                    .text("kwargs", Value::Object(request.kwargs).to_string())
                    .part(
                        "image",
                        reqwest::multipart::Part::bytes(request.image).file_name("image"),
                    )
                    .part(
                        "mask_image",
                        reqwest::multipart::Part::bytes(request.mask_image).file_name("mask"),
                    );
                if let Some(n) = request.n {
                    form = form.text("n", n.to_string());
                }
                if let Some(f) = request.response_format {
                    form = form.text("response_format", f);
                }
                if let Some(s) = request.size {
                    form = form.text("size", s);
                }
                c.post_multipart_as("/v1/images/inpainting", form).await
            }
        }
    }
}
