//! The generation loop of one sequence: prompt -> prefill -> sample -> decode until a stop
//! token, a stop string (never emitted), `max_tokens` or the end of the context.

use super::detokenizer::{decode, Detokenizer};
use super::kv_usage::KvUsage;
use super::prefix_cache::{PrefixCache, PrefixCacheStats, DEFAULT_PREFIX_CACHE_BYTES};
use super::sampler::{log_softmax, Sampler, SamplingParams};
use super::step_batcher::{BatchStats, Decoding, StepBatcher};
use super::stop_strings::{find_stop, held_back, release_held_back};
use super::stop_tokens::spec_stop_ids_of_vocabulary;
use crate::llm::loading::{load_gguf, load_safetensors};
use crate::llm::model::{CausalLm, LlmParts};
use crate::llm::output::constraint::{Grammar, GuidanceCache};
use crate::llm::output::tools::ToolFormat;
use crate::llm::output::{ChatTemplate, TemplateInput};
use crate::llm::tokenizer::LlmTokenizer;
use crate::{Error, Result};
use serde_json::Value as Json;
use std::path::Path;
use std::sync::Arc;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
}

impl FinishReason {
    /// OpenAI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// The log-probability of a chosen token, with the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The most likely tokens at that step, `(text, logprob)`.
    pub top: Vec<(String, f32)>,
}

/// Options of one generation.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Most tokens to generate (default: the rest of the context).
    pub max_tokens: Option<usize>,
    /// Whether `max_tokens` is the caller's own (then a prompt plus `max_tokens` past the
    /// context is refused, as vLLM and OpenAI refuse it) rather than a server default (then
    /// generation stops at the end of the context).
    pub max_tokens_requested: bool,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Strings that end generation; they are never emitted.
    pub stop: Vec<String>,
    /// Token ids that end generation (besides the model's own end tokens).
    pub stop_token_ids: Vec<u32>,
    /// `Some(n)`: report log-probabilities with `n` alternatives per token.
    pub logprobs: Option<usize>,
    /// A grammar the output must match (constrained decoding).
    pub grammar: Option<Grammar>,
    /// Special tokens released as text (the markup an answer parser reads, e.g. Gemma 4's
    /// `<|channel>` and `<channel|>` around its reasoning); the others are dropped.
    pub kept_special_tokens: Vec<u32>,
    /// Added to these tokens' logits before every pick (OpenAI's `logit_bias`: token id and a
    /// bias from -100 to 100; -100 all but bans a token, 100 all but forces it).
    pub logit_bias: Vec<(u32, f32)>,
}

/// What one step hands to the caller: newly released text and, when asked, log-probabilities.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    /// Text released by this step (may be empty while a stop string might be forming).
    pub text: String,
    /// Log-probabilities of the tokens generated since the last output.
    pub logprobs: Vec<TokenLogprob>,
}

/// The result of a whole generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The generated text (stop string excluded).
    pub text: String,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (the stop token included, as OpenAI counts it).
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Per-token log-probabilities, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// The generated token ids (the stop token included).
    pub tokens: Vec<u32>,
    /// The stop string that ended generation, if one did.
    pub stop_sequence: Option<String>,
    /// Prompt tokens whose keys and values came from the prefix cache (not computed).
    pub cached_tokens: usize,
    /// Generated tokens that were reasoning (counted by the runtime, which knows the model's
    /// reasoning tags; 0 here).
    pub reasoning_tokens: usize,
}

