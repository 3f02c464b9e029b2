//! Rerank wire types: Xinference's `POST /v1/rerank` (Cohere/Jina-like) and Cohere's own
//! `POST /rerank` (v1) and `POST /v2/rerank` shapes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A query or document: a string, or an object with `text` (other keys are ignored).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(
    untagged,
    expecting = "a query or document must be a string or an object with a `text` string"
)]
pub enum RerankText {
    /// Plain text.
    Text(String),
    /// `{"text": "..."}`.
    Object {
        /// The text.
        text: String,
    },
}

impl RerankText {
    /// The text.
    pub fn text(&self) -> &str {
        match self {
            RerankText::Text(t) | RerankText::Object { text: t } => t,
        }
    }

    /// Takes the text.
    pub fn into_text(self) -> String {
        match self {
            RerankText::Text(t) | RerankText::Object { text: t } => t,
        }
    }
}

impl From<&str> for RerankText {
    fn from(s: &str) -> Self {
        RerankText::Text(s.to_owned())
    }
}

impl From<String> for RerankText {
    fn from(s: String) -> Self {
        RerankText::Text(s)
    }
}

/// `POST /v1/rerank` request, as Xinference's `RerankRequest` (and its Python client) sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RerankRequest {
    /// The model uid.
    pub model: String,
    /// The query.
    pub query: RerankText,
    /// The documents to order by relevance to the query.
    pub documents: Vec<RerankText>,
    /// Return only the best `top_n` (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n: Option<i64>,
    /// Include each document's text in the results (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_documents: Option<bool>,
    /// Report token counts in `meta.tokens` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_len: Option<bool>,
    /// Split long documents into up to this many windows and keep the best score (default: the
    /// document is truncated to the model's window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chunks_per_doc: Option<i64>,
    /// Extra keyword arguments as a JSON object in a string (the Python client's form); the one
    /// read is `instruction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kwargs: Option<String>,
    /// Other keys (the Python client also spreads its keyword arguments here; `instruction`
    /// and Cohere's `max_tokens_per_doc` are read).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RerankRequest {
    /// A request to rank `documents` against `query`, with every option at its default.
    pub fn new<Q: Into<RerankText>, D: Into<RerankText>>(
        query: Q,
        documents: impl IntoIterator<Item = D>,
    ) -> Self {
        RerankRequest {
            model: String::new(),
            query: query.into(),
            documents: documents.into_iter().map(Into::into).collect(),
            top_n: None,
            return_documents: None,
            return_len: None,
            max_chunks_per_doc: None,
            kwargs: None,
            extra: Map::new(),
        }
    }
}

/// A document's text in a result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RerankDocument {
    /// The text.
    pub text: String,
}

/// One ranked document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RerankResult {
    /// Position of the document in the request.
    pub index: usize,
    /// Its score (higher is more relevant).
    pub relevance_score: f64,
    /// Its text, with `return_documents`; `null` otherwise.
    pub document: Option<RerankDocument>,
}

/// Token counts of a rerank request (`return_len`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RerankTokens {
    /// Tokens the model read.
    pub input_tokens: usize,
    /// Xinference reports the input count here too.
    pub output_tokens: usize,
}

/// `meta` of a rerank response; Xinference fills only `tokens` (the rest are Cohere fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RerankMeta {
    /// Always null.
    pub api_version: Option<Value>,
    /// Always null.
    pub billed_units: Option<Value>,
    /// Token counts, with `return_len`; null otherwise.
    pub tokens: Option<RerankTokens>,
    /// Always null.
    pub warnings: Option<Value>,
}

/// `POST /v1/rerank` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RerankResponse {
    /// A UUID.
    pub id: String,
    /// The documents, most relevant first.
    pub results: Vec<RerankResult>,
    /// Token counts.
    pub meta: RerankMeta,
}

/// Cohere's `POST /rerank` and `POST /v2/rerank` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CohereRerankRequest {
    /// The model uid.
    pub model: String,
    /// The query.
    pub query: String,
    /// Strings (v2) or `{"text"}` objects (v1).
    pub documents: Vec<RerankText>,
    /// Return only the best `top_n` (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n: Option<i64>,
    /// Include the documents in the results (v1; default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_documents: Option<bool>,
    /// Cut each document to this many tokens first (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_doc: Option<usize>,
    /// Split long documents into up to this many windows (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chunks_per_doc: Option<i64>,
    /// Other keys (`rank_fields`, ...), ignored.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One ranked document in Cohere's shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CohereRerankResult {
    /// Position of the document in the request.
    pub index: usize,
    /// Its score.
    pub relevance_score: f64,
    /// Its text, only with `return_documents`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<RerankDocument>,
}

/// Cohere's `meta.api_version`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CohereApiVersion {
    /// `"1"` on `/rerank`, `"2"` on `/v2/rerank`.
    pub version: String,
}

/// Cohere's `meta.billed_units`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CohereBilledUnits {
    /// One per query and started hundred documents.
    pub search_units: usize,
}

/// Cohere's `meta`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CohereMeta {
    /// The API version answered.
    pub api_version: CohereApiVersion,
    /// What Cohere would bill.
    pub billed_units: CohereBilledUnits,
}

/// Cohere's rerank response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CohereRerankResponse {
    /// A UUID.
    pub id: String,
    /// The documents, most relevant first.
    pub results: Vec<CohereRerankResult>,
    /// Version and billing.
    pub meta: CohereMeta,
}
