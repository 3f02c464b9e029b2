//! Reasoning output (`<think>...</think>`, Qwen3 / DeepSeek-R1 style, or Gemma 4's
//! `<|channel>thought\n...<channel|>`) split off the answer into `reasoning_content`, whole or
//! streamed.

use super::marker::partial_suffix;
use crate::llm::tokenizer::LlmTokenizer;

/// The tags around a model's reasoning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasoningTags {
    /// `<think>`.
    pub start: String,
    /// `</think>`.
    pub end: String,
}

impl ReasoningTags {
    /// The tags a rendered chat prompt shows its template writes, for a model whose registry
    /// entry names none: `<think>` blocks (Qwen3, DeepSeek-R1), or Gemma 4's thought channel
    /// (its `<|think|>` switch, or the empty channel its larger models' template closes when
    /// thinking is off).
    pub fn from_prompt(prompt: &str) -> Option<ReasoningTags> {
        if prompt.contains("<think>") {
            Some(ReasoningTags {
                start: "<think>".into(),
                end: "</think>".into(),
            })
        } else if prompt.contains("<|think|>") || prompt.contains("<|channel>thought\n") {
            Some(ReasoningTags {
                start: "<|channel>thought\n".into(),
                end: "<channel|>".into(),
            })
        } else {
            None
        }
    }
}

/// A piece of a split answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasoningPiece {
    /// Reasoning text.
    Reasoning(String),
    /// Answer text.
    Content(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: the answer may still open with the start tag.
    Start,
    /// Inside the reasoning.
    Reasoning,
    /// After the reasoning (or an answer without any): everything is content.
    Content,
    /// Just after the end tag: leading blank lines are dropped.
    AfterReasoning,
}

/// Splits a streamed answer into reasoning and content.
pub struct ReasoningSplitter {
    tags: ReasoningTags,
    state: State,
    pending: String,
    /// No reasoning text released yet: leading whitespace is dropped.
    fresh: bool,
}

impl ReasoningSplitter {
    /// A splitter for `tags`. `prompt_opened` is true when the prompt itself ends inside an
    /// opened reasoning block (templates that end the generation prompt with `<think>\n`): the
    /// answer then starts in the reasoning.
    pub fn new(tags: ReasoningTags, prompt_opened: bool) -> Self {
        ReasoningSplitter {
            tags,
            state: if prompt_opened {
                State::Reasoning
            } else {
                State::Start
            },
            pending: String::new(),
            fresh: true,
        }
    }

    /// Whether `prompt` ends inside an opened reasoning block.
    pub fn prompt_opens_reasoning(prompt: &str, tags: &ReasoningTags) -> bool {
        match prompt.rfind(&tags.start) {
            Some(at) => !prompt[at..].contains(&tags.end),
            None => false,
        }
    }

    /// Takes the next piece of the answer; returns what can be released now.
    pub fn push(&mut self, text: &str) -> Vec<ReasoningPiece> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.is_empty() {
                        return out;
                    }
                    if let Some(rest) = trimmed.strip_prefix(&self.tags.start) {
                        self.pending = rest.trim_start().to_owned();
                        self.state = State::Reasoning;
                    } else if self.tags.start.starts_with(trimmed) {
                        return out;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning => {
                    if self.fresh {
                        let trimmed = self.pending.trim_start();
                        if trimmed.is_empty() {
                            self.pending.clear();
                            return out;
                        }
                        self.pending = trimmed.to_owned();
                        self.fresh = false;
                    }
                    if let Some(at) = self.pending.find(&self.tags.end) {
                        let reasoning = self.pending[..at].to_owned();
                        self.pending.drain(..at + self.tags.end.len());
                        push_piece(&mut out, ReasoningPiece::Reasoning(reasoning));
                        self.state = State::AfterReasoning;
                        continue;
                    }
                    let keep = partial_suffix(&self.pending, &self.tags.end);
                    let release: String = self.pending.drain(..self.pending.len() - keep).collect();
                    push_piece(&mut out, ReasoningPiece::Reasoning(release));
                    return out;
                }
                State::AfterReasoning => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.is_empty() {
                        self.pending.clear();
                        return out;
                    }
                    self.pending = trimmed.to_owned();
                    self.state = State::Content;
                }
                State::Content => {
                    let text = std::mem::take(&mut self.pending);
                    push_piece(&mut out, ReasoningPiece::Content(text));
                    return out;
                }
            }
        }
    }

    /// The answer ended: releases what was held back.
    pub fn finish(&mut self) -> Vec<ReasoningPiece> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        match self.state {
            State::Reasoning => push_piece(&mut out, ReasoningPiece::Reasoning(rest)),
            State::AfterReasoning => {}
            State::Start | State::Content => push_piece(&mut out, ReasoningPiece::Content(rest)),
        }
        out
    }

    /// Splits a whole answer: `(reasoning, content)`.
    pub fn split(mut self, text: &str) -> (Option<String>, String) {
        let mut pieces = self.push(text);
        pieces.extend(self.finish());
        let mut reasoning: Option<String> = None;
        let mut content = String::new();
        for piece in pieces {
            match piece {
                ReasoningPiece::Reasoning(t) => {
                    reasoning.get_or_insert_with(String::new).push_str(&t)
                }
                ReasoningPiece::Content(t) => content.push_str(&t),
            }
        }
        (reasoning.map(|r| r.trim_end().to_owned()), content)
    }
}