/// A loaded LLM: weights, tokenizer, chat template and end tokens.
pub struct LlmEngine {
    model: Box<dyn CausalLm>,
    architecture: String,
    /// Shared with the forks: a tokenizer of a large vocabulary is tens of megabytes (Qwen's
    /// 151k tokens: ~30 MB), once per sequence slot before.
    tokenizer: Arc<LlmTokenizer>,
    bos_token_id: Option<u32>,
    add_bos: bool,
    context_length: usize,
    template: Option<ChatTemplate>,
    template_tools: TemplateTools,
    stop_token_ids: Vec<u32>,
    stop: Vec<String>,
    /// Tokens never generated ([`LlmParts::suppressed_token_ids`]), shared with the forks.
    suppressed: Arc<[u32]>,
    guidance: GuidanceCache,
    /// KV states of earlier sequences, shared by the forks (`None`: the family cannot reuse).
    prefix_cache: Option<Arc<PrefixCache>>,
    /// Where the decode steps of this engine and its forks meet (`None`: the family cannot
    /// batch them; each steps alone).
    batcher: Option<Arc<StepBatcher>>,
    /// Tokens this engine's KV cache holds for the sequence it is generating (metrics).
    kv_usage: KvUsage,
}

/// Prompt tokens fed in one pass: a long prompt is fed in chunks, so that the decode passes of
/// the other sequences take their turns between them instead of waiting for the whole prompt.
const PREFILL_CHUNK: usize = 256;

/// Prompt tokens fed in one pass while other sequences are decoding (families that batch):
/// the chunk rides in their decode pass, which it slows by this many rows only.
const SHARED_PREFILL_CHUNK: usize = super::step_batcher::SHARED_PROMPT_ROWS;

/// What a chat template knows about tools.
#[derive(Debug, Clone, Copy, Default)]
struct TemplateTools {
    /// It renders the `tools` variable.
    renders_tools: bool,
    /// The call format it teaches, when recognisable.
    format: Option<ToolFormat>,
}

impl LlmEngine {
    /// Loads a GGUF model. `spec_template`, `spec_stop` and `spec_stop_token_ids` come from the
    /// registry; the GGUF's own template wins over the spec's.
    pub fn load_gguf(
        path: &Path,
        spec_template: Option<&str>,
        spec_stop: &[String],
        spec_stop_token_ids: &[u32],
    ) -> Result<Self> {
        let parts = load_gguf(path)?;
        let engine = Self::new(parts, spec_template, spec_stop, spec_stop_token_ids);
        crate::compute::release_freed_memory();
        engine
    }

    /// Loads a Hugging Face safetensors model folder (`config.json`, `model.safetensors` or
    /// shards, `tokenizer.json`; Xinference's `pytorch` format) of a supported family, computing
    /// in f32. The registry settings are used as in [`LlmEngine::load_gguf`]; the folder's own
    /// chat template wins over the spec's.
    pub fn load_safetensors(
        dir: &Path,
        spec_template: Option<&str>,
        spec_stop: &[String],
        spec_stop_token_ids: &[u32],
    ) -> Result<Self> {
        let parts = load_safetensors(dir)?;
        Self::new(parts, spec_template, spec_stop, spec_stop_token_ids)
    }

