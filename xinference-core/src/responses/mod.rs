//! The OpenAI Responses API as a translation over the chat capability, with stored responses.
//!
//! [`request`] turns a [`ResponsesRequest`] (after the stored conversation its
//! `previous_response_id` names) into a chat request; [`output`] turns the whole chat answer
//! into a [`Response`]; [`events`] turns streamed chat chunks into numbered Responses events.
//! Those three are pure and tested without a model; [`Runtime::responses`] strings them
//! together and keeps each response with `store` (the default) in the [`store`] database.

pub mod events;
pub mod output;
pub mod request;
pub mod store;

pub use events::EventTranslator;
pub use store::{ResponseStore, StoreLimits, StoredResponse};

use crate::protocol::responses::{
    DeletedResponse, ErrorBody, ErrorObject, InputItem, InputItemList, Response,
    ResponseStreamEvent, ResponsesRequest,
};
use crate::runtime::{ChatOutput, ChunkStream};
use crate::{Error, ErrorKind, Result, Runtime};
use futures::stream::{self, StreamExt};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// A Responses answer: whole, or a stream of events.
pub enum ResponsesOutput {
    /// `stream: false`.
    Whole(Box<Response>),
    /// `stream: true`: events in order, ending with `response.completed`,
    /// `response.incomplete` or `response.failed`.
    Stream(ChunkStream<ResponseStreamEvent>),
}

/// The store of a runtime, opened on first use (`$XINFERENCE_HOME/responses.sqlite3`).
#[derive(Clone, Default)]
pub(crate) struct StoreCell(Arc<OnceLock<ResponseStore>>);

/// The store of one runtime and where it lives; every call runs on a blocking thread.
#[derive(Clone)]
struct StoreHandle {
    cell: StoreCell,
    path: PathBuf,
}

impl StoreHandle {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ResponseStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = match this.cell.0.get() {
                Some(s) => s,
                None => {
                    let opened = ResponseStore::open(&this.path, StoreLimits::from_env())?;
                    this.cell.0.get_or_init(|| opened)
                }
            };
            f(store)
        })
        .await
        .map_err(|e| Error::internal(format!("response store task failed: {e}")))?
    }

    async fn get(&self, id: &str) -> Result<StoredResponse> {
        let key = id.to_owned();
        self.run(move |s| s.get(&key))
            .await?
            .ok_or_else(|| Error::not_found(format!("Response with id '{id}' not found.")))
    }
}

/// What a stored response needs besides the response.
struct Saver {
    store: StoreHandle,
    input_items: Vec<InputItem>,
    conversation: Vec<InputItem>,
}

impl Saver {
    async fn save(self, response: Response) -> Result<()> {
        let stored = StoredResponse {
            response,
            input_items: self.input_items,
            conversation: self.conversation,
        };
        self.store.run(move |s| s.put(&stored)).await
    }
}

impl Runtime {
    fn response_store(&self) -> StoreHandle {
        StoreHandle {
            cell: self.response_store.clone(),
            path: self.config().home.join("responses.sqlite3"),
        }
    }

    /// `POST /v1/responses`, served by [`Runtime::chat`]. With `previous_response_id` the
    /// stored conversation comes first (404 when it is not stored); with `store` (the default)
    /// the finished response is stored.
    pub async fn responses(&self, request: ResponsesRequest) -> Result<ResponsesOutput> {
        let items = request::input_items(request.input.as_ref())?;
        let store = self.response_store();
        let mut conversation = match &request.previous_response_id {
            Some(id) => {
                let previous = store.get(id).await.map_err(|e| match e.kind() {
                    ErrorKind::NotFound => {
                        Error::not_found(format!("Previous response with id '{id}' not found."))
                    }
                    _ => e,
                })?;
                let mut history = previous.conversation;
                history.extend(request::output_as_input(&previous.response.output));
                history
            }
            None => Vec::new(),
        };
        conversation.extend(items.iter().cloned());
        let chat = request::to_chat_request(&request, &conversation)?;
        let shell = output::shell(&request, request::new_id("resp"), chat.model.clone());
        let saver = shell.store.then_some(Saver {
            store,
            input_items: items,
            conversation,
        });
        Ok(match self.chat(chat).await? {
            ChatOutput::Whole(completion) => {
                let response = output::to_response(shell, completion);
                if let Some(saver) = saver {
                    saver.save(response.clone()).await?;
                }
                ResponsesOutput::Whole(Box::new(response))
            }
            ChatOutput::Stream(chunks) => {
                ResponsesOutput::Stream(translate_stream(chunks, shell, saver))
            }
        })
    }

    /// `GET /v1/responses/{id}` (404 when not stored).
    pub async fn get_response(&self, id: &str) -> Result<Response> {
        Ok(self.response_store().get(id).await?.response)
    }

