//! The rerank capability of the runtime: request validation, dispatch to a replica's worker
//! (where the (query, document) pairs of the request are scored in batches), and the response
//! in Xinference's shape, plus Cohere's shape for `/rerank` and `/v2/rerank`.

use super::Worker;
use super::{Loaded, Runtime};
use crate::protocol::rerank::{
    CohereApiVersion, CohereBilledUnits, CohereMeta, CohereRerankRequest, CohereRerankResponse,
    CohereRerankResult, RerankDocument, RerankMeta, RerankRequest, RerankResponse, RerankResult,
    RerankTokens,
};
use crate::registry::ModelType;
use crate::rerank::{ranking, DocScore, Rerank, RerankJob, ScoreOptions};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A request waiting for the model, with where its answer goes.
struct Pending {
    id: u64,
    job: RerankJob,
    answer: oneshot::Sender<Result<Vec<DocScore>>>,
}

/// One replica of a rerank model: its worker, and the requests waiting for it. Each request
/// queues a job on the worker (so the bounded queue and `request_limits` still answer 429); the
/// first job to run takes every request waiting at that moment and scores them together, so
/// requests that arrive while the model is busy share batches. Later jobs find their request
/// already answered and return at once.
pub(crate) struct RerankReplica {
    pub(crate) worker: Worker<Box<dyn Rerank>>,
    pending: Arc<Mutex<Vec<Pending>>>,
    next_id: AtomicU64,
}

impl RerankReplica {
    pub(crate) fn new(worker: Worker<Box<dyn Rerank>>) -> Self {
        RerankReplica {
            worker,
            pending: Arc::new(Mutex::new(Vec::new())),
            next_id: AtomicU64::new(0),
        }
    }

    /// Scores one request, batched with whatever else is waiting; gives the documents back.
    async fn score(&self, job: RerankJob) -> Result<(Vec<DocScore>, Vec<String>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let documents = job.documents.clone();
        let (answer, receive) = oneshot::channel();
        self.pending
            .lock()
            .expect("rerank queue lock")
            .push(Pending { id, job, answer });
        let pending = self.pending.clone();
        let queued = self
            .worker
            .call(move |model| {
                let taken: Vec<Pending> = std::mem::take(&mut *pending.lock().expect("lock"))
                    .into_iter()
                    .filter(|p| !p.answer.is_closed())
                    .collect();
                if taken.is_empty() {
                    return Ok(());
                }
                let jobs: Vec<RerankJob> = taken.iter().map(|p| p.job.clone()).collect();
                let results = model.score_many(&jobs);
                for (p, r) in taken.into_iter().zip(results) {
                    let _ = p.answer.send(r);
                }
                Ok(())
            })
            .await;
        if let Err(e) = queued {
            // Refused (429/503) or failed: withdraw the request unless a job already took it.
            let mut waiting = self.pending.lock().expect("rerank queue lock");
            if let Some(at) = waiting.iter().position(|p| p.id == id) {
                waiting.remove(at);
                return Err(e);
            }
        }
        let scores = receive
            .await
            .map_err(|_| Error::internal("the rerank model stopped while serving the request"))??;
        Ok((scores, documents))
    }
}

impl Runtime {
    /// Orders `request.documents` by relevance to `request.query` with the model `request.model`.
    pub async fn rerank(&self, request: RerankRequest) -> Result<RerankResponse> {
        let record = self.begin_request(&request.model);
        let result = self.rerank_unrecorded(request).await;
        super::metrics::finish(record, result)
    }