    /// An engine over loaded parts, with the registry's template and stop settings.
    pub fn new(
        mut parts: LlmParts,
        spec_template: Option<&str>,
        spec_stop: &[String],
        spec_stop_token_ids: &[u32],
    ) -> Result<Self> {
        let token_text = |id: Option<u32>| {
            id.and_then(|i| parts.tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        let bos = token_text(parts.bos_token_id);
        let eos = token_text(parts.eos_token_ids.first().copied());
        let source = parts
            .chat_template
            .clone()
            .or(spec_template.map(str::to_owned));
        let template_tools = TemplateTools {
            renders_tools: source.as_deref().is_some_and(|s| s.contains("tools")),
            format: source.as_deref().and_then(ToolFormat::from_template),
        };
        let template = source
            .map(|s| ChatTemplate::new(&s, &bos, &eos))
            .transpose()?;
        let mut stop_token_ids = parts.eos_token_ids.clone();
        stop_token_ids.extend(spec_stop_ids_of_vocabulary(
            &parts.tokenizer,
            spec_stop_token_ids,
        ));
        // The spec's stop strings that are single special tokens become stop ids.
        let mut stop = Vec::new();
        for s in spec_stop {
            match parts.tokenizer.token_to_id(s) {
                Some(id) => stop_token_ids.push(id),
                None => stop.push(s.clone()),
            }
        }
        stop_token_ids.sort_unstable();
        stop_token_ids.dedup();
        let prefix_cache = parts
            .model
            .kv_state(0)
            .map(|_| Arc::new(PrefixCache::new(DEFAULT_PREFIX_CACHE_BYTES)));
        // With the prefix cache on, sliding-window layers keep every position, so that a shared
        // prefix longer than their window is reused (llama.cpp's `--swa-full`).
        parts.model.keep_whole_windows(prefix_cache.is_some());
        let batcher = parts
            .model
            .can_batch()
            .then(|| Arc::new(StepBatcher::default()));
        Ok(LlmEngine {
            model: parts.model,
            architecture: parts.architecture,
            tokenizer: Arc::new(parts.tokenizer),
            bos_token_id: parts.bos_token_id,
            add_bos: parts.add_bos,
            context_length: parts.context_length,
            template,
            template_tools,
            stop_token_ids,
            stop,
            suppressed: parts.suppressed_token_ids.into(),
            guidance: GuidanceCache::default(),
            prefix_cache,
            batcher,
            kv_usage: KvUsage::default(),
        })
    }

    /// A second engine sharing this one's weights, with its own KV cache, so that another
    /// sequence can be served at the same time (`None` when the family cannot share weights).
    pub fn fork(&self) -> Option<LlmEngine> {
        Some(LlmEngine {
            model: self.model.fork()?,
            architecture: self.architecture.clone(),
            tokenizer: self.tokenizer.clone(),
            bos_token_id: self.bos_token_id,
            add_bos: self.add_bos,
            context_length: self.context_length,
            template: self.template.clone(),
            template_tools: self.template_tools,
            stop_token_ids: self.stop_token_ids.clone(),
            stop: self.stop.clone(),
            suppressed: self.suppressed.clone(),
            guidance: self.guidance.clone(),
            prefix_cache: self.prefix_cache.clone(),
            batcher: self.batcher.clone(),
            kv_usage: KvUsage::default(),
        })
    }

    /// How many tokens this engine's KV cache holds now (its own: a fork has another).
    pub fn kv_usage(&self) -> KvUsage {
        self.kv_usage.clone()
    }

    /// Replaces the prefix cache (shared with forks made afterwards) by one of `budget` bytes;
    /// 0 turns prompt-prefix reuse off. No effect for families that cannot reuse a cache.
    pub fn set_prefix_cache_budget(&mut self, budget: usize) {
        if self.prefix_cache.is_some() {
            self.prefix_cache = Some(Arc::new(PrefixCache::new(budget)));
            self.model.keep_whole_windows(budget > 0);
        }
    }

    /// The prefix cache this engine and its forks share, when the family can reuse one.
    pub fn prefix_cache(&self) -> Option<Arc<PrefixCache>> {
        self.prefix_cache.clone()
    }

    /// The prefix cache's counters (all zero when there is none).
    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.prefix_cache
            .as_ref()
            .map(|c| c.stats())
            .unwrap_or_default()
    }

    /// The decode passes' counters (all zero when the family does not batch).
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher.as_ref().map(|b| b.stats()).unwrap_or_default()
    }

    /// Where this engine's decode steps meet its forks', when the family batches them.
    pub fn batcher(&self) -> Option<Arc<StepBatcher>> {
        self.batcher.clone()
    }

    /// Feeds `token` at `position`: in a pass shared with the other sequences decoding now,
    /// when the family batches, else alone.
    fn decode(
        &mut self,
        sequence: Option<&Decoding>,
        token: u32,
        position: usize,
    ) -> Result<Vec<f32>> {
        match sequence {
            Some(sequence) => sequence.step(&mut *self.model, token, position),
            None => crate::compute::with_budget(|| self.model.forward(&[token], position)),
        }
    }

