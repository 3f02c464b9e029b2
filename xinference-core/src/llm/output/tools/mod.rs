//! Tool calling: the tool-call formats models are trained on, parsing a model's answer into
//! OpenAI tool calls (whole or streamed), and grammars that force a valid call.
//!
//! The format is a property of the model (its registry `tool_parser`, else its chat template),
//! never guessed per request.

mod deepseek;
mod format;
mod gemma;
mod parse;
mod prompt;
mod stream;
mod xml;

pub use format::ToolFormat;
pub use parse::{parse_tool_output, ParsedCall, ParsedOutput};
pub use prompt::{tools_system_prompt, ToolSet};
pub use stream::{ToolStreamEvent, ToolStreamParser};
