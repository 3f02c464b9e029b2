//! Chat templates: the model's own Jinja template (from the GGUF, `tokenizer_config.json` or
//! the registry spec) rendered with minijinja plus the Python-compatible helpers that Hugging
//! Face templates rely on (`str.strip()`, `raise_exception`, `tojson` as Python prints it, ...).

use crate::{Error, Result};
use minijinja::{Environment, ErrorKind as JinjaErrorKind, Value};
use serde::Serialize;
use serde_json::Value as Json;

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// What a template is rendered with.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateInput<'a> {
    /// The conversation, as OpenAI-style message objects.
    pub messages: &'a [Json],
    /// Tool definitions (OpenAI `tools`), when the request has them.
    pub tools: Option<&'a [Json]>,
    /// Append the assistant prefix the model should continue from.
    pub add_generation_prompt: bool,
    /// Extra variables (`chat_template_kwargs`, e.g. `enable_thinking`).
    pub extra: &'a serde_json::Map<String, Json>,
}

impl ChatTemplate {
    /// Compiles `source`. `bos_token` / `eos_token` are the strings templates refer to.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        // Hugging Face templates are written for Python's Jinja, which ignores a trailing newline.
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| {
                Error::bad_request(format!("the model's chat template does not compile: {e}"))
            })?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Renders the prompt text for `input`.
    pub fn render(&self, input: &TemplateInput<'_>) -> Result<String> {
        let template = self.env.get_template("chat").expect("template was added");
        let mut ctx = serde_json::Map::new();
        for (k, v) in input.extra {
            ctx.insert(k.clone(), v.clone());
        }
        ctx.insert("messages".into(), Json::Array(input.messages.to_vec()));
        if let Some(tools) = input.tools {
            ctx.insert("tools".into(), Json::Array(tools.to_vec()));
        }
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(input.add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Json::String(self.bos_token.clone()));
        ctx.insert("eos_token".into(), Json::String(self.eos_token.clone()));
        template.render(Value::from_serialize(&ctx)).map_err(|e| {
            if e.kind() == JinjaErrorKind::InvalidOperation
                && e.to_string().contains("raise_exception")
            {
                Error::bad_request(format!(
                    "the chat template rejected the conversation: {}",
                    e.detail().unwrap_or_default()
                ))
            } else {
                Error::bad_request(format!("cannot render the chat template: {e}"))
            }
        })
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        JinjaErrorKind::InvalidOperation,
        format!("raise_exception: {message}"),
    ))
}

fn strftime_now(format: String) -> String {
    // Templates use it for "today's date" in system prompts; a fixed clock keeps prompts
    // reproducible only within a day, like the Python original.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format
        .replace("%Y", &y.to_string())
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"))
        .replace("%B", MONTHS[(m - 1) as usize])
        .replace("%b", &MONTHS[(m - 1) as usize][..3])
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False)`, which
/// separates with `", "` and `": "` (templates embed tool schemas this way).
fn tojson(
    value: Value,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json: Json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(JinjaErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn python_json(v: &Json, indent: Option<usize>, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Json::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                python_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Json::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                python_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let messages = [json!({"role": "user", "content": "Hi"})];
        let out = t
            .render(&TemplateInput {
                messages: &messages,
                tools: None,
                add_generation_prompt: true,
                extra: &Default::default(),
            })
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_helpers_work() {
        let src = "{{ messages[0]['content'].strip() | upper }}|{{ tools | tojson }}|{% if x %}{{ raise_exception('no x') }}{% endif %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let messages = [json!({"role": "user", "content": "  hi  "})];
        let tools = [json!({"a": 1, "b": ["é", 2]})];
        let out = t
            .render(&TemplateInput {
                messages: &messages,
                tools: Some(&tools),
                add_generation_prompt: false,
                extra: &Default::default(),
            })
            .unwrap();
        assert_eq!(out, "HI|[{\"a\": 1, \"b\": [\"é\", 2]}]|");
        let mut extra = serde_json::Map::new();
        extra.insert("x".into(), json!(true));
        let e = t
            .render(&TemplateInput {
                messages: &messages,
                tools: None,
                add_generation_prompt: false,
                extra: &extra,
            })
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadRequest);
        assert!(e.message().contains("no x"), "{e}");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
