//! One function per subcommand. They print with the typed results of `xinference-core`.

use crate::table::{self, Cell};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use xinference_core::registry::normalise_size;
use xinference_core::runtime::default_home;
use xinference_core::{
    Client, InstanceStatus, LaunchRequest, ModelType, Registry, Runtime, RuntimeConfig,
};

/// Options of `xinference local`.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(short, long, default_value_t = 9997)]
    port: u16,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Browser origins whose pages may call the API (comma-separated, `*` for any; default:
    /// none, and cross-origin requests that change state are refused).
    #[arg(long, env = "XINFERENCE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
}

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
    fn client(&self) -> Result<Client> {
        let endpoint = self.endpoint.as_deref().unwrap_or(crate::DEFAULT_ENDPOINT);
        Ok(Client::remote(endpoint, self.api_key.clone())?)
    }
}

/// Starts the server and serves until Ctrl-C.
pub async fn serve(args: ServerArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {}", args.log_level))?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let mut config = RuntimeConfig::from_env();
    config.allowed_origins =
        xinference_core::runtime::parse_origins(&args.allowed_origins.join(","));
    let runtime = Arc::new(Runtime::new(config)?);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    xinference_server::serve(runtime, listener, shutdown).await?;
    Ok(())
}

/// Options of `registrations`.
#[derive(Args)]
pub struct RegistrationsArgs {
    /// Model type: LLM, embedding, rerank, image, audio, flexible.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Prints Xinference's registrations table. Without an endpoint, reads the registry in process.
pub async fn registrations(args: RegistrationsArgs) -> Result<()> {
    let t: ModelType = args.model_type.parse()?;
    let families: Vec<Value> = match &args.endpoint.endpoint {
        Some(_) => {
            let client = args.endpoint.client()?;
            let mut out = Vec::new();
            for r in client.list_model_registrations(t).await? {
                let mut family = client.get_model_registration(t, &r.model_name).await?;
                family["is_builtin"] = Value::Bool(r.is_builtin);
                out.push(family);
            }
            out
        }
        None => {
            let registry = Registry::open(&default_home())?;
            registry
                .families(t)
                .into_iter()
                .map(|f| {
                    let mut j = f.json;
                    j["is_builtin"] = Value::Bool(f.is_builtin);
                    j
                })
                .collect()
        }
    };
    let strings = |v: &Value, key: &str| -> Vec<String> {
        match &v[key] {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    };
    let builtin = |f: &Value| Cell::boolean(f["is_builtin"].as_bool().unwrap_or(false));
    let (headers, rows): (Vec<&str>, Vec<Vec<Cell>>) = match t {
        ModelType::Llm => (
            vec!["Type", "Name", "Language", "Ability", "Is-built-in"],
            families
                .iter()
                .map(|f| {
                    vec![
                        Cell::text("LLM"),
                        Cell::text(text(&f["model_name"])),
                        Cell::list(&strings(f, "model_lang")),
                        Cell::list(&strings(f, "model_ability")),
                        builtin(f),
                    ]
                })
                .collect(),
        ),
        ModelType::Embedding => (
            vec!["Type", "Name", "Language", "Dimensions", "Is-built-in"],
            families
                .iter()
                .map(|f| {
                    vec![
                        Cell::text("embedding"),
                        Cell::text(text(&f["model_name"])),
                        Cell::list(&strings(f, "language")),
                        Cell::text(text(&f["dimensions"])),
                        builtin(f),
                    ]
                })
                .collect(),
        ),
        ModelType::Rerank => (
            vec!["Type", "Name", "Language", "Is-built-in"],
            families
                .iter()
                .map(|f| {
                    vec![
                        Cell::text("rerank"),
                        Cell::text(text(&f["model_name"])),
                        Cell::list(&strings(f, "language")),
                        builtin(f),
                    ]
                })
                .collect(),
        ),
        ModelType::Image => (
            vec!["Type", "Name", "Family", "Is-built-in"],
            families
                .iter()
                .map(|f| {
                    vec![
                        Cell::text("image"),
                        Cell::text(text(&f["model_name"])),
                        Cell::text(text(&f["model_family"])),
                        builtin(f),
                    ]
                })
                .collect(),
        ),
        ModelType::Audio => (
            vec!["Type", "Name", "Family", "Multilingual", "Is-built-in"],
            families
                .iter()
                .map(|f| {
                    let multilingual = f["multilingual"].as_bool().unwrap_or(false);
                    vec![
                        Cell::text("audio"),
                        Cell::text(text(&f["model_name"])),
                        Cell::text(text(&f["model_family"])),
                        Cell::boolean(multilingual),
                        builtin(f),
                    ]
                })
                .collect(),
        ),
        ModelType::Flexible => (
            vec!["Type", "Name", "Is-built-in"],
            families
                .iter()
                .map(|f| {
                    vec![
                        Cell::text("flexible"),
                        Cell::text(text(&f["model_name"])),
                        builtin(f),
                    ]
                })
                .collect(),
        ),
        ModelType::Video => bail!("model type video is not supported by `registrations`"),
    };
    println!("{}", table::simple(&headers, &rows));
    Ok(())
}

/// Options of `launch`.
#[derive(Args)]
pub struct LaunchArgs {
    /// Registry name of the model.
    #[arg(short = 'n', long)]
    model_name: String,
    /// Model type.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    /// Engine (required for LLMs; `-en` is accepted).
    #[arg(long)]
    model_engine: Option<String>,
    /// Uid to serve the model under.
    #[arg(short = 'u', long)]
    model_uid: Option<String>,
    /// Size in billions.
    #[arg(short = 's', long = "size-in-billions")]
    size_in_billions: Option<String>,
    /// Format (pytorch, ggufv2).
    #[arg(short = 'f', long)]
    model_format: Option<String>,
    /// Quantization.
    #[arg(short = 'q', long)]
    quantization: Option<String>,
    /// Replicas.
    #[arg(short = 'r', long, default_value_t = 1)]
    replica: usize,
    /// Local model file or folder.
    #[arg(long)]
    model_path: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Launches without waiting, shows a progress bar while downloading/loading, prints the uid.
pub async fn launch(args: LaunchArgs) -> Result<()> {
    let client = args.endpoint.client()?;
    let mut request = LaunchRequest::new(&args.model_name).replica(args.replica);
    request.model_type = Some(args.model_type.clone());
    request.model_engine = args.model_engine.clone();
    request.model_uid = args.model_uid.clone();
    request.model_size_in_billions = args.size_in_billions.clone().map(Value::String);
    request.model_format = args.model_format.clone();
    request.quantization = args.quantization.clone();
    request.model_path = args.model_path.clone();
    let uid = client.launch_model_with(request, false).await?;
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{elapsed_precise}] [{wide_bar}] {percent:>3}%")
            .expect("valid template")
            .progress_chars("=> "),
    );
    loop {
        let info = client.instance_info(None, Some(&uid)).await?;
        let Some(info) = info.into_iter().next() else {
            bar.abandon();
            bail!("model {uid} disappeared while launching");
        };
        if let Ok(p) = client.launch_progress(&uid).await {
            bar.set_position((p.progress * 1000.0) as u64);
            bar.set_message(format!("{:?}", p.stage).to_lowercase());
        }
        match info.status {
            InstanceStatus::Ready => {
                bar.finish_and_clear();
                break;
            }
            InstanceStatus::Error => {
                bar.abandon();
                bail!(
                    "{}",
                    info.error.unwrap_or_else(|| "launch failed".to_owned())
                );
            }
            InstanceStatus::Terminated | InstanceStatus::Terminating => {
                bar.abandon();
                bail!("launch of {uid} was cancelled");
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("Model uid: {uid}");
    Ok(())
}

/// Prints one table per model type that has running models.
pub async fn list(args: EndpointArgs) -> Result<()> {
    let models = args.client()?.list_models().await?;
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "None".to_owned(),
        Some(other) => other.to_string(),
    };
    let mut printed = false;
    for t in [
        ModelType::Llm,
        ModelType::Embedding,
        ModelType::Rerank,
        ModelType::Image,
        ModelType::Audio,
    ] {
        let of_type: Vec<_> = models
            .iter()
            .filter(|(_, d)| d.get("model_type").and_then(Value::as_str) == Some(t.as_str()))
            .collect();
        if of_type.is_empty() {
            continue;
        }
        let (headers, rows): (Vec<&str>, Vec<Vec<Cell>>) = match t {
            ModelType::Llm => (
                vec![
                    "UID",
                    "Type",
                    "Name",
                    "Format",
                    "Size (in billions)",
                    "Quantization",
                ],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text("LLM"),
                            Cell::text(text(d.get("model_name"))),
                            Cell::text(text(d.get("model_format"))),
                            Cell::text(text(d.get("model_size_in_billions"))),
                            Cell::text(text(d.get("quantization"))),
                        ]
                    })
                    .collect(),
            ),
            ModelType::Embedding => (
                vec!["UID", "Type", "Name", "Dimensions"],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text("embedding"),
                            Cell::text(text(d.get("model_name"))),
                            Cell::text(text(d.get("dimensions"))),
                        ]
                    })
                    .collect(),
            ),
            ModelType::Image => (
                vec!["UID", "Type", "Name", "Controlnet"],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text("image"),
                            Cell::text(text(d.get("model_name"))),
                            Cell::text(text(d.get("controlnet"))),
                        ]
                    })
                    .collect(),
            ),
            _ => (
                vec!["UID", "Type", "Name"],
                of_type
                    .iter()
                    .map(|(uid, d)| {
                        vec![
                            Cell::text(*uid),
                            Cell::text(t.as_str()),
                            Cell::text(text(d.get("model_name"))),
                        ]
                    })
                    .collect(),
            ),
        };
        println!("{}\n", table::simple(&headers, &rows));
        printed = true;
    }
    if !printed {
        println!("No running models.");
    }
    Ok(())
}

