//! Whether a model's compute is still trusted. A panic inside a model's compute leaves its
//! state (KV caches, scratch buffers) unknown, so the replica that panicked marks itself
//! failed: the request that hit the panic gets an error saying so, the model is reported as
//! ERROR, and later requests are refused with a 503 until it is terminated and launched again.

use std::sync::OnceLock;

/// The failure of one replica's compute thread, set once by the first panic.
#[derive(Debug, Default)]
pub struct ModelHealth {
    failure: OnceLock<String>,
}

impl ModelHealth {
    /// Records that the compute of replica `name` panicked with `panic`, and returns the
    /// message the request that hit it is answered with.
    pub fn fail(&self, name: &str, panic: &str) -> String {
        let _ = self.failure.set(panic.to_owned());
        format!(
            "Model {name} failed: its computation panicked ({panic}). Terminate the model and \
             launch it again."
        )
    }

    /// What the panic said, once the replica has failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }
}

/// The debugging hook `XINFERENCE_DEBUG_PANIC_ON`: when this variable is set to a non-empty
/// text, an LLM request whose prompt contains it panics on the model's worker thread (to
/// check, end to end, how a panicking model is reported). Unset in production.
pub(crate) fn panic_if_marked(prompt: impl FnOnce() -> Option<String>) {
    let Some(marker) = std::env::var("XINFERENCE_DEBUG_PANIC_ON")
        .ok()
        .filter(|m| !m.is_empty())
    else {
        return;
    };
    if prompt().is_some_and(|text| text.contains(&marker)) {
        panic!("XINFERENCE_DEBUG_PANIC_ON: the prompt contains the debug marker");
    }
}
