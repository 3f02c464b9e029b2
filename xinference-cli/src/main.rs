//! The `xinference` command: `xinference local` starts the server; every other subcommand
//! talks to a running server (or, for `registrations` without an endpoint, reads the registry).

mod commands;
mod table;

use clap::{Parser, Subcommand};

/// Default server address when neither `-e` nor `XINFERENCE_ENDPOINT` is given.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9997";

#[derive(Parser)]
#[command(
    name = "xinference",
    version,
    about = "Serve and manage LLM, embedding, rerank, image and audio models"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: commands::ServerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local server (the default when no subcommand is given).
    Local(commands::ServerArgs),
    /// List model registrations of a type.
    Registrations(commands::RegistrationsArgs),
    /// Launch a model on a running server.
    Launch(commands::LaunchArgs),
    /// List the running models.
    List(commands::EndpointArgs),
    /// Terminate a running model.
    Terminate(commands::TerminateArgs),
    /// Register a custom model from a JSON file.
    Register(commands::RegisterArgs),
    /// Unregister a custom model.
    Unregister(commands::UnregisterArgs),
    /// Show which engines can run a model.
    Engine(commands::EngineArgs),
    /// List the models in the local cache.
    Cached(commands::CachedArgs),
    /// Log in to a server with auth on (the token is saved for the later commands).
    Login(commands::LoginArgs),
    /// Create, list or revoke API keys on a server with auth on.
    Keys(commands::KeysArgs),
    /// Chat with a running LLM, interactively (an empty line exits).
    Chat(commands::ReplArgs),
    /// Continue prompts with a running LLM, interactively (an empty line exits).
    Generate(commands::ReplArgs),
}

/// Xinference spells some short options with two letters (`-en`, `-ak`); clap takes one.
fn normalise_args() -> Vec<String> {
    std::env::args()
        .map(|a| match a.as_str() {
            "-en" => "--model-engine".to_owned(),
            "-ak" => "--api-key".to_owned(),
            _ => a,
        })
        .collect()
}

fn main() {
    let cli = Cli::parse_from(normalise_args());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => commands::serve(cli.server).await,
            Some(Command::Local(args)) => commands::serve(args).await,
            Some(Command::Registrations(args)) => commands::registrations(args).await,
            Some(Command::Launch(args)) => commands::launch(args).await,
            Some(Command::List(args)) => commands::list(args).await,
            Some(Command::Terminate(args)) => commands::terminate(args).await,
            Some(Command::Register(args)) => commands::register(args).await,
            Some(Command::Unregister(args)) => commands::unregister(args).await,
            Some(Command::Engine(args)) => commands::engine(args).await,
            Some(Command::Cached(args)) => commands::cached(args).await,
            Some(Command::Login(args)) => commands::login(args).await,
            Some(Command::Keys(args)) => commands::keys(args).await,
            Some(Command::Chat(args)) => commands::repl(args, true).await,
            Some(Command::Generate(args)) => commands::repl(args, false).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
