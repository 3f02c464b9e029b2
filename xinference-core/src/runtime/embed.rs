//! The embedding capability of the runtime: request validation, dispatch to a replica's
//! worker, and the response in Xinference's shape.

use super::{Loaded, Runtime};
use crate::embedding::{EmbedInput, Embedding, Truncation};
use crate::protocol::openai::{
    EmbeddingData, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingVector, Usage,
};
use crate::{Error, Result};
use base64::Engine as _;

impl Runtime {
    /// Embeds `request.input` with the model `request.model`.
    pub async fn create_embedding(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse> {
        let record = self.begin_request(&request.model);
        let result = self.create_embedding_unrecorded(request).await;
        super::metrics::finish(record, result)
    }

    async fn create_embedding_unrecorded(
        &self,
        request: EmbeddingRequest,
    ) -> Result<EmbeddingResponse> {
        let instance = self.instance(&request.model)?;
        if !instance.family.has_ability("embed") {
            return Err(Error::bad_request(format!(
                "Model {} does not support embeddings (its abilities: {})",
                request.model,
                instance.family.abilities.join(", ")
            )));
        }
        let base64 = match request.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "encoding_format must be float or base64, not {other}"
                )))
            }
        };
        let truncation = Truncation {
            max_tokens: match request.truncate_prompt_tokens {
                None => None,
                Some(n) if n < 0 => None, // the model's own limit
                Some(0) => {
                    return Err(Error::bad_request(
                        "truncate_prompt_tokens must not be 0: nothing would be embedded",
                    ))
                }
                Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
            truncate: request.truncate.unwrap_or(true),
        };
        let inputs = to_inputs(request.input)?;
        let loaded = instance.loaded()?;
        let Loaded::Embedding(replicas) = &*loaded else {
            return Err(Error::bad_request(format!(
                "Model {} is not an embedding model",
                request.model
            )));
        };
        let replica = instance.pick_replica(replicas.len());
        let batcher = &replicas[replica];
        let dims = batcher.dimensions();
        if let Some(d) = request.dimensions {
            if d == 0 || d > dims {
                return Err(Error::bad_request(format!(
                    "dimensions must be between 1 and the model's {dims}, not {d}"
                )));
            }
        }
        let embeddings: Vec<Embedding> = batcher.embed(inputs, truncation).await?;
        let prompt_tokens = embeddings.iter().map(|e| e.tokens).sum();
        let data = embeddings
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                let vector = match request.dimensions {
                    Some(d) if d < e.vector.len() => truncate_and_renormalise(e.vector, d),
                    _ => e.vector,
                };
                let embedding = if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    EmbeddingVector::Float(vector)
                };
                EmbeddingData {
                    index,
                    object: "embedding".to_owned(),
                    embedding,
                }
            })
            .collect();
        Ok(EmbeddingResponse {
            object: "list".to_owned(),
            model: request.model,
            model_replica: Some(instance.replica_uid(replica)),
            data,
            usage: Usage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        })
    }
}

fn to_inputs(input: EmbeddingInput) -> Result<Vec<EmbedInput>> {
    let inputs: Vec<EmbedInput> = match input {
        EmbeddingInput::Text(t) => vec![EmbedInput::Text(t)],
        EmbeddingInput::Texts(ts) => ts.into_iter().map(EmbedInput::Text).collect(),
        EmbeddingInput::Tokens(ids) => vec![EmbedInput::Tokens(ids)],
        EmbeddingInput::TokenLists(lists) => lists.into_iter().map(EmbedInput::Tokens).collect(),
    };
    if inputs.is_empty() {
        return Err(Error::bad_request("input must not be empty"));
    }
    for (i, input) in inputs.iter().enumerate() {
        let empty = match input {
            EmbedInput::Text(t) => t.is_empty(),
            EmbedInput::Tokens(ids) => ids.is_empty(),
        };
        if empty {
            return Err(Error::bad_request(format!("input {i} is empty")));
        }
    }
    Ok(inputs)
}

/// Matryoshka truncation: keep the first `d` components and rescale to unit length.
fn truncate_and_renormalise(mut v: Vec<f32>, d: usize) -> Vec<f32> {
    v.truncate(d);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}