/// How many of the generated `tokens` are reasoning (OpenAI's `reasoning_tokens`): from the
/// first token up to and including the one that completes the end tag, or all of them when the
/// block never closes; 0 when the answer does not open with a reasoning block. Each token's
/// text is released by `detokenize` in order, as the splitter sees a streamed answer.
pub fn reasoning_token_count(
    tags: &ReasoningTags,
    prompt_opened: bool,
    tokens: &[u32],
    mut detokenize: impl FnMut(u32) -> crate::Result<String>,
) -> crate::Result<usize> {
    let mut splitter = ReasoningSplitter::new(tags.clone(), prompt_opened);
    let mut reasoned = prompt_opened;
    for (i, &token) in tokens.iter().enumerate() {
        splitter.push(&detokenize(token)?);
        match splitter.state {
            State::Start => {}
            State::Reasoning => reasoned = true,
            State::AfterReasoning => return Ok(i + 1),
            State::Content if reasoned => return Ok(i + 1),
            State::Content => return Ok(0),
        }
    }
    Ok(if reasoned { tokens.len() } else { 0 })
}

/// The special tokens the tags are written with (Gemma 4's `<|channel>` and `<channel|>` are
/// control tokens, which decoding drops): they must be decoded as text for the splitter to see
/// the tags. Empty when the tags are plain text (Qwen's `<think>`).
pub fn tag_special_tokens(tokenizer: &LlmTokenizer, tags: &ReasoningTags) -> Vec<u32> {
    special_tokens_of(tokenizer, &[&tags.start, &tags.end])
}

