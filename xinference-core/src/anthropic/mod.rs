//! The Anthropic Messages API as a translation over the chat capability.
//!
//! A [`MessagesRequest`] becomes an OpenAI-shaped [`ChatCompletionRequest`](crate::ChatCompletionRequest)
//! ([`to_chat_request`]); the answer comes back through [`to_message`] (whole) or an
//! [`EventTranslator`] (streamed). All three are pure, so they are tested without a model;
//! [`Runtime::messages`] (this module, the only part that touches the runtime) strings them
//! together.
//!
//! Choices worth knowing:
//! - `tool_use` blocks of a stream are sent whole, after the text, in the order of their
//!   OpenAI index: OpenAI tool-call fragments may interleave, and an Anthropic block must be
//!   complete before the next one starts (Xinference does the same).
//! - `reasoning_content` becomes a `thinking` block with an empty `signature`: this server
//!   does not sign reasoning. `thinking` blocks sent back in a conversation are dropped.
//! - A tool call whose arguments are not a JSON object gets `input: {}` (as Xinference).
//! - `disable_parallel_tool_use` becomes OpenAI's `parallel_tool_calls: false`.
//! - `stop_reason` is `stop_sequence` only for a string of the request's `stop_sequences`; a
//!   model's own stop strings end the turn (`end_turn`).

mod events;
mod request;
mod response;

pub use events::{translate_stream, EventTranslator};
pub use request::to_chat_request;
pub use response::{error_response, error_status, stop_reason, to_message, tool_input};

use crate::protocol::anthropic::{Message, MessagesRequest, StreamEvent};
use crate::runtime::{ChatOutput, ChunkStream};
use crate::{Result, Runtime};

/// A Messages answer: whole, or a stream of events.
pub enum MessagesOutput {
    /// `stream: false`.
    Whole(Message),
    /// `stream: true`: events in order; an `Err` item is a failure after the stream started
    /// (send it as an `error` event, see [`error_response`]).
    Stream(ChunkStream<StreamEvent>),
}

impl Runtime {
    /// `POST /v1/messages`: the Anthropic Messages API, served by [`Runtime::chat`].
    pub async fn messages(&self, request: MessagesRequest) -> Result<MessagesOutput> {
        let stop_sequences = request.stop_sequences.clone().unwrap_or_default();
        let model = request.model.clone();
        let chat = to_chat_request(request)?;
        Ok(match self.chat(chat).await? {
            ChatOutput::Whole(completion) => {
                MessagesOutput::Whole(to_message(completion, &stop_sequences))
            }
            ChatOutput::Stream(chunks) => {
                MessagesOutput::Stream(translate_stream(chunks, model, stop_sequences))
            }
        })
    }
}