    /// `GET /v1/responses/{id}/input_items`: the request's input items, `limit` (1-100,
    /// default 20) at a time, newest first unless `order` is `asc`, after the item `after`.
    pub async fn response_input_items(
        &self,
        id: &str,
        limit: Option<usize>,
        order: Option<&str>,
        after: Option<&str>,
    ) -> Result<InputItemList> {
        let limit = limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(Error::bad_request("limit must be between 1 and 100"));
        }
        let mut items = self.response_store().get(id).await?.input_items;
        match order {
            None | Some("desc") => items.reverse(),
            Some("asc") => {}
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "order must be asc or desc, not `{other}`"
                )))
            }
        }
        if let Some(after) = after {
            let at = items
                .iter()
                .position(|i| item_id(i) == Some(after))
                .ok_or_else(|| {
                    Error::bad_request(format!("after: no input item `{after}` in {id}"))
                })?;
            items.drain(..=at);
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(InputItemList {
            object: "list".into(),
            first_id: items.first().and_then(item_id).map(str::to_owned),
            last_id: items.last().and_then(item_id).map(str::to_owned),
            has_more,
            data: items,
        })
    }

    /// `DELETE /v1/responses/{id}` (404 when not stored).
    pub async fn delete_response(&self, id: &str) -> Result<DeletedResponse> {
        let key = id.to_owned();
        if !self.response_store().run(move |s| s.delete(&key)).await? {
            return Err(Error::not_found(format!(
                "Response with id '{id}' not found."
            )));
        }
        Ok(DeletedResponse {
            id: id.to_owned(),
            object: "response.deleted".into(),
            deleted: true,
        })
    }
}

fn item_id(item: &InputItem) -> Option<&str> {
    match item {
        InputItem::Message { id, .. }
        | InputItem::FunctionCall { id, .. }
        | InputItem::FunctionCallOutput { id, .. }
        | InputItem::Reasoning { id, .. } => id.as_deref(),
    }
}

/// The events for a stream of chat chunks: [`EventTranslator`] over each chunk; at the end
/// the finished response is stored (when `saver` is given) before its last event is sent, so
/// a client that reads `response.completed` can fetch it at once. A failure ends the stream
/// with `response.failed`.
fn translate_stream(
    chunks: ChunkStream<crate::protocol::chat::ChatCompletionChunk>,
    shell: Response,
    saver: Option<Saver>,
) -> ChunkStream<ResponseStreamEvent> {
    let mut translator = EventTranslator::new(shell);
    let pending: VecDeque<ResponseStreamEvent> = translator.start().into();
    stream::unfold(
        (chunks, translator, pending, saver, false),
        |(mut chunks, mut t, mut pending, mut saver, mut done)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((Ok(event), (chunks, t, pending, saver, done)));
                }
                if done {
                    return None;
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => pending.extend(t.chunk(&chunk)),
                    Some(Err(e)) => {
                        pending.extend(t.fail(&e));
                        done = true;
                    }
                    None => {
                        let (events, response) = t.finish();
                        if let Some(saver) = saver.take() {
                            if let Err(e) = saver.save(response).await {
                                tracing::error!("storing a streamed response failed: {e}");
                            }
                        }
                        pending.extend(events);
                        done = true;
                    }
                }
            }
        },
    )
    .boxed()
}

/// The HTTP status, OpenAI error `type` and `code` for a failure of `kind`. The status is
/// [`ErrorKind::http_status`]'s, except that a request the model cannot serve as asked (422) is
/// a 400, as OpenAI answers it.
pub fn error_type(kind: ErrorKind) -> (u16, &'static str, Option<&'static str>) {
    let (kind_name, code) = match kind {
        ErrorKind::BadRequest | ErrorKind::Unprocessable => {
            return (
                ErrorKind::BadRequest.http_status(),
                "invalid_request_error",
                None,
            )
        }
        ErrorKind::Unauthorized => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::Forbidden => ("invalid_request_error", None),
        ErrorKind::NotFound => ("invalid_request_error", Some("not_found")),
        ErrorKind::Conflict => ("invalid_request_error", Some("conflict")),
        ErrorKind::PayloadTooLarge => ("invalid_request_error", Some("request_too_large")),
        ErrorKind::Overloaded => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::NotImplemented => ("invalid_request_error", Some("not_implemented")),
        ErrorKind::NotReady => ("server_error", Some("model_not_ready")),
        ErrorKind::Cancelled => ("server_error", Some("cancelled")),
        ErrorKind::Internal => ("server_error", Some("server_error")),
    };
    (kind.http_status(), kind_name, code)
}

/// OpenAI's error body for `error`.
pub fn error_body(error: &Error) -> ErrorBody {
    let (_, kind, code) = error_type(error.kind());
    ErrorBody {
        error: ErrorObject {
            message: error.message().into(),
            kind: kind.into(),
            param: None,
            code: code.map(str::to_owned),
        },
    }
}
