//! `login` and `keys`: access control from the command line.
//!
//! `login` saves the access token as Xinference's CLI does, in
//! `$XINFERENCE_HOME/auth/<sha256(endpoint)>` (mode 0600); the other commands send it when no
//! `--api-key` is given.

use super::EndpointArgs;
use crate::table::{self, Cell};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use xinference_core::client::RemoteClient;

/// Options of `login`.
#[derive(Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    username: String,
    /// Password (default: $XINFERENCE_PASSWORD, else one line read from stdin).
    #[arg(short, long, env = "XINFERENCE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Options of `keys`.
#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
}

/// What `keys` does.
#[derive(Subcommand)]
enum KeysAction {
    /// Create an API key (printed once; only its hash is stored).
    Create {
        /// A label for the key.
        #[arg(short, long)]
        name: Option<String>,
        /// A scope the key may use (repeat; default: models:list and models:read).
        #[arg(short, long = "scope")]
        scopes: Vec<String>,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// List the API keys (all for an admin, else your own).
    List {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Revoke an API key by its id.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
}

/// Where the token saved by `login` for `endpoint` lives.
pub fn token_file(endpoint: &str) -> PathBuf {
    xinference_core::runtime::default_home().join("auth").join(
        xinference_core::auth::secret::key_digest(endpoint.trim_end_matches('/')),
    )
}

/// The token saved by `login` for `endpoint`, if any.
pub fn saved_token(endpoint: &str) -> Option<String> {
    std::fs::read_to_string(token_file(endpoint))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Logs in and saves the access token for the endpoint.
pub async fn login(args: LoginArgs) -> Result<()> {
    let password = match args.password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let endpoint = args.endpoint.endpoint();
    let client = RemoteClient::new(&endpoint, None)?;
    let answer: Value = client
        .post_as(
            "/token",
            &json!({"username": args.username, "password": password}),
        )
        .await?;
    let token = answer["access_token"]
        .as_str()
        .context("the server answered without an access_token")?;
    let path = token_file(&endpoint);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(&path, token)?;
    println!("Logged in to {endpoint} as {}", args.username);
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Creates, lists or revokes API keys.
pub async fn keys(args: KeysArgs) -> Result<()> {
    match args.action {
        KeysAction::Create {
            name,
            scopes,
            endpoint,
        } => {
            let client = endpoint.remote()?;
            let mut body = json!({"name": name});
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            let key: Value = client.post_as("/v1/admin/keys", &body).await?;
            println!("id: {}", key["id"].as_str().unwrap_or("-"));
            println!("scopes: {}", key["scopes"]);
            println!("key: {}", key["key"].as_str().unwrap_or("-"));
            println!("Keep the key now: it is not shown again.");
        }
        KeysAction::List { endpoint } => {
            let client = endpoint.remote()?;
            let list: Value = client.get_as("/v1/admin/keys").await?;
            let rows: Vec<Vec<Cell>> = list["data"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|k| {
                    let text = |f: &str| Cell::text(k[f].as_str().unwrap_or("-"));
                    let scopes: Vec<String> = k["scopes"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect();
                    vec![
                        text("id"),
                        text("prefix"),
                        text("name"),
                        text("owner"),
                        Cell::list(&scopes),
                        Cell::boolean(k["revoked"].as_bool().unwrap_or(false)),
                        text("source"),
                    ]
                })
                .collect();
            let headers = [
                "id", "prefix", "name", "owner", "scopes", "revoked", "source",
            ];
            println!("{}", table::pretty(&headers, &rows));
        }
        KeysAction::Revoke { id, endpoint } => {
            let client = endpoint.remote()?;
            client.delete(&format!("/v1/admin/keys/{id}")).await?;
            println!("Revoked {id}");
        }
    }
    Ok(())
}