/// Options of `terminate`.
#[derive(Args)]
pub struct TerminateArgs {
    /// Uid of the model to stop.
    #[arg(long)]
    model_uid: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Stops a model.
pub async fn terminate(args: TerminateArgs) -> Result<()> {
    args.endpoint
        .client()?
        .terminate_model(&args.model_uid)
        .await?;
    Ok(())
}

/// Options of `register`.
#[derive(Args)]
pub struct RegisterArgs {
    /// Model type.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    /// JSON file with the model family.
    #[arg(short = 'f', long)]
    file: std::path::PathBuf,
    /// Keep the registration across server restarts.
    #[arg(short = 'p', long)]
    persist: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Registers a custom model from a file.
pub async fn register(args: RegisterArgs) -> Result<()> {
    let t: ModelType = args.model_type.parse()?;
    let json = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    serde_json::from_str::<Value>(&json)
        .with_context(|| format!("{} is not valid JSON", args.file.display()))?;
    args.endpoint
        .client()?
        .register_model(t, &json, args.persist)
        .await?;
    Ok(())
}

/// Options of `unregister`.
#[derive(Args)]
pub struct UnregisterArgs {
    /// Model type.
    #[arg(short = 't', long, default_value = "LLM")]
    model_type: String,
    /// Name of the custom model.
    #[arg(short = 'n', long)]
    model_name: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Unregisters a custom model.
pub async fn unregister(args: UnregisterArgs) -> Result<()> {
    let t: ModelType = args.model_type.parse()?;
    args.endpoint
        .client()?
        .unregister_model(t, &args.model_name)
        .await?;
    Ok(())
}

/// Options of `engine`.
#[derive(Args)]
pub struct EngineArgs {
    /// Model name.
    #[arg(short = 'n', long)]
    model_name: String,
    /// Only this engine, matched case-insensitively (`-en` is accepted).
    #[arg(long)]
    model_engine: Option<String>,
    /// Only this format (pytorch, ggufv2, ...).
    #[arg(short = 'f', long)]
    model_format: Option<String>,
    /// Only this size in billions (`0_5` and `0.5` are the same).
    #[arg(short = 's', long)]
    model_size_in_billions: Option<String>,
    /// Only this quantization.
    #[arg(short = 'q', long)]
    quantization: Option<String>,
    /// Model type (default: search every type).
    #[arg(short = 't', long)]
    model_type: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

impl EngineArgs {
    /// The filters given, spelled as options (for messages).
    fn filters(&self) -> Vec<String> {
        [
            ("--model-engine", &self.model_engine),
            ("--model-format", &self.model_format),
            ("--model-size-in-billions", &self.model_size_in_billions),
            ("--quantization", &self.quantization),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.as_ref().map(|v| format!("{flag} {v}")))
        .collect()
    }
}

/// Prints `Name Engine Format Size (in billions) Quantization`, filtered like Xinference's
/// `engine` command, and why the engines that cannot run the model cannot.
pub async fn engine(args: EngineArgs) -> Result<()> {
    let t = args
        .model_type
        .as_deref()
        .map(str::parse::<ModelType>)
        .transpose()?;
    let options = args
        .endpoint
        .client()?
        .query_engines(&args.model_name, t)
        .await?;
    let engines: Vec<&String> = match &args.model_engine {
        None => options.keys().collect(),
        Some(want) => match options.keys().find(|k| k.eq_ignore_ascii_case(want)) {
            Some(k) => vec![k],
            None => {
                let known: Vec<&str> = options.keys().map(String::as_str).collect();
                println!(
                    "Xinference does not support this inference engine \"{want}\" for {}; its engines: {}.",
                    args.model_name,
                    known.join(", ")
                );
                return Ok(());
            }
        },
    };
    let want_size = args.model_size_in_billions.as_deref().map(normalise_size);
    let mut rows = Vec::new();
    let mut unavailable = Vec::new();
    for engine in engines {
        match &options[engine] {
            Value::Array(params) => {
                for p in params {
                    let format = p["model_format"].as_str().unwrap_or("");
                    let size = match &p["model_size_in_billions"] {
                        Value::Null => "None".to_owned(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if args
                        .model_format
                        .as_deref()
                        .is_some_and(|f| !f.eq_ignore_ascii_case(format))
                        || want_size
                            .as_deref()
                            .is_some_and(|s| s != normalise_size(&size))
                    {
                        continue;
                    }
                    for q in p["quantizations"].as_array().cloned().unwrap_or_default() {
                        let q = q.as_str().unwrap_or("");
                        if args
                            .quantization
                            .as_deref()
                            .is_some_and(|want| !want.eq_ignore_ascii_case(q))
                        {
                            continue;
                        }
                        rows.push(vec![
                            Cell::text(&args.model_name),
                            Cell::text(engine.as_str()),
                            Cell::text(format),
                            Cell::text(size.clone()),
                            Cell::text(q),
                        ]);
                    }
                }
            }
            Value::String(reason) => unavailable.push(format!("  {engine}: {reason}")),
            _ => {}
        }
    }
    let mut explained = false;
    if rows.is_empty() {
        let filters = args.filters();
        if filters.is_empty() {
            let end = if unavailable.is_empty() { "." } else { ":" };
            println!(
                "No engine of this build can run {} yet{end}",
                args.model_name
            );
            explained = true;
        } else {
            println!(
                "Xinference does not support your provided params: {} for the model {}.",
                filters.join(", "),
                args.model_name
            );
        }
    } else {
        println!(
            "{}",
            table::simple(
                &[
                    "Name",
                    "Engine",
                    "Format",
                    "Size (in billions)",
                    "Quantization"
                ],
                &rows
            )
        );
    }
    if !unavailable.is_empty() {
        if !rows.is_empty() {
            println!();
        }
        if !explained {
            println!("Engines that cannot run {} yet:", args.model_name);
        }
        for line in unavailable {
            println!("{line}");
        }
    }
    Ok(())
}

/// Options of `cached`.
#[derive(Args)]
pub struct CachedArgs {
    /// Only this model's entries.
    #[arg(short = 'n', long = "model_name", alias = "model-name")]
    model_name: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Prints the cache entries in tabulate's "pretty" format, as Xinference does (a missing value
/// is shown as `-`, and an empty cache as a sentence instead of an empty table).
pub async fn cached(args: CachedArgs) -> Result<()> {
    let entries = args
        .endpoint
        .client()?
        .list_cached_models(args.model_name.as_deref())
        .await?;
    if entries.is_empty() {
        println!("There are no cache files.");
        return Ok(());
    }
    let headers = [
        "model_name",
        "model_size_in_billions",
        "model_format",
        "quantization",
        "model_version",
        "path",
        "real_path",
        "actor_ip_address",
    ];
    let rows: Vec<Vec<Cell>> = entries
        .iter()
        .map(|e| {
            vec![
                Cell::text(&e.model_name),
                Cell::text(
                    e.model_size_in_billions
                        .clone()
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::text(&e.model_format),
                Cell::text(&e.quantization),
                Cell::text(&e.model_version),
                Cell::text(&e.path),
                Cell::text(&e.real_path),
                Cell::text(&e.actor_ip_address),
            ]
        })
        .collect();
    println!("cached_model: ");
    println!("{}", table::pretty(&headers, &rows));
    Ok(())
}

/// Options of `chat` and `generate`.
#[derive(Args)]
pub struct ReplArgs {
    /// Uid of the running model.
    #[arg(long)]
    model_uid: String,
    /// Most tokens per answer.
    #[arg(long = "max_tokens", alias = "max-tokens", default_value_t = 512)]
    max_tokens: u64,
    /// Print the answer as it is generated (`--stream false` waits for the whole answer).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    stream: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// The interactive loop of `chat` (keeps the conversation) and `generate` (one prompt at a time).
pub async fn repl(args: ReplArgs, chat: bool) -> Result<()> {
    use futures::StreamExt;
    use std::io::{BufRead, Write};
    let model = args
        .endpoint
        .client()?
        .get_model(&args.model_uid)
        .await?
        .into_llm()?;
    let mut history: Vec<Value> = Vec::new();
    let stdin = std::io::stdin();
    loop {
        print!("{}", if chat { "User: " } else { "Prompt: " });
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']).to_owned();
        if line.is_empty() {
            break;
        }
        let mut answer = String::new();
        if chat {
            history.push(serde_json::json!({"role": "user", "content": line}));
            print!("Assistant: ");
            let mut request = xinference_core::ChatCompletionRequest::new(history.clone());
            request.generation.max_tokens = Some(args.max_tokens);
            if args.stream {
                let mut chunks = model.chat_stream(request).await?;
                while let Some(chunk) = chunks.next().await {
                    for choice in chunk?.choices {
                        if let Some(text) = choice.delta.content {
                            print!("{text}");
                            std::io::stdout().flush()?;
                            answer.push_str(&text);
                        }
                    }
                }
            } else {
                let done = model.chat(request).await?;
                answer = done
                    .choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.message.content)
                    .unwrap_or_default();
                print!("{answer}");
            }
            history.push(serde_json::json!({"role": "assistant", "content": answer}));
        } else {
            let mut request = xinference_core::CompletionRequest::new(line);
            request.generation.max_tokens = Some(args.max_tokens);
            if args.stream {
                let mut chunks = model.generate_stream(request).await?;
                while let Some(chunk) = chunks.next().await {
                    for choice in chunk?.choices {
                        print!("{}", choice.text);
                        std::io::stdout().flush()?;
                    }
                }
            } else {
                let done = model.generate(request).await?;
                print!(
                    "{}",
                    done.choices
                        .into_iter()
                        .next()
                        .map(|c| c.text)
                        .unwrap_or_default()
                );
            }
        }
        println!();
    }
    Ok(())
}
