//! llama.cpp's own logits, teacher-forced over each parity case's prompt and llama.cpp's greedy
//! continuation (tests/fixtures/llama_cpp_logits.json, by
//! scripts/fixtures/record_llama_cpp_logits.py), and ours against them.

use super::token_ids;
use serde_json::Value;
use xinference::llm::LlmEngine;

/// The recorded logits of every parity case.
pub fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama_cpp_logits.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the logits fixture exists"))
        .expect("the logits fixture is JSON")
}

/// The recorded case of GGUF `file` whose prompt is `prompt_ids`.
pub fn case<'a>(fixture: &'a Value, file: &str, prompt_ids: &[u32]) -> &'a Value {
    fixture["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["file"] == file)
        .flat_map(|m| m["cases"].as_array().unwrap())
        .find(|c| token_ids(&c["prompt_ids"]) == prompt_ids)
        .unwrap_or_else(|| panic!("no recorded logits for {file} {prompt_ids:?}"))
}

/// Our logits against llama.cpp's at every fed position of one case.
pub struct Comparison {
    /// Per fed position (prompt tokens, then llama.cpp's continuation but its last token):
    /// the largest |ours - llama.cpp's| over llama.cpp's top-k logits there.
    pub gaps: Vec<f32>,
    /// Per continuation step: llama.cpp's gap between its best and second-best logit.
    pub margins: Vec<f32>,
    /// Leading continuation steps where our own argmax is llama.cpp's token (teacher-forced).
    pub forced_agree: usize,
    /// Prompt tokens: `gaps[..prompt - 1]` predict prompt tokens, the rest are greedy steps.
    pub prompt: usize,
}

impl Comparison {
    /// The largest gap, and the position it is at.
    pub fn worst(&self) -> (f32, usize) {
        self.gaps.iter().enumerate().fold(
            (0f32, 0),
            |(w, at), (i, g)| if *g > w { (*g, i) } else { (w, at) },
        )
    }

    /// The largest gap where llama.cpp chose its continuation (from the last prompt token on).
    pub fn worst_step(&self) -> f32 {
        self.gaps[self.prompt - 1..]
            .iter()
            .fold(0f32, |w, g| w.max(*g))
    }

    /// Continuation steps before the first whose margin is under `near_tie`: up to there,
    /// greedy tokens must be identical.
    pub fn decisive(&self, near_tie: f32) -> usize {
        self.margins
            .iter()
            .position(|m| *m < near_tie)
            .unwrap_or(self.margins.len())
    }
}

/// Feeds the case's tokens to `engine` one at a time (our products give every row the bits it
/// has in a whole prompt, so this is the prompt's computation too) and compares each
/// position's logits with llama.cpp's.
pub fn compare(engine: &mut LlmEngine, case: &Value) -> Comparison {
    let prompt = token_ids(&case["prompt_ids"]);
    let generated = token_ids(&case["generated_ids"]);
    let top = case["top"].as_array().unwrap();
    let fed: Vec<u32> = prompt
        .iter()
        .chain(&generated[..generated.len() - 1])
        .copied()
        .collect();
    assert_eq!(top.len(), fed.len(), "one recorded position per fed token");
    let mut gaps = Vec::with_capacity(fed.len());
    let mut forced_agree = None;
    for (position, (token, theirs)) in fed.iter().zip(top).enumerate() {
        let ours = engine.forward_for_bench(&[*token], position);
        if let Some(step) = (position + 1).checked_sub(prompt.len()) {
            if forced_agree.is_none() && xinference::llm::argmax(&ours) != generated[step] {
                forced_agree = Some(step);
            }
        }
        let gap = theirs
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let id = pair[0].as_u64().unwrap() as usize;
                (ours[id] - pair[1].as_f64().unwrap() as f32).abs()
            })
            .fold(0f32, f32::max);
        gaps.push(gap);
    }
    let margins = top[prompt.len() - 1..]
        .iter()
        .map(|t| (t[0][1].as_f64().unwrap() - t[1][1].as_f64().unwrap()) as f32)
        .collect();
    Comparison {
        gaps,
        margins,
        forced_agree: forced_agree.unwrap_or(generated.len()),
        prompt: prompt.len(),
    }
}
