//! One module per group of subcommands. They print with the typed results of `xinference-core`.

mod auth;
mod cached;
mod engine;
mod models;
mod registrations;
mod repl;
mod server;

pub use auth::{keys, login, KeysArgs, LoginArgs};
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
    /// API key (or access token) sent as a bearer token (`-ak` is accepted too; default: the
    /// token saved by `xinference login` for this endpoint).
    #[arg(long, env = "XINFERENCE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl EndpointArgs {
    /// The endpoint: `-e`, else $XINFERENCE_ENDPOINT, else the default.
    pub(crate) fn endpoint(&self) -> String {
        self.endpoint
            .as_deref()
            .unwrap_or(crate::DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_owned()
    }

    /// The credential: `--api-key`, else the token `login` saved for the endpoint.
    fn credential(&self) -> Option<String> {
        self.api_key
            .clone()
            .or_else(|| auth::saved_token(&self.endpoint()))
    }

    pub(crate) fn client(&self) -> Result<Client> {
        Ok(Client::remote(&self.endpoint(), self.credential())?)
    }

    pub(crate) fn remote(&self) -> Result<xinference_core::client::RemoteClient> {
        Ok(xinference_core::client::RemoteClient::new(
            &self.endpoint(),
            self.credential(),
        )?)
    }
}