    /// Feeds `prompt` as a new sequence, starting after the longest prefix the cache holds.
    /// Returns the last position's logits and how many prompt tokens came from the cache.
    fn prefill(
        &mut self,
        prompt: &[u32],
        sequence: Option<&Decoding>,
    ) -> Result<(Vec<f32>, usize)> {
        let hit = self.prefix_cache.as_ref().and_then(|c| c.lookup(prompt));
        let mut start = 0;
        if let Some(hit) = hit {
            if self.model.load_kv(&hit.state, hit.len)? {
                start = hit.len;
                if let (Some(logits), Some(cache)) = (hit.logits, &self.prefix_cache) {
                    // The same prompt again: exactly the logits it had.
                    cache.record_prompt(start, 0);
                    return Ok(((*logits).clone(), start));
                }
            }
        }
        let mut logits = Vec::new();
        let mut at = start;
        while at < prompt.len() {
            match sequence {
                // In the passes of the other sequences' decode steps, in smaller chunks while
                // there are any (this sequence counts itself).
                Some(sequence) => {
                    let size = if sequence.sequences() > 1 {
                        SHARED_PREFILL_CHUNK
                    } else {
                        PREFILL_CHUNK
                    };
                    let end = prompt.len().min(at + size);
                    logits = sequence.feed_prompt(&mut *self.model, &prompt[at..end], at)?;
                    at = end;
                }
                None => {
                    let end = prompt.len().min(at + PREFILL_CHUNK);
                    logits = crate::compute::with_budget(|| {
                        self.model
                            .forward_prompt(&prompt[at..end], at, prompt.len())
                    })?;
                    at = end;
                }
            }
        }
        if let Some(cache) = &self.prefix_cache {
            cache.record_prompt(start, prompt.len() - start);
        }
        Ok((logits, start))
    }

    /// Computes `prompt` and keeps its keys and values in the prefix cache, so that sequences
    /// generated from it next (the choices of a request with `n` > 1) feed only its last token.
    pub fn share_prompt(&mut self, prompt: &[u32]) -> Result<()> {
        self.check_prompt(prompt)?;
        if self.prefix_cache.is_some() {
            let decoding = self.batcher.as_ref().map(|b| b.enter());
            let (logits, _) = self.prefill(prompt, decoding.as_ref())?;
            self.remember(prompt, Some((prompt.len(), logits)));
        }
        Ok(())
    }

