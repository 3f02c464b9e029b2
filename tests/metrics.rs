//! `GET /metrics` over real HTTP with real models: the gauges llm-d's endpoint picker reads
//! (`vllm:num_requests_running`/`_waiting`, `vllm:kv_cache_usage_perc`,
//! `vllm:cache_config_info`) follow requests as they run, queue and go away; Xinference's
//! counters and histograms count them; the prefix cache's hits show; and the text passes
//! `promtool check metrics` (Debian's `prometheus` package) but for the colons that the
//! `vllm:` and `xinference:` names carry. Also: `/v1/models` lists only ready models.

mod common;

use common::mock_hub::{MockHub, Throttle};
use common::{minilm_dir, smollm2_gguf, TestServer};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One sample: metric name and its labels, sorted.
type Key = (String, BTreeMap<String, String>);

/// Parses the text format's samples (our label values hold no escaped quotes).
fn parse(text: &str) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("labels end with }");
                let labels = rest
                    .split("\",")
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("k=\"v\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        out.insert((name, labels), value);
    }
    out
}

struct Scrape(BTreeMap<Key, f64>);

impl Scrape {
    /// The value of `name` whose labels include `labels`; panics when there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {:#?}", self.0.keys()))
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.iter().find_map(|((n, l), v)| {
            (n == name
                && labels
                    .iter()
                    .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want)))
            .then_some(*v)
        })
    }

    fn labels_of(&self, name: &str, model: &str) -> BTreeMap<String, String> {
        self.0
            .keys()
            .find(|(n, l)| n == name && l.get("model_name").map(String::as_str) == Some(model))
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| panic!("no {name} for {model}"))
    }
}

async fn scrape_text(server: &TestServer) -> String {
    let r = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    r.text().await.unwrap()
}

async fn scrape(server: &TestServer) -> Scrape {
    Scrape(parse(&scrape_text(server).await))
}

/// Scrapes until `ok` holds (the gauges are read live; requests take a moment to get there).
async fn scrape_until(server: &TestServer, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = scrape(server).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `promtool check metrics` on `text`: the exposition must parse (exit code 1 is a parse
/// error) and the only lint it may report is the colon in names, which vLLM's and
/// Xinference's names carry by design (Prometheus reserves colons for recording rules).
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!(
            "promtool cannot be run ({e}).\nFix: `apt-get install -y prometheus` (Debian's package \
             ships promtool), or `bash .ci/run`."
        )
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(3),
        "promtool could not parse the exposition ({code:?}):\n{report}\n{text}"
    );
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let (name, problem) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            problem == "metric names should not contain ':'"
                && (name.starts_with("vllm:") || name.starts_with("xinference:")),
            "promtool reports a problem: {line}\n{text}"
        );
    }
}