/// The special tokens (those decoding drops) that `texts` are written with, sorted, once each:
/// markup an answer parser must see as text (reasoning tags, Gemma 4's tool-call marks).
pub fn special_tokens_of(tokenizer: &LlmTokenizer, texts: &[&str]) -> Vec<u32> {
    let added = tokenizer.added_tokens();
    let mut ids: Vec<u32> = texts
        .iter()
        .filter_map(|text| tokenizer.encode(text, false).ok())
        .flatten()
        .filter(|id| added.contains(&(*id, true)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn push_piece(out: &mut Vec<ReasoningPiece>, piece: ReasoningPiece) {
    let empty = match &piece {
        ReasoningPiece::Reasoning(t) | ReasoningPiece::Content(t) => t.is_empty(),
    };
    if !empty {
        out.push(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> ReasoningTags {
        ReasoningTags {
            start: "<think>".into(),
            end: "</think>".into(),
        }
    }

    fn streamed(text: &str, step: usize, opened: bool) -> (String, String) {
        let mut s = ReasoningSplitter::new(tags(), opened);
        let chars: Vec<char> = text.chars().collect();
        let mut pieces = Vec::new();
        for c in chars.chunks(step) {
            pieces.extend(s.push(&c.iter().collect::<String>()));
        }
        pieces.extend(s.finish());
        let (mut r, mut c) = (String::new(), String::new());
        for p in pieces {
            match p {
                ReasoningPiece::Reasoning(t) => r.push_str(&t),
                ReasoningPiece::Content(t) => c.push_str(&t),
            }
        }
        (r, c)
    }

    #[test]
    fn think_blocks_split_whole_and_streamed() {
        let text = "<think>\nThe user greets me.\n</think>\n\nHello!";
        for step in [1, 2, 5, 100] {
            assert_eq!(
                streamed(text, step, false),
                ("The user greets me.\n".into(), "Hello!".into())
            );
        }
        let (r, c) = ReasoningSplitter::new(tags(), false).split(text);
        assert_eq!(r.as_deref(), Some("The user greets me."));
        assert_eq!(c, "Hello!");
    }

    /// Gemma 4 writes its reasoning as `<|channel>thought\n...<channel|>` (the registry's
    /// `reasoning_start_tag` / `reasoning_end_tag`), token by token: none of it reaches the
    /// content, whole or streamed; a prompt that closed an empty thought channel (the larger
    /// models' template with thinking off) leaves the answer all content.
    #[test]
    fn gemma4_channel_blocks_split_whole_and_streamed() {
        let gemma = ReasoningTags {
            start: "<|channel>thought\n".into(),
            end: "<channel|>".into(),
        };
        let pieces = [
            "<|channel>",
            "thought",
            "\n",
            "The",
            " user",
            " greets",
            " me",
            ".",
            "<channel|>",
            "Hello",
            "!",
        ];
        let mut s = ReasoningSplitter::new(gemma.clone(), false);
        let (mut r, mut c) = (String::new(), String::new());
        let mut all: Vec<ReasoningPiece> = pieces.iter().flat_map(|p| s.push(p)).collect();
        all.extend(s.finish());
        for piece in all {
            match piece {
                ReasoningPiece::Reasoning(t) => r.push_str(&t),
                ReasoningPiece::Content(t) => c.push_str(&t),
            }
        }
        assert_eq!((r.as_str(), c.as_str()), ("The user greets me.", "Hello!"));
        let (r, c) = ReasoningSplitter::new(gemma.clone(), false).split(&pieces.concat());
        assert_eq!(
            (r.as_deref(), c.as_str()),
            (Some("The user greets me."), "Hello!")
        );
        let tokens: Vec<u32> = (0..pieces.len() as u32).collect();
        let text = |t: u32| Ok(pieces[t as usize].to_owned());
        assert_eq!(
            reasoning_token_count(&gemma, false, &tokens, text).unwrap(),
            9
        );
        let closed = "<|turn>model\n<|channel>thought\n<channel|>";
        assert!(!ReasoningSplitter::prompt_opens_reasoning(closed, &gemma));
        // A prompt from Gemma 4's template names its tags when the registry does not.
        assert_eq!(ReasoningTags::from_prompt(closed).as_ref(), Some(&gemma));
        let thinking = "<|turn>system\n<|think|>\n<turn|>\n<|turn>model\n";
        assert_eq!(ReasoningTags::from_prompt(thinking).as_ref(), Some(&gemma));
        assert_eq!(ReasoningTags::from_prompt("<|turn>model\n"), None);
        assert_eq!(
            ReasoningTags::from_prompt("<think>\n\n</think>"),
            Some(tags())
        );
        assert_eq!(
            ReasoningSplitter::new(gemma, false).split("Paris."),
            (None, "Paris.".into())
        );
    }

    #[test]
    fn answers_without_reasoning_are_all_content() {
        assert_eq!(
            streamed("Hi <b>there</b>", 1, false),
            (String::new(), "Hi <b>there</b>".into())
        );
        let (r, c) = ReasoningSplitter::new(tags(), false).split("  <thin air");
        assert_eq!((r, c.as_str()), (None, "  <thin air"));
    }

    #[test]
    fn a_prompt_that_opened_the_block_starts_in_reasoning() {
        assert!(ReasoningSplitter::prompt_opens_reasoning(
            "<|im_start|>assistant\n<think>\n",
            &tags()
        ));
        assert!(!ReasoningSplitter::prompt_opens_reasoning(
            "<think>\n\n</think>\n\n",
            &tags()
        ));
        assert_eq!(
            streamed("hmm</think>Yes.", 2, true),
            ("hmm".into(), "Yes.".into())
        );
    }

    #[test]
    fn an_unfinished_reasoning_stays_reasoning() {
        assert_eq!(
            streamed("<think>still going", 3, false),
            ("still going".into(), String::new())
        );
    }

    #[test]
    fn reasoning_tokens_are_counted_up_to_the_end_tag() {
        let pieces = [
            "<think>", "\n", "Seven", " is", " prime", "\n", "</think>", "\n\n", "Yes",
        ];
        let tokens: Vec<u32> = (0..pieces.len() as u32).collect();
        let text = |t: u32| Ok(pieces[t as usize].to_owned());
        assert_eq!(
            reasoning_token_count(&tags(), false, &tokens, text).unwrap(),
            7
        );
        // The prompt opened the block: the answer starts inside it.
        let opened = |t: u32| Ok(pieces[t as usize + 1].to_owned());
        let rest: Vec<u32> = (0..pieces.len() as u32 - 1).collect();
        assert_eq!(
            reasoning_token_count(&tags(), true, &rest, opened).unwrap(),
            6
        );
        // Never closed: every token is reasoning. No block at all: none is.
        assert_eq!(
            reasoning_token_count(&tags(), false, &tokens[..4], text).unwrap(),
            4
        );
        let plain = ["Hello", " there"];
        let plain_text = |t: u32| Ok(plain[t as usize].to_owned());
        assert_eq!(
            reasoning_token_count(&tags(), false, &[0, 1], plain_text).unwrap(),
            0
        );
    }
}