    /// Stores the KV cache of the `fed` tokens in the prefix cache, with the logits after
    /// the prompt (its first tokens) when given.
    fn remember(&self, fed: &[u32], prompt_logits: Option<(usize, Vec<f32>)>) {
        if let Some(cache) = &self.prefix_cache {
            if let Some(state) = self.model.kv_state(fed.len()) {
                cache.insert_with_end(fed, state, prompt_logits);
            }
        }
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// `general.architecture` of the model.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Whether the model has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Whether the chat template renders the `tools` variable (else tools are described by a
    /// built-in system prompt).
    pub fn template_renders_tools(&self) -> bool {
        self.template_tools.renders_tools
    }

    /// The tool-call format the chat template teaches, when recognisable.
    pub fn template_tool_format(&self) -> Option<ToolFormat> {
        self.template_tools.format
    }

    /// Checks that `grammar` compiles (a 400 otherwise), before any compute is spent.
    pub fn check_grammar(&self, grammar: &Grammar) -> Result<()> {
        self.guidance
            .compile(&self.tokenizer, &self.stop_token_ids, grammar)
            .map(|_| ())
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &LlmTokenizer {
        &self.tokenizer
    }

    /// Renders a conversation into prompt text with the model's chat template.
    pub fn render_chat(
        &self,
        messages: &[Json],
        tools: Option<&[Json]>,
        extra: &serde_json::Map<String, Json>,
    ) -> Result<String> {
        let template = self.template.as_ref().ok_or_else(|| {
            Error::bad_request("this model has no chat template; use /v1/completions")
        })?;
        template.render(&TemplateInput {
            messages,
            tools,
            add_generation_prompt: true,
            extra,
        })
    }

    /// Tokenizes prompt text the way llama.cpp does: special tokens in the text are parsed,
    /// and BOS is prepended when the model asks for it (unless the text already starts with it).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, false)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos_token_id) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// One forward pass at `position` returning the logits of the last token, within the shared
    /// compute budget (for benchmarks; panics on failure).
    pub fn forward_for_bench(&mut self, tokens: &[u32], position: usize) -> Vec<f32> {
        crate::compute::with_budget(|| self.model.forward(tokens, position)).expect("forward")
    }

    /// Checks that `prompt` can be generated from: not empty, and shorter than the context.
    pub fn check_prompt(&self, prompt: &[u32]) -> Result<()> {
        let context = self.context_length();
        if prompt.is_empty() {
            return Err(Error::bad_request("the prompt is empty"));
        }
        if prompt.len() >= context {
            return Err(Error::bad_request(format!(
                "This model's maximum context length is {context} tokens, but the prompt has {} tokens",
                prompt.len()
            )));
        }
        Ok(())
    }

    /// [`check_prompt`](Self::check_prompt), and, when the caller set `max_tokens`, that the
    /// prompt plus `max_tokens` fit in the context: a 400 with OpenAI's (vLLM's) message
    /// otherwise, instead of an answer silently cut at the end of the context.
    pub fn check_request(&self, prompt: &[u32], options: &GenerateOptions) -> Result<()> {
        self.check_prompt(prompt)?;
        let vocab = self.tokenizer.vocab_size();
        if let Some((id, _)) = options
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= vocab)
        {
            return Err(Error::bad_request(format!(
                "logit_bias: token id {id} is not in the model's vocabulary of {vocab} tokens"
            )));
        }
        let context = self.context_length();
        match options.max_tokens {
            Some(max)
                if options.max_tokens_requested && prompt.len().saturating_add(max) > context =>
            {
                Err(Error::bad_request(format!(
                    "This model's maximum context length is {context} tokens. However, you \
                     requested {} tokens ({} in the messages, {max} in the completion). Please \
                     reduce the length of the messages or completion.",
                    prompt.len().saturating_add(max),
                    prompt.len()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Takes the model's suppressed tokens out of `logits`: they are never chosen (llama.cpp
    /// gives them a logit bias of -inf).
    fn suppress(&self, logits: &mut [f32]) {
        for &id in self.suppressed.iter() {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Adds the request's `logit_bias` to `logits` (a suppressed token stays at -inf).
    fn bias(logits: &mut [f32], bias: &[(u32, f32)]) {
        for &(id, b) in bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += b;
            }
        }
    }

    /// Generates from `prompt` token ids. `on_step` receives released text as it forms and
    /// returns `false` to stop (a disconnected client).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        on_step: &mut dyn FnMut(StepOutput) -> bool,
    ) -> Result<Generated> {
        self.check_prompt(prompt)?;
        let context = self.context_length();
        let room = context - prompt.len();
        let max_tokens = options.max_tokens.map_or(room, |m| m.min(room));
        let mut sampler = Sampler::new(options.sampling.clone(), prompt);
        let mut stop_ids = self.stop_token_ids.clone();
        stop_ids.extend_from_slice(&options.stop_token_ids);
        let mut constraint = options
            .grammar
            .as_ref()
            .map(|g| self.guidance.compile(&self.tokenizer, &stop_ids, g))
            .transpose()?;
        let stops: Vec<String> = self
            .stop
            .iter()
            .chain(&options.stop)
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        let stop_strings: Vec<&str> = stops.iter().map(String::as_str).collect();

        let mut detok = Detokenizer::keeping(&self.tokenizer, &options.kept_special_tokens);
        let mut emitted = String::new();
        let mut pending = String::new();
        let mut all_logprobs = Vec::new();
        let mut pending_logprobs = Vec::new();
        let mut generated = 0;
        let mut tokens = Vec::new();
        let mut finish = FinishReason::Length;
        let mut stop_sequence = None;
        // The prompt's keys and values fill the slot's cache from the prefill on.
        let kv_held = self.kv_usage.hold(prompt.len());
        // Counted by the passes from the first prompt chunk on (they wait briefly for it).
        let decoding = self.batcher.as_ref().map(|b| b.enter());
        let (mut logits, cached_tokens) = self.prefill(prompt, decoding.as_ref())?;
        let prompt_logits = self
            .prefix_cache
            .as_ref()
            .map(|_| (prompt.len(), logits.clone()));
        // Tokens whose keys and values the model now holds.
        let mut fed = prompt.to_vec();
        let mut position = prompt.len();
        while generated < max_tokens {
            self.suppress(&mut logits);
            Self::bias(&mut logits, &options.logit_bias);
            if let Some(c) = constraint.as_mut() {
                c.mask(&mut logits)?;
            }
            let raw = options.logprobs.map(|_| logits.clone());
            let token = sampler.sample(&mut logits);
            sampler.accept(token);
            tokens.push(token);
            generated += 1;
            if let (Some(n), Some(raw)) = (options.logprobs, raw) {
                let lp = self.token_logprob(&raw, token, n);
                pending_logprobs.push(lp.clone());
                all_logprobs.push(lp);
            }
            if stop_ids.contains(&token) {
                finish = FinishReason::Stop;
                break;
            }
            if let Some(c) = constraint.as_mut() {
                c.accept(token)?;
            }
            pending.push_str(&detok.push(&self.tokenizer, token)?);
            if let Some((cut, len)) = find_stop(&pending, &stop_strings) {
                stop_sequence = Some(pending[cut..cut + len].to_owned());
                pending.truncate(cut);
                finish = FinishReason::Stop;
                break;
            }
            let safe = pending.len() - held_back(&pending, &stop_strings);
            if safe > 0 || !pending_logprobs.is_empty() {
                let text: String = pending.drain(..safe).collect();
                emitted.push_str(&text);
                let step = StepOutput {
                    text,
                    logprobs: std::mem::take(&mut pending_logprobs),
                };
                if !on_step(step) {
                    finish = FinishReason::Stop;
                    pending.clear();
                    break;
                }
            }
            if generated >= max_tokens {
                break;
            }
            if constraint.as_ref().is_some_and(|c| c.is_finished()) {
                finish = FinishReason::Stop;
                break;
            }
            logits = self.decode(decoding.as_ref(), token, position)?;
            fed.push(token);
            position += 1;
            kv_held.set(position);
        }
        self.remember(&fed, prompt_logits);
        release_held_back(pending, pending_logprobs, &mut emitted, on_step);
        Ok(Generated {
            text: emitted,
            prompt_tokens: prompt.len(),
            completion_tokens: generated,
            finish_reason: finish,
            logprobs: all_logprobs,
            tokens,
            stop_sequence,
            cached_tokens,
            reasoning_tokens: 0,
        })
    }

    fn token_logprob(&self, logits: &[f32], token: u32, top_n: usize) -> TokenLogprob {
        let lp = log_softmax(logits);
        let text = |id: u32| decode(&self.tokenizer, &[id]).unwrap_or_default();
        let mut top: Vec<u32> = Vec::new();
        if top_n > 0 {
            let mut idx: Vec<u32> = (0..lp.len() as u32).collect();
            let n = top_n.min(idx.len());
            idx.select_nth_unstable_by(n - 1, |&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
            idx.truncate(n);
            idx.sort_unstable_by(|&a, &b| lp[b as usize].total_cmp(&lp[a as usize]));
            top = idx;
        }
        TokenLogprob {
            token: text(token),
            logprob: lp[token as usize],
            top: top.into_iter().map(|i| (text(i), lp[i as usize])).collect(),
        }
    }

    /// The logits at the last position of `prompt`, run as a new sequence (position 0 resets
    /// the KV cache), within the shared compute budget. Scoring uses it (LLM rerankers).
    pub fn score_last_logits(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        self.check_prompt(prompt)?;
        crate::compute::with_budget(|| self.model.forward(prompt, 0))
    }
}
