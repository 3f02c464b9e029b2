//! `GET /metrics`: the runtime's numbers in the Prometheus text format (version 0.0.4, what
//! vLLM serves and what Prometheus, `promtool` and llm-d's endpoint picker parse).
//!
//! Two sets of names, per launched model:
//! - Xinference's (`xinference:model_request_total`, `..._duration_seconds`,
//!   `xinference:time_to_first_token_seconds`, input and output token counters, serve count,
//!   request limit, status), with the labels `model_uid`, `model_name`, `model_type`;
//! - vLLM's, which the Gateway API Inference Extension / llm-d endpoint picker reads by
//!   default (`vllm:num_requests_waiting`, `vllm:num_requests_running`,
//!   `vllm:kv_cache_usage_perc`, `vllm:cache_config_info`, prefix-cache and token counters),
//!   with `model_name` set to the uid requests name in `model`.
//!
//! The encoder is written here (a few lines) rather than taken from `prometheus-client`: that
//! crate writes OpenMetrics (`# EOF`, counters renamed without `_total`), and every value is
//! read from the runtime at scrape time, so there is no registry to keep in step.

use std::fmt::Write as _;
use xinference_core::runtime::metrics::{HistogramSnapshot, ModelSnapshot};
use xinference_core::{InstanceStatus, Runtime};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family being written: its name, then samples.
struct Exposition {
    out: String,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A sample value: integers plainly, `+Inf`/`-Inf`/`NaN` as the format spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &h.buckets {
            let le = number(*bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, *count as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    /// One family with a sample per model (those `value` gives one for).
    fn per_model(
        &mut self,
        models: &[ModelSnapshot],
        (name, kind, help): (&str, &str, &str),
        labels: fn(&ModelSnapshot) -> Vec<(&'static str, String)>,
        value: impl Fn(&ModelSnapshot) -> Option<f64>,
    ) {
        let samples: Vec<_> = models
            .iter()
            .filter_map(|m| value(m).map(|v| (labels(m), v)))
            .collect();
        if samples.is_empty() {
            return;
        }
        self.family(name, kind, help);
        for (labels, v) in samples {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &l, v);
        }
    }
}

/// Xinference's labels of a model's series.
fn xinference_labels(m: &ModelSnapshot) -> Vec<(&'static str, String)> {
    vec![
        ("model_uid", m.uid.clone()),
        ("model_name", m.name.clone()),
        ("model_type", m.model_type.clone()),
    ]
}

/// vLLM's label: the name requests use in `model` (the uid).
fn vllm_labels(m: &ModelSnapshot) -> Vec<(&'static str, String)> {
    vec![("model_name", m.uid.clone())]
}

fn status_text(s: InstanceStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Whether `m` is a large language model (the token counters and first-token times are its).
fn is_llm(m: &ModelSnapshot) -> bool {
    m.model_type == "LLM"
}

/// Whether `m` is ready (a loading model takes no requests).
fn is_ready(m: &ModelSnapshot) -> bool {
    m.status == InstanceStatus::Ready
}

/// Whether `m` is ready and has an LLM engine (and so a KV cache).
fn is_ready_llm(m: &ModelSnapshot) -> bool {
    is_ready(m) && m.llm.is_some()
}

/// The share of `m`'s KV-cache blocks in use (0..1), for models with an LLM engine.
fn kv_cache_usage(m: &ModelSnapshot) -> Option<f64> {
    m.llm.as_ref().map(|l| {
        if l.num_blocks == 0 {
            0.0
        } else {
            (l.used_blocks as f64 / l.num_blocks as f64).min(1.0)
        }
    })
}

/// The whole exposition of `runtime` now.
pub fn render(runtime: &Runtime) -> String {
    let models = runtime.metrics_snapshot();
    let mut e = Exposition { out: String::new() };
    write_server_info(&mut e, runtime);
    write_xinference_requests(&mut e, &models);
    write_xinference_latency(&mut e, &models);
    write_xinference_prefix_cache(&mut e, &models);
    write_vllm_load(&mut e, &models);
    write_vllm_tokens(&mut e, &models);
    e.out
}

/// The server-wide families: build information and uptime.
fn write_server_info(e: &mut Exposition, runtime: &Runtime) {
    let version = env!("CARGO_PKG_VERSION");
    e.family(
        "xinference:build_info",
        "gauge",
        "Build information (value 1).",
    );
    e.sample("xinference:build_info", &[("version", version)], 1.0);
    e.family(
        "xinference:supervisor_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    e.sample(
        "xinference:supervisor_uptime_seconds",
        &[],
        runtime.uptime_secs() as f64,
    );
}

/// Xinference's per-model status, request, request-limit and token families.
fn write_xinference_requests(e: &mut Exposition, x: &[ModelSnapshot]) {
    let with_status = |m: &ModelSnapshot| {
        let mut l = xinference_labels(m);
        l.push(("status", status_text(m.status)));
        l
    };
    if !x.is_empty() {
        e.family(
            "xinference:model_status",
            "gauge",
            "Model lifecycle status (value 1).",
        );
        for m in x {
            let l = with_status(m);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.sample("xinference:model_status", &l, 1.0);
        }
    }
    e.per_model(
        x,
        (
            "xinference:model_request_total",
            "counter",
            "Requests received by the model.",
        ),
        xinference_labels,
        |m| Some(m.requests as f64),
    );
    e.per_model(
        x,
        (
            "xinference:model_request_errors_total",
            "counter",
            "Requests the model answered with an error.",
        ),
        xinference_labels,
        |m| Some(m.errors as f64),
    );
    e.per_model(
        x,
        (
            "xinference:model_serving_requests",
            "gauge",
            "Requests being served now, running or queued (Xinference: model_serve_count, a name promtool refuses).",
        ),
        xinference_labels,
        |m| Some((m.running + m.waiting) as f64),
    );
    e.per_model(
        x,
        (
            "xinference:model_request_limit",
            "gauge",
            "The model's request_limits (concurrent requests).",
        ),
        xinference_labels,
        |m| m.request_limit.map(|l| l as f64),
    );
    e.per_model(
        x,
        (
            "xinference:input_tokens_total",
            "counter",
            "Prompt tokens (LLM only).",
        ),
        xinference_labels,
        |m| is_llm(m).then_some(m.input_tokens as f64),
    );
    e.per_model(
        x,
        (
            "xinference:output_tokens_total",
            "counter",
            "Generated tokens (LLM only).",
        ),
        xinference_labels,
        |m| is_llm(m).then_some(m.output_tokens as f64),
    );
}

/// Xinference's latency histograms: request duration and time to first token.
fn write_xinference_latency(e: &mut Exposition, x: &[ModelSnapshot]) {
    if !x.is_empty() {
        let name = "xinference:model_request_duration_seconds";
        e.family(name, "histogram", "Model request duration in seconds.");
        for m in x {
            let l = xinference_labels(m);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.histogram(name, &l, &m.duration);
        }
    }
    if x.iter().any(is_llm) {
        let name = "xinference:time_to_first_token_seconds";
        e.family(
            name,
            "histogram",
            "Time to the first generated token in seconds (LLM only).",
        );
        for m in x.iter().filter(|m| is_llm(m)) {
            let l = xinference_labels(m);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.histogram(name, &l, &m.ttft);
        }
    }
}

/// Xinference's prompt-prefix cache families: hit rate, bytes held, budget.
fn write_xinference_prefix_cache(e: &mut Exposition, x: &[ModelSnapshot]) {
    let prefix = |m: &ModelSnapshot| m.llm.as_ref().map(|l| l.prefix_cache);
    e.per_model(
        x,
        (
            "xinference:prefix_cache_hit_rate",
            "gauge",
            "Share of prompts that reused cached keys and values (0..1).",
        ),
        xinference_labels,
        |m| prefix(m).map(|p| p.hit_rate),
    );
    e.per_model(
        x,
        (
            "xinference:prefix_cache_bytes",
            "gauge",
            "Bytes of keys and values the prompt-prefix caches hold.",
        ),
        xinference_labels,
        |m| prefix(m).map(|p| p.bytes as f64),
    );
    e.per_model(
        x,
        (
            "xinference:prefix_cache_budget_bytes",
            "gauge",
            "The prompt-prefix caches' memory budget in bytes.",
        ),
        xinference_labels,
        |m| prefix(m).map(|p| p.budget_bytes as f64),
    );
}

/// vLLM's load families, for the endpoint pickers that read them (ready models only: a
/// loading model takes no requests): running and waiting requests, KV-cache usage and
/// configuration.
fn write_vllm_load(e: &mut Exposition, x: &[ModelSnapshot]) {
    e.per_model(
        x,
        (
            "vllm:num_requests_running",
            "gauge",
            "Requests being computed now.",
        ),
        vllm_labels,
        |m| is_ready(m).then_some(m.running as f64),
    );
    e.per_model(
        x,
        (
            "vllm:num_requests_waiting",
            "gauge",
            "Requests queued, not started.",
        ),
        vllm_labels,
        |m| is_ready(m).then_some(m.waiting as f64),
    );
    e.per_model(
        x,
        (
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage of the sequence slots (1 means 100 percent).",
        ),
        vllm_labels,
        |m| is_ready_llm(m).then(|| kv_cache_usage(m)).flatten(),
    );
    e.per_model(
        x,
        (
            "vllm:gpu_cache_usage_perc",
            "gauge",
            "Same as vllm:kv_cache_usage_perc (vLLM's older name).",
        ),
        vllm_labels,
        |m| is_ready_llm(m).then(|| kv_cache_usage(m)).flatten(),
    );
    if x.iter().any(is_ready_llm) {
        let name = "vllm:cache_config_info";
        e.family(
            name,
            "gauge",
            "KV-cache configuration (value 1): tokens per block, blocks of all slots.",
        );
        for m in x.iter().filter(|m| is_ready_llm(m)) {
            let l = m.llm.as_ref().expect("filtered");
            let (block, blocks) = (l.block_size.to_string(), l.num_blocks.to_string());
            e.sample(
                name,
                &[
                    ("block_size", &block),
                    ("model_name", &m.uid),
                    ("num_gpu_blocks", &blocks),
                ],
                1.0,
            );
        }
    }
}

/// vLLM's token families: prefix-cache queries and hits, prompt and generated tokens, time to
/// first token.
fn write_vllm_tokens(e: &mut Exposition, x: &[ModelSnapshot]) {
    let prefix = |m: &ModelSnapshot| m.llm.as_ref().map(|l| l.prefix_cache);
    e.per_model(
        x,
        (
            "vllm:prefix_cache_queries_total",
            "counter",
            "Prompt tokens looked up in the prefix cache.",
        ),
        vllm_labels,
        |m| prefix(m).map(|p| (p.reused_tokens + p.prefilled_tokens) as f64),
    );
    e.per_model(
        x,
        (
            "vllm:prefix_cache_hits_total",
            "counter",
            "Prompt tokens found in the prefix cache.",
        ),
        vllm_labels,
        |m| prefix(m).map(|p| p.reused_tokens as f64),
    );
    e.per_model(
        x,
        (
            "vllm:prompt_tokens_total",
            "counter",
            "Prompt tokens processed.",
        ),
        vllm_labels,
        |m| is_llm(m).then_some(m.input_tokens as f64),
    );
    e.per_model(
        x,
        (
            "vllm:generation_tokens_total",
            "counter",
            "Tokens generated.",
        ),
        vllm_labels,
        |m| is_llm(m).then_some(m.output_tokens as f64),
    );
    if x.iter().any(is_llm) {
        let name = "vllm:time_to_first_token_seconds";
        e.family(name, "histogram", "Time to first token in seconds.");
        for m in x.iter().filter(|m| is_llm(m)) {
            e.histogram(name, &[("model_name", &m.uid)], &m.ttft);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_numbers_are_escaped_as_the_format_says() {
        assert_eq!(escape_label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        let mut e = Exposition { out: String::new() };
        e.histogram(
            "h",
            &[("m", "x")],
            &HistogramSnapshot {
                buckets: vec![(0.5, 1)],
                sum: 0.25,
                count: 2,
            },
        );
        assert_eq!(
            e.out,
            "h_bucket{m=\"x\",le=\"0.5\"} 1\nh_bucket{m=\"x\",le=\"+Inf\"} 2\nh_sum{m=\"x\"} 0.25\nh_count{m=\"x\"} 2\n"
        );
    }
}
