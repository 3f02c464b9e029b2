//! The typed launch builder over the wire [`LaunchRequest`]: typed fields in, the same JSON out.
//!
//! ```
//! use xinference_core::{LaunchRequest, ModelType};
//! let request = LaunchRequest::llm("qwen2.5-instruct")
//!     .model_path("/models/qwen2.5-0.5b-instruct-q4_k_m.gguf")
//!     .quantization("q4_k_m")
//!     .replica(2)
//!     .n_parallel(4);
//! assert_eq!(request.kind().unwrap(), ModelType::Llm);
//! // No engine named: the client picks it from the format (a `.gguf` file is `llama.cpp`).
//! assert_eq!(request.engine_or_default().as_deref(), Some("llama.cpp"));
//! ```

use crate::protocol::xinference::LaunchRequest;
use crate::registry::{check_plain_name, ModelType};
use crate::{Error, Result};
use serde_json::Value;

impl LaunchRequest {
    /// A launch of `model_name` with every option left to its default (the type is LLM unless
    /// set with [`LaunchRequest::model_type`]).
    pub fn new(model_name: impl Into<String>) -> Self {
        LaunchRequest {
            model_name: model_name.into(),
            ..Default::default()
        }
    }
    /// A launch of `model_name` as a language model (chat / generate).
    pub fn llm(model_name: impl Into<String>) -> Self {
        Self::new(model_name).model_type(ModelType::Llm)
    }
    /// A launch of `model_name` as a text embedding model.
    pub fn embedding(model_name: impl Into<String>) -> Self {
        Self::new(model_name).model_type(ModelType::Embedding)
    }
    /// A launch of `model_name` as a rerank model.
    pub fn rerank(model_name: impl Into<String>) -> Self {
        Self::new(model_name).model_type(ModelType::Rerank)
    }
    /// A launch of `model_name` as an image model.
    pub fn image(model_name: impl Into<String>) -> Self {
        Self::new(model_name).model_type(ModelType::Image)
    }
    /// A launch of `model_name` as a speech-to-text model.
    pub fn audio(model_name: impl Into<String>) -> Self {
        Self::new(model_name).model_type(ModelType::Audio)
    }
    /// Sets the model type (default LLM).
    pub fn model_type(mut self, t: ModelType) -> Self {
        self.model_type = Some(t.as_str().to_owned());
        self
    }
    /// Sets the engine (`llama.cpp`, `Transformers`, `sentence_transformers`, `candle`). Optional
    /// through the typed launches ([`crate::Client::launch_llm`] and friends): when absent it is
    /// chosen from the format (see [`LaunchRequest::engine_or_default`]).
    pub fn model_engine(mut self, engine: impl Into<String>) -> Self {
        self.model_engine = Some(engine.into());
        self
    }
    /// Sets the uid to serve the model under (default: the model name).
    pub fn model_uid(mut self, uid: impl Into<String>) -> Self {
        self.model_uid = Some(uid.into());
        self
    }
    /// Sets the file format (`pytorch`, `ggufv2`).
    pub fn model_format(mut self, format: impl Into<String>) -> Self {
        self.model_format = Some(format.into());
        self
    }
    /// Sets the size in billions as Xinference writes it (`"0_5"`, `"7"`; `"0.5"` is accepted).
    pub fn model_size_in_billions(mut self, size: impl Into<String>) -> Self {
        self.model_size_in_billions = Some(Value::String(size.into()));
        self
    }
    /// Sets the quantization (`q4_k_m`, `none`, ...).
    pub fn quantization(mut self, q: impl Into<String>) -> Self {
        self.quantization = Some(q.into());
        self
    }
    /// Loads from a local file or folder instead of the cache or hub.
    pub fn model_path(mut self, path: impl Into<String>) -> Self {
        self.model_path = Some(path.into());
        self
    }
    /// Serves with `n` replicas, each on its own worker thread (1 to 64).
    pub fn replica(mut self, n: u32) -> Self {
        self.replica = Some(n.into());
        self
    }
    /// At most `n` requests in flight per replica; beyond it a request fails at once with
    /// [`crate::ErrorKind::Overloaded`].
    pub fn request_limits(mut self, n: u32) -> Self {
        self.request_limits = Some(n.into());
        self
    }
    /// Sequences a language model decodes together per replica (1 to 64, default 4).
    pub fn n_parallel(mut self, n: u32) -> Self {
        self.extra.insert("n_parallel".into(), n.into());
        self
    }
    /// Sets any other engine keyword argument (kept in `extra`, sent as a top-level key).
    pub fn option(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The requested model type (LLM when unset); a bad type string is a
    /// [`crate::ErrorKind::BadRequest`].
    pub fn kind(&self) -> Result<ModelType> {
        self.model_type.as_deref().unwrap_or("LLM").parse()
    }

    /// The engine to ask for: the one set, or for a language model the one that runs its
    /// format (`ggufv2` or a `.gguf` path: `llama.cpp`; `pytorch` or a folder: `Transformers`;
    /// unknown: `candle`, which runs every format). Other types have a default on the server.
    pub fn engine_or_default(&self) -> Option<String> {
        if self.model_engine.is_some() {
            return self.model_engine.clone();
        }
        if self.kind().ok()? != ModelType::Llm {
            return None;
        }
        let format = self.model_format.clone().or_else(|| {
            let path = self.model_path.as_deref()?;
            if path.to_ascii_lowercase().ends_with(".gguf") {
                Some("ggufv2".to_owned())
            } else if std::path::Path::new(path).is_dir() {
                Some("pytorch".to_owned())
            } else {
                None
            }
        });
        Some(
            match format.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("ggufv2") => "llama.cpp",
                Some("pytorch") => "Transformers",
                _ => "candle",
            }
            .to_owned(),
        )
    }

