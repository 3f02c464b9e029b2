//! The same client calls over HTTP, against a running xinference-rs or Xinference server.

use crate::hub::CacheEntry;
use crate::protocol::xinference::{InstanceInfo, LaunchRequest, LaunchResponse, ModelDescription};
use crate::registry::{EngineOptions, ModelType, RegistrationSummary};
use crate::{Error, ErrorKind, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// An HTTP connection to a server.
#[derive(Clone)]
pub struct RemoteClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
}

/// Shows the endpoint and whether a key is set, never the key.
impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RemoteClient {
    /// A client of `endpoint` (`http://host:port`), sending `api_key` as a bearer token.
    pub fn new(endpoint: &str, api_key: Option<String>) -> Result<Self> {
        let base = endpoint.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::bad_request(format!(
                "endpoint must start with http:// or https://, got {endpoint}"
            )));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::internal(format!("cannot create an HTTP client: {e}")))?;
        Ok(RemoteClient {
            base,
            http,
            api_key,
        })
    }

    /// The server's base URL.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// Sends `request` with the API key; a connection failure is a 503-class error and a
    /// non-2xx answer an error of the matching kind carrying the server's `detail`.
    async fn open(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            Error::new(
                ErrorKind::NotReady,
                format!("cannot reach the server at {}: {e}", self.base),
            )
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| match v.get("detail") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                // The Anthropic and OpenAI Responses routes' shape.
                None => v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
            .unwrap_or(text);
        Err(Error::new(ErrorKind::from_http_status(status), detail))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let text =
            self.open(request).await?.text().await.map_err(|e| {
                Error::internal(format!("reading the answer of {}: {e}", self.base))
            })?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::internal(format!("the server answered with invalid JSON: {e}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path` and decode the JSON answer.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.send(self.http.get(self.url(path))).await?)
    }

    /// POST `body` to `path` and decode the JSON answer.
    pub async fn post_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        decode(self.send(self.http.post(self.url(path)).json(body)).await?)
    }

    /// POST a multipart `form` to `path` and decode the JSON answer.
    pub async fn post_multipart_as<T: DeserializeOwned>(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<T> {
        decode(
            self.send(self.http.post(self.url(path)).multipart(form))
                .await?,
        )
    }

    /// POST `body` to `path` and read the answer as OpenAI server-sent events: each
    /// `data: {json}` becomes an item, `data: {"error": ...}` an error item, `[DONE]` the end.
    pub async fn post_stream<B: Serialize + ?Sized, T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<crate::runtime::ChunkStream<T>> {
        self.events(self.http.post(self.url(path)).json(body)).await
    }

    /// POST a multipart `form` to `path` and read the answer as server-sent events, as
    /// [`RemoteClient::post_stream`] does.
    pub async fn post_multipart_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<crate::runtime::ChunkStream<T>> {
        self.events(self.http.post(self.url(path)).multipart(form))
            .await
    }

    /// Sends `request` and reads its answer as server-sent events.
    async fn events<T: DeserializeOwned + Send + 'static>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<crate::runtime::ChunkStream<T>> {
        use futures::StreamExt;
        let response = self.open(request).await?;
        let bytes = response.bytes_stream();
        let lines = futures::stream::unfold(
            (bytes, Vec::<u8>::new(), false),
            |(mut bytes, mut buf, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let line = String::from_utf8_lossy(&line).trim().to_owned();
                        let Some(data) = line.strip_prefix("data:") else {
                            continue;
                        };
                        let data = data.trim();
                        if data == "[DONE]" {
                            return None;
                        }
                        let item: Result<Value> = serde_json::from_str(data).map_err(|e| {
                            Error::internal(format!("bad event from the server: {e}"))
                        });
                        return Some((item, (bytes, buf, false)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            return Some((
                                Err(Error::internal(format!("stream broke: {e}"))),
                                (bytes, buf, true),
                            ))
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(lines
            .map(|item| {
                let value = item?;
                if let Some(err) = value.get("error") {
                    let message = err
                        .as_str()
                        .or_else(|| err.get("message").and_then(Value::as_str))
                        .map(str::to_owned)
                        .unwrap_or_else(|| err.to_string());
                    // A status code, when the event carries one, keeps the error's kind.
                    let kind = err
                        .get("code")
                        .and_then(Value::as_u64)
                        .map_or(ErrorKind::Internal, |c| {
                            ErrorKind::from_http_status(c as u16)
                        });
                    return Err(Error::new(kind, message));
                }
                decode(value)
            })
            .boxed())
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(self.http.delete(self.url(path))).await
    }

    pub(crate) async fn launch_model(
        &self,
        request: &LaunchRequest,
        wait_ready: bool,
    ) -> Result<String> {
        let path = format!("/v1/models?wait_ready={wait_ready}");
        let response: LaunchResponse = self.post_as(&path, request).await?;
        Ok(response.model_uid)
    }

    pub(crate) async fn list_models(&self) -> Result<BTreeMap<String, ModelDescription>> {
        let listing: Value = self.get_as("/v1/models").await?;
        let mut out = BTreeMap::new();
        for item in listing["data"].as_array().cloned().unwrap_or_default() {
            if let Value::Object(mut map) = item {
                let uid = map
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                for key in ["id", "object", "created", "owned_by"] {
                    map.remove(key);
                }
                out.insert(uid, ModelDescription::from_json(map)?);
            }
        }
        Ok(out)
    }

    pub(crate) async fn instance_info(
        &self,
        name: Option<&str>,
        uid: Option<&str>,
    ) -> Result<Vec<InstanceInfo>> {
        let mut request = self.http.get(self.url("/v1/models/instances"));
        if let Some(n) = name {
            request = request.query(&[("model_name", n)]);
        }
        if let Some(u) = uid {
            request = request.query(&[("model_uid", u)]);
        }
        decode(self.send(request).await?)
    }

    pub(crate) async fn list_model_registrations(
        &self,
        t: ModelType,
    ) -> Result<Vec<RegistrationSummary>> {
        let items: Vec<Value> = self
            .get_as(&format!("/v1/model_registrations/{}", seg(t.as_str())))
            .await?;
        Ok(items
            .into_iter()
            .map(|v| RegistrationSummary {
                model_name: v["model_name"].as_str().unwrap_or_default().to_owned(),
                is_builtin: v["is_builtin"].as_bool().unwrap_or(false),
            })
            .collect())
    }

    pub(crate) async fn register_model(
        &self,
        t: ModelType,
        json: &str,
        persist: bool,
    ) -> Result<()> {
        let body = json!({"model": json, "persist": persist});
        self.send(
            self.http
                .post(self.url(&format!("/v1/model_registrations/{}", seg(t.as_str()))))
                .json(&body),
        )
        .await
        .map(drop)
    }

    pub(crate) async fn query_engines(
        &self,
        name: &str,
        t: Option<ModelType>,
    ) -> Result<EngineOptions> {
        let path = match t {
            Some(t) => format!("/v1/engines/{}/{}", seg(t.as_str()), seg(name)),
            None => format!("/v1/engines/{}", seg(name)),
        };
        self.get_as(&path).await
    }

    pub(crate) async fn list_cached_models(&self, name: Option<&str>) -> Result<Vec<CacheEntry>> {
        let mut request = self.http.get(self.url("/v1/cache/models"));
        if let Some(n) = name {
            request = request.query(&[("model_name", n)]);
        }
        let v = self.send(request).await?;
        decode(v["list"].clone())
    }
}

/// The characters escaped in a path segment: controls, space, and everything URL syntax or
/// routers could read as structure (`/`, `?`, `#`, `%`, ...). Letters, digits and `-._~` stay.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded as one URL path segment (a uid or model name in a route).
pub(crate) fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| Error::internal(format!("unexpected answer from the server: {e}")))
}
