//! Output: what shapes a model's text: the chat template (minijinja), the reasoning splitter,
//! tool-call formats and parsers, and grammars for constrained decoding (llguidance).

pub mod constraint;
pub(crate) mod marker;
pub mod reasoning;
mod template;
pub mod tools;

pub use template::{ChatTemplate, TemplateInput};