    /// Checks the typed fields before anything is sent: the model name, uid, format, size and
    /// quantization are plain names, the type is known, `replica` is 1 to 64 and `n_parallel`
    /// 1 to 64. The runtime checks everything again; this gives the same
    /// [`crate::ErrorKind::BadRequest`] without a round trip.
    pub fn validate(&self) -> Result<()> {
        if self.model_name.is_empty() {
            return Err(Error::bad_request(
                "Invalid input. Please specify the model name",
            ));
        }
        check_plain_name("model_name", &self.model_name)?;
        self.kind()?;
        if let Some(uid) = &self.model_uid {
            check_plain_name("model_uid", uid)?;
        }
        if let Some(format) = &self.model_format {
            check_plain_name("model_format", format)?;
        }
        if let Some(q) = &self.quantization {
            check_plain_name("quantization", q)?;
        }
        match &self.model_size_in_billions {
            None => {}
            Some(Value::String(s)) => {
                let ok = !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_digit() || c == '_' || c == '.')
                    && s.starts_with(|c: char| c.is_ascii_digit());
                if !ok {
                    return Err(Error::bad_request(format!(
                        "Invalid model_size_in_billions `{s}`: write it as 7, 0_5 or 0.5"
                    )));
                }
            }
            Some(Value::Number(_)) => {}
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "Invalid model_size_in_billions {other}: a number or a string like 0_5"
                )))
            }
        }
        for (field, value) in [
            ("replica", self.replica.as_ref()),
            ("n_parallel", self.extra.get("n_parallel")),
        ] {
            if let Some(v) = value {
                if !v.as_u64().is_some_and(|n| (1..=64).contains(&n)) {
                    return Err(Error::bad_request(format!(
                        "{field} must be an integer from 1 to 64, not {v}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    #[test]
    fn typed_builder_serialises_to_the_wire_json() {
        let request = LaunchRequest::llm("qwen2.5-instruct")
            .model_path("/m/q.gguf")
            .quantization("q4_k_m")
            .model_size_in_billions("0_5")
            .replica(2)
            .n_parallel(4)
            .request_limits(8);
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "model_name": "qwen2.5-instruct",
                "model_type": "LLM",
                "model_path": "/m/q.gguf",
                "quantization": "q4_k_m",
                "model_size_in_billions": "0_5",
                "replica": 2,
                "n_parallel": 4,
                "request_limits": 8,
            })
        );
        request.validate().unwrap();
    }

    #[test]
    fn engine_is_chosen_from_the_format() {
        let gguf = LaunchRequest::llm("m").model_path("/x/Model.Q4.GGUF");
        assert_eq!(gguf.engine_or_default().as_deref(), Some("llama.cpp"));
        let pytorch = LaunchRequest::llm("m").model_format("pytorch");
        assert_eq!(pytorch.engine_or_default().as_deref(), Some("Transformers"));
        let dir = LaunchRequest::llm("m").model_path(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(dir.engine_or_default().as_deref(), Some("Transformers"));
        assert_eq!(
            LaunchRequest::llm("m").engine_or_default().as_deref(),
            Some("candle")
        );
        let named = LaunchRequest::llm("m")
            .model_format("ggufv2")
            .model_engine("candle");
        assert_eq!(named.engine_or_default().as_deref(), Some("candle"));
        assert_eq!(LaunchRequest::embedding("m").engine_or_default(), None);
    }

    #[test]
    fn validation_rejects_bad_fields_as_bad_request() {
        let bad = [
            LaunchRequest::new(""),
            LaunchRequest::llm("m").model_uid("a b"),
            LaunchRequest::llm("m").quantization("../q"),
            LaunchRequest::llm("m").model_size_in_billions("seven"),
            LaunchRequest::llm("m").replica(0),
            LaunchRequest::llm("m").n_parallel(65),
            LaunchRequest {
                model_type: Some("spreadsheet".into()),
                ..LaunchRequest::new("m")
            },
        ];
        for request in bad {
            let err = request.validate().expect_err("invalid");
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
        }
        LaunchRequest::embedding("m")
            .model_size_in_billions("0.5")
            .validate()
            .unwrap();
    }
}
