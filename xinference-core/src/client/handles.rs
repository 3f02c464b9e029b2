//! Model handles: what `Client::get_model` returns, one type per capability.

use super::Transport;
use crate::protocol::openai::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse};
use crate::protocol::xinference::ModelDescription;
use crate::{Error, Result};

/// A launched model, by capability. Only the calls the model supports exist on each variant.
#[derive(Clone)]
#[non_exhaustive]
pub enum ModelHandle {
    /// A text embedding model.
    Embedding(EmbeddingModel),
}

impl ModelHandle {
    pub(crate) fn new(
        transport: Transport,
        uid: &str,
        description: &ModelDescription,
    ) -> Result<Self> {
        let model_type = description
            .get("model_type")
            .and_then(|t| t.as_str())
            .unwrap_or("");
        match model_type {
            "embedding" => Ok(ModelHandle::Embedding(EmbeddingModel {
                transport,
                uid: uid.to_owned(),
            })),
            other => Err(Error::bad_request(format!(
                "Model {uid} is of type {other}, which this build cannot serve yet"
            ))),
        }
    }

    /// The model's uid.
    pub fn uid(&self) -> &str {
        match self {
            ModelHandle::Embedding(m) => &m.uid,
        }
    }

    /// The embedding handle, or a 400 when the model is not an embedding model.
    pub fn into_embedding(self) -> Result<EmbeddingModel> {
        match self {
            ModelHandle::Embedding(m) => Ok(m),
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
        self.create_embedding_with(EmbeddingRequest {
            model: self.uid.clone(),
            input: input.into(),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra: Default::default(),
        })
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
