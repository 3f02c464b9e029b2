//! One module per group of subcommands. They print with the typed results of `xinference-core`.

mod cached;
mod engine;
mod models;
mod registrations;
mod repl;
mod server;

pub use cached::{cached, CachedArgs};
pub use engine::{engine, EngineArgs};
pub use models::{launch, list, terminate, LaunchArgs, TerminateArgs};
pub use registrations::{
    register, registrations, unregister, RegisterArgs, RegistrationsArgs, UnregisterArgs,
};
pub use repl::{repl, ReplArgs};
pub use server::{serve, ServerArgs};

use anyhow::Result;
use clap::Args;
use xinference_core::Client;

/// The server to talk to.
#[derive(Args, Clone)]
pub struct EndpointArgs {
    /// Server endpoint (default: $XINFERENCE_ENDPOINT, else http://127.0.0.1:9997).
    #[arg(short, long, env = "XINFERENCE_ENDPOINT")]
    endpoint: Option<String>,
    /// API key sent as a bearer token (`-ak` is accepted too).
    #[arg(long)]
    api_key: Option<String>,
}

impl EndpointArgs {
    pub(crate) fn client(&self) -> Result<Client> {
        let endpoint = self.endpoint.as_deref().unwrap_or(crate::DEFAULT_ENDPOINT);
        Ok(Client::remote(endpoint, self.api_key.clone())?)
    }
}
