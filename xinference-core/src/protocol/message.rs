//! Typed chat messages: build a conversation without writing JSON by hand. A [`ChatMessage`]
//! serialises to exactly the OpenAI message object the server reads (`{"role": "user",
//! "content": "..."}`), so it goes wherever a message `Value` went.
//!
//! ```
//! use xinference_core::protocol::message::{ChatMessage, ContentPart};
//! let messages = vec![
//!     ChatMessage::system("You are terse."),
//!     ChatMessage::user("What is 2 + 2?"),
//!     ChatMessage::user_parts(vec![ContentPart::text("Describe"), ContentPart::image_url("https://x/cat.png")]),
//! ];
//! assert_eq!(
//!     serde_json::to_value(&messages[1]).unwrap(),
//!     serde_json::json!({"role": "user", "content": "What is 2 + 2?"})
//! );
//! ```

use super::chat::ToolCall;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message of a conversation, by role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    /// Instructions for the model.
    System {
        /// The instructions.
        content: MessageContent,
        /// An optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// What the user says.
    User {
        /// Text, or text and image parts.
        content: MessageContent,
        /// An optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// An earlier answer of the model: text, tool calls, or both.
    Assistant {
        /// The answer text (`null` when the answer is only tool calls).
        #[serde(default)]
        content: Option<MessageContent>,
        /// The model's reasoning, when it is kept in the history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasoning_content: Option<String>,
        /// The tools the model called.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
    },
    /// The result of a tool call.
    Tool {
        /// The tool's output.
        content: MessageContent,
        /// The `id` of the [`ToolCall`] this answers.
        tool_call_id: String,
    },
}

/// A message's content: one string, or a list of parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Text and image parts, in order.
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// A piece of text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by URL or `data:` URI.
    ImageUrl {
        /// Where the image is.
        image_url: ImageUrl,
    },
}

/// The image of an [`ContentPart::ImageUrl`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }
    /// An image part.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: url.into(),
                detail: None,
            },
        }
    }
}

impl From<String> for MessageContent {
    fn from(s: String) -> Self {
        MessageContent::Text(s)
    }
}

impl From<&str> for MessageContent {
    fn from(s: &str) -> Self {
        MessageContent::Text(s.to_owned())
    }
}

impl From<Vec<ContentPart>> for MessageContent {
    fn from(parts: Vec<ContentPart>) -> Self {
        MessageContent::Parts(parts)
    }
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<MessageContent>) -> Self {
        ChatMessage::System {
            content: content.into(),
            name: None,
        }
    }
    /// A user message of text.
    pub fn user(content: impl Into<MessageContent>) -> Self {
        ChatMessage::User {
            content: content.into(),
            name: None,
        }
    }
    /// A user message of several parts (text and images).
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        Self::user(MessageContent::Parts(parts))
    }
    /// An earlier text answer of the model.
    pub fn assistant(content: impl Into<MessageContent>) -> Self {
        ChatMessage::Assistant {
            content: Some(content.into()),
            reasoning_content: None,
            tool_calls: None,
        }
    }
    /// An earlier answer of the model that called tools (as it came back in
    /// `choices[0].message.tool_calls`).
    pub fn assistant_tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        ChatMessage::Assistant {
            content: None,
            reasoning_content: None,
            tool_calls: Some(tool_calls),
        }
    }
    /// The output of the tool call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<MessageContent>) -> Self {
        ChatMessage::Tool {
            content: content.into(),
            tool_call_id: tool_call_id.into(),
        }
    }
    /// The role as it is spelled on the wire.
    pub fn role(&self) -> &'static str {
        match self {
            ChatMessage::System { .. } => "system",
            ChatMessage::User { .. } => "user",
            ChatMessage::Assistant { .. } => "assistant",
            ChatMessage::Tool { .. } => "tool",
        }
    }
}

impl From<ChatMessage> for Value {
    fn from(message: ChatMessage) -> Value {
        serde_json::to_value(message).expect("a chat message is plain JSON")
    }
}

impl From<&ChatMessage> for Value {
    fn from(message: &ChatMessage) -> Value {
        serde_json::to_value(message).expect("a chat message is plain JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chat::FunctionCall;
    use serde_json::json;

    #[test]
    fn messages_serialise_to_the_openai_wire_json() {
        let call = ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
        };
        let cases = [
            (
                ChatMessage::system("Be brief."),
                json!({"role": "system", "content": "Be brief."}),
            ),
            (
                ChatMessage::user("Hi"),
                json!({"role": "user", "content": "Hi"}),
            ),
            (
                ChatMessage::user_parts(vec![
                    ContentPart::text("What is this?"),
                    ContentPart::image_url("data:image/png;base64,AA=="),
                ]),
                json!({"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ]}),
            ),
            (
                ChatMessage::assistant("Hello."),
                json!({"role": "assistant", "content": "Hello."}),
            ),
            (
                ChatMessage::assistant_tool_calls(vec![call]),
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                ]}),
            ),
            (
                ChatMessage::tool("call_1", "18 degrees"),
                json!({"role": "tool", "content": "18 degrees", "tool_call_id": "call_1"}),
            ),
        ];
        for (message, wire) in cases {
            assert_eq!(Value::from(&message), wire);
            let back: ChatMessage = serde_json::from_value(wire).unwrap();
            assert_eq!(back, message);
        }
    }

    #[test]
    fn an_assistant_message_without_content_reads_back() {
        let m: ChatMessage = serde_json::from_value(json!({"role": "assistant"})).unwrap();
        assert_eq!(
            m,
            ChatMessage::Assistant {
                content: None,
                reasoning_content: None,
                tool_calls: None
            }
        );
        assert!(serde_json::from_value::<ChatMessage>(json!({"role": "robot"})).is_err());
    }
}