async fn launch(server: &TestServer, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/models", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// A streamed generation that ignores end tokens and runs long; only its first chunk is read.
async fn long_stream(url: &str) -> reqwest::Response {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "llm", "stream": true, "max_tokens": 1500, "temperature": 0,
            "stop_token_ids": [], "messages": [{"role": "user", "content": "Tell me a long story."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_real_requests_and_pass_promtool() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    // One sequence slot, so that a second request waits while the first runs.
    launch(
        &server,
        json!({"model_name": "smollm2-instruct", "model_uid": "llm", "model_engine": "llama.cpp",
            "model_format": "ggufv2", "model_size_in_billions": "0_135", "quantization": "Q4_1",
            "model_path": smollm2_gguf(), "n_parallel": 1}),
    )
    .await;
    launch(
        &server,
        json!({"model_name": "all-MiniLM-L6-v2", "model_uid": "embed", "model_type": "embedding",
            "model_path": minilm_dir()}),
    )
    .await;

    // At rest: everything is there, and zero.
    let text = scrape_text(&server).await;
    promtool_check(&text);
    let s = Scrape(parse(&text));
    let llm = [("model_name", "llm")];
    assert_eq!(s.get("vllm:num_requests_running", &llm), 0.0);
    assert_eq!(s.get("vllm:num_requests_waiting", &llm), 0.0);
    assert_eq!(s.get("vllm:kv_cache_usage_perc", &llm), 0.0);
    let config = s.labels_of("vllm:cache_config_info", "llm");
    assert_eq!(config["block_size"], "16");
    let blocks: usize = config["num_gpu_blocks"].parse().unwrap();
    assert!(blocks > 0, "{config:?}");
    assert_eq!(
        s.get("xinference:model_request_total", &[("model_uid", "llm")]),
        0.0
    );
    assert_eq!(
        s.get(
            "xinference:model_status",
            &[("model_uid", "embed"), ("status", "READY")]
        ),
        1.0
    );
    assert!(s
        .find("vllm:kv_cache_usage_perc", &[("model_name", "embed")])
        .is_none());

    // A long generation runs; a second one waits for the only slot.
    let first = long_stream(&server.url).await;
    let mut first_body = first.bytes_stream();
    first_body.next().await.expect("a first chunk").unwrap();
    let url = server.url.clone();
    let second = tokio::spawn(async move {
        let r = long_stream(&url).await;
        let mut body = r.bytes_stream();
        body.next().await.map(|c| c.is_ok())
    });
    // (The prompt's keys and values count from the moment its prefill starts.)
    let busy = scrape_until(&server, "one running and one waiting", |s| {
        s.get("vllm:num_requests_running", &llm) == 1.0
            && s.get("vllm:num_requests_waiting", &llm) == 1.0
            && s.get("vllm:kv_cache_usage_perc", &llm) > 0.0
    })
    .await;
    let usage = busy.get("vllm:kv_cache_usage_perc", &llm);
    assert!(usage > 0.0 && usage <= 1.0, "usage {usage}");
    assert_eq!(usage, busy.get("vllm:gpu_cache_usage_perc", &llm));
    assert_eq!(
        busy.get("xinference:model_serving_requests", &[("model_uid", "llm")]),
        2.0
    );
    // The KV fill grows as the first generation goes on.
    scrape_until(&server, "the KV cache filling", |s| {
        s.get("vllm:kv_cache_usage_perc", &llm) > usage
    })
    .await;
    promtool_check(&scrape_text(&server).await);

    // The first client goes away: the second takes the slot; then it goes away too.
    drop(first_body);
    assert_eq!(second.await.unwrap(), Some(true));
    let idle = scrape_until(&server, "the model idle again", |s| {
        s.get("vllm:num_requests_running", &llm) == 0.0
            && s.get("vllm:num_requests_waiting", &llm) == 0.0
            && s.get("vllm:kv_cache_usage_perc", &llm) == 0.0
            && s.get(
                "xinference:model_request_duration_seconds_count",
                &[("model_uid", "llm")],
            ) == 2.0
    })
    .await;
    assert_eq!(
        idle.get("xinference:model_request_total", &[("model_uid", "llm")]),
        2.0
    );
    assert_eq!(
        idle.get(
            "xinference:time_to_first_token_seconds_count",
            &[("model_uid", "llm")]
        ),
        2.0
    );
    let out_before = idle.get("xinference:output_tokens_total", &[("model_uid", "llm")]);

    // The same short request twice: counted with its tokens, and the second reuses the
    // first's prompt from the prefix cache.
    let ask = json!({"model": "llm", "max_tokens": 5, "temperature": 0, "stop_token_ids": [],
        "messages": [{"role": "user", "content": "Name three colours of the rainbow, please."}]});
    let mut prompt_tokens = 0;
    for _ in 0..2 {
        let v: Value = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", server.url))
            .json(&ask)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 5, "{v}");
        prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    }
    // Embeddings: one good request, one refused inside the model (an impossible dimension).
    let http = reqwest::Client::new();
    let ok = http
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({"model": "embed", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = http
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({"model": "embed", "input": "hello", "dimensions": 100000}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let text = scrape_text(&server).await;
    promtool_check(&text);
    let s = Scrape(parse(&text));
    let uid_llm = [("model_uid", "llm")];
    assert_eq!(s.get("xinference:model_request_total", &uid_llm), 4.0);
    assert_eq!(
        s.get("xinference:model_request_errors_total", &uid_llm),
        0.0
    );
    assert_eq!(
        s.get("xinference:output_tokens_total", &uid_llm) - out_before,
        10.0
    );
    assert_eq!(
        s.get("xinference:output_tokens_total", &uid_llm),
        s.get("vllm:generation_tokens_total", &llm)
    );
    assert!(s.get("xinference:input_tokens_total", &uid_llm) >= 2.0 * prompt_tokens as f64);
    assert_eq!(
        s.get("xinference:time_to_first_token_seconds_count", &uid_llm),
        4.0
    );
    assert_eq!(
        s.get(
            "xinference:time_to_first_token_seconds_bucket",
            &[("model_uid", "llm"), ("le", "+Inf")]
        ),
        4.0
    );
    let hits = s.get("vllm:prefix_cache_hits_total", &llm);
    assert!(
        hits >= prompt_tokens as f64 - 1.0,
        "{hits} of {prompt_tokens}"
    );
    assert!(s.get("vllm:prefix_cache_queries_total", &llm) > hits);
    assert!(s.get("xinference:prefix_cache_hit_rate", &uid_llm) > 0.0);
    assert!(s.get("xinference:prefix_cache_bytes", &uid_llm) > 0.0);
    let uid_embed = [("model_uid", "embed")];
    assert_eq!(s.get("xinference:model_request_total", &uid_embed), 2.0);
    assert_eq!(
        s.get("xinference:model_request_errors_total", &uid_embed),
        1.0
    );
    assert_eq!(
        s.get(
            "xinference:model_request_duration_seconds_count",
            &uid_embed
        ),
        2.0
    );
    server.stop().await;
}

/// `/v1/models` lists a model only once it is ready (what readiness probes and llm-d's
/// routing expect); while it downloads it shows in `/v1/models/instances` as loading.
/// (Sets HF_ENDPOINT: the only test in this binary that downloads.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_models_lists_only_ready_models() {
    let source = minilm_dir();
    let hub = MockHub::start(&source, "sentence-transformers/all-MiniLM-L6-v2", &[]).await;
    std::env::set_var("HF_ENDPOINT", &hub.url);
    for var in [
        "HF_HUB_OFFLINE",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
    ] {
        std::env::remove_var(var);
    }
    // Slow enough that the download takes seconds.
    hub.set_throttle(Some(Throttle {
        chunk: 1 << 20,
        delay: Duration::from_millis(150),
    }));
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/models?wait_ready=false", server.url))
        .json(&json!({"model_name": "all-MiniLM-L6-v2", "model_type": "embedding"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let listed = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "all-MiniLM-L6-v2")
    };
    let models: Value = http
        .get(format!("{}/v1/models", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let instances: Value = http
        .get(format!("{}/v1/models/instances", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!listed(&models), "listed while loading: {models}");
    let status = instances[0]["status"].as_str().unwrap().to_owned();
    assert!(
        ["CREATING", "LOADING"].contains(&status.as_str()),
        "{instances}"
    );
    // The vLLM gauges leave a loading model out too; its status is in xinference:model_status.
    let s = scrape(&server).await;
    assert!(s
        .find(
            "vllm:num_requests_waiting",
            &[("model_name", "all-MiniLM-L6-v2")]
        )
        .is_none());
    // The load goes on between the two reads: the scrape shows one of the two loading states,
    // the one /v1/models/instances gave or a later one (CREATING, then LOADING).
    let scraped = ["CREATING", "LOADING"]
        .into_iter()
        .find(|st| {
            s.find(
                "xinference:model_status",
                &[("model_uid", "all-MiniLM-L6-v2"), ("status", st)],
            ) == Some(1.0)
        })
        .unwrap_or_else(|| panic!("no loading model_status in {:#?}", s.0.keys()));
    assert!(
        !(status == "LOADING" && scraped == "CREATING"),
        "the status went back from {status} to {scraped}"
    );
    hub.set_throttle(None);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let models: Value = http
            .get(format!("{}/v1/models", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if listed(&models) {
            break;
        }
        assert!(Instant::now() < deadline, "never listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({"model": "all-MiniLM-L6-v2", "input": "ready"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
    hub.shutdown().await;
}
