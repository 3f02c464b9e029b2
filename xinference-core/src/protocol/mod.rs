//! Wire types shared by the server and the remote client. Serde only, no logic.

pub mod anthropic;
pub mod audio;
pub mod chat;
pub mod image;
pub mod message;
pub mod openai;
pub mod rerank;
pub mod responses;
#[cfg(test)]
pub(crate) mod test_chunks;
pub mod xinference;