    async fn rerank_unrecorded(&self, request: RerankRequest) -> Result<RerankResponse> {
        let instance = self.instance(&request.model)?;
        if instance.family.model_type != ModelType::Rerank {
            return Err(Error::bad_request(format!(
                "Model {} is not a rerank model (its type is {})",
                request.model, instance.family.model_type
            )));
        }
        if request.documents.is_empty() {
            return Err(Error::bad_request("documents must not be empty"));
        }
        let top_n = at_least_one(
            request.top_n,
            "top_n",
            " (leave it out to get every document)",
        )?;
        let max_chunks_per_doc =
            at_least_one(request.max_chunks_per_doc, "max_chunks_per_doc", "")?;
        let options = ScoreOptions {
            max_chunks_per_doc,
            max_tokens_per_doc: usize_option(&request.extra, "max_tokens_per_doc")?,
            instruction: instruction(&request)?,
        };
        if options.max_tokens_per_doc == Some(0) {
            return Err(Error::bad_request("max_tokens_per_doc must be at least 1"));
        }
        let query = request.query.into_text();
        let documents: Vec<String> = request
            .documents
            .into_iter()
            .map(|d| d.into_text())
            .collect();
        let loaded = instance.loaded()?;
        let Loaded::Rerank(workers) = &*loaded else {
            return Err(Error::bad_request(format!(
                "Model {} is not a rerank model",
                request.model
            )));
        };
        let replica = instance.pick_replica(workers.len());
        let job = RerankJob {
            query,
            documents,
            options,
        };
        let (scores, documents) = workers[replica].score(job).await?;
        let values: Vec<f32> = scores.iter().map(|s| s.score).collect();
        let mut order = ranking(&values);
        if let Some(n) = top_n {
            order.truncate(n);
        }
        let return_documents = request.return_documents.unwrap_or(false);
        let results = order
            .into_iter()
            .map(|i| RerankResult {
                index: i,
                relevance_score: f64::from(values[i]),
                document: return_documents.then(|| RerankDocument {
                    text: documents[i].clone(),
                }),
            })
            .collect();
        let tokens: usize = scores.iter().map(|s| s.tokens).sum();
        Ok(RerankResponse {
            id: uuid::Uuid::new_v4().to_string(),
            results,
            meta: RerankMeta {
                tokens: request.return_len.unwrap_or(false).then_some(RerankTokens {
                    input_tokens: tokens,
                    output_tokens: tokens,
                }),
                ..Default::default()
            },
        })
    }

    /// Cohere's rerank (`/rerank` is `api_version` "1", `/v2/rerank` "2").
    pub async fn rerank_cohere(
        &self,
        request: CohereRerankRequest,
        api_version: &str,
    ) -> Result<CohereRerankResponse> {
        let documents = request.documents.len();
        let mut extra = Map::new();
        if let Some(m) = request.max_tokens_per_doc {
            extra.insert("max_tokens_per_doc".into(), Value::from(m));
        }
        let response = self
            .rerank(RerankRequest {
                model: request.model,
                query: request.query.into(),
                documents: request.documents,
                top_n: request.top_n,
                return_documents: request.return_documents,
                return_len: Some(false),
                max_chunks_per_doc: request.max_chunks_per_doc,
                kwargs: None,
                extra,
            })
            .await?;
        Ok(CohereRerankResponse {
            id: response.id,
            results: response
                .results
                .into_iter()
                .map(|r| CohereRerankResult {
                    index: r.index,
                    relevance_score: r.relevance_score,
                    document: r.document,
                })
                .collect(),
            meta: CohereMeta {
                api_version: CohereApiVersion {
                    version: api_version.to_owned(),
                },
                billed_units: CohereBilledUnits {
                    search_units: documents.div_ceil(100).max(1),
                },
            },
        })
    }
}

/// The `instruction` keyword argument: in `kwargs` (a JSON object in a string) or in the body.
fn instruction(request: &RerankRequest) -> Result<Option<String>> {
    let mut kwargs = Map::new();
    if let Some(text) = request.kwargs.as_deref().filter(|t| !t.trim().is_empty()) {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => kwargs = map,
            Ok(Value::Null) => {}
            _ => {
                return Err(Error::bad_request(
                    "kwargs must be a JSON object encoded as a string",
                ))
            }
        }
    }
    match kwargs
        .get("instruction")
        .or_else(|| request.extra.get("instruction"))
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::bad_request(format!(
            "instruction must be a string, not {other}"
        ))),
    }
}

fn usize_option(extra: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().map(|n| n as usize)),
        Some(other) => Err(Error::bad_request(format!(
            "{key} must be a non-negative integer, not {other}"
        ))),
    }
}

/// A count that must be at least 1 when given.
fn at_least_one(value: Option<i64>, key: &str, hint: &str) -> Result<Option<usize>> {
    match value {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(n as usize)),
        Some(n) => Err(Error::bad_request(format!(
            "{key} must be at least 1{hint}, not {n}"
        ))),
    }
}
