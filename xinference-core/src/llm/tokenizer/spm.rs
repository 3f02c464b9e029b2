//! A SentencePiece tokenizer (GGUF `tokenizer.ggml.model` = `llama`: Gemma 3, Phi-3, Mistral,
//! Llama 2) that encodes as llama.cpp's `llm_tokenizer_spm` does: the text is cut at the
//! vocabulary's special pieces, and each text part is split into characters that merge pairwise,
//! highest piece score first, while the merged text is a piece; characters no piece covers become
//! byte pieces (`<0xE4>`).
//!
//! It holds only what that needs: the pieces in one string, their scores and kinds, an index of
//! piece ids hashed by text, and an automaton of the special pieces. Gemma 3's 262k pieces
//! take a few MB this way, where the `tokenizers` crate's BPE equivalent (two vocabulary maps
//! and 513k derived merges) held about 64 MB for as long as the model was loaded.

use crate::{Error, Result};
use aho_corasick::{AhoCorasick, MatchKind};
use hashbrown::HashTable;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, RandomState};

/// GGUF token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
pub mod token_type {
    /// An ordinary piece.
    pub const NORMAL: i32 = 1;
    /// The unknown piece.
    pub const UNKNOWN: i32 = 2;
    /// A control piece (`<bos>`, `<start_of_turn>`): special, dropped when decoding skips
    /// special tokens.
    pub const CONTROL: i32 = 3;
    /// A user-defined piece: matched whole in text, decoded as text.
    pub const USER_DEFINED: i32 = 4;
}

/// The SentencePiece vocabulary as a GGUF stores it.
pub struct SpmVocabulary<'a> {
    /// Piece texts by id (spaces written `▁`).
    pub pieces: Vec<&'a str>,
    /// Piece scores by id (higher merges first).
    pub scores: Vec<f32>,
    /// [`token_type`] of each piece.
    pub types: Vec<i32>,
    /// Whether a text part that starts the input or follows a special piece gets a leading
    /// space (`tokenizer.ggml.add_space_prefix`; false for Gemma).
    pub add_space_prefix: bool,
    /// The unknown piece, for bytes the vocabulary has no byte piece for.
    pub unk_id: Option<u32>,
}

/// How a piece is matched and decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Written by the merge loop, decoded with `▁` as a space.
    Text,
    /// `<0xXX>`: one byte of text.
    Byte(u8),
    /// Matched whole in the input; decoded as its text (special: unless skipped).
    Added { special: bool },
}

/// A SentencePiece tokenizer; see the module documentation.
pub struct SpmTokenizer {
    /// Every piece's text, one after another.
    text: String,
    /// Where piece `i` starts in `text` (`starts[i]..starts[i + 1]`).
    starts: Vec<u32>,
    scores: Vec<f32>,
    kinds: Vec<Kind>,
    /// Piece ids, hashed by their text.
    index: HashTable<u32>,
    hasher: RandomState,
    /// The piece of each byte value, for text no piece covers.
    byte_pieces: [Option<u32>; 256],
    /// Finds the added pieces in the input, leftmost and longest first; `added_ids` maps its
    /// pattern numbers to ids.
    added: Option<AhoCorasick>,
    added_ids: Vec<u32>,
    add_space_prefix: bool,
    unk_id: Option<u32>,
}

impl SpmTokenizer {
    /// A tokenizer over `vocabulary`.
    pub fn new(vocabulary: &SpmVocabulary) -> Result<Self> {
        let n = vocabulary.pieces.len();
        if u32::try_from(n).is_err() {
            return Err(Error::bad_request(
                "the SentencePiece vocabulary is too large",
            ));
        }
        let mut text = String::with_capacity(vocabulary.pieces.iter().map(|p| p.len()).sum());
        let mut starts = Vec::with_capacity(n + 1);
        for piece in &vocabulary.pieces {
            starts.push(text.len() as u32);
            text.push_str(piece);
        }
        starts.push(text.len() as u32);
        if u32::try_from(text.len()).is_err() {
            return Err(Error::bad_request(
                "the SentencePiece vocabulary is too large",
            ));
        }
        let mut byte_pieces = [None; 256];
        let mut added_patterns: Vec<&str> = Vec::new();
        let mut added_ids = Vec::new();
        let kinds: Vec<Kind> = (0..n)
            .map(|i| {
                let piece = vocabulary.pieces[i];
                let kind = match vocabulary.types.get(i).copied() {
                    Some(token_type::CONTROL | token_type::UNKNOWN) => {
                        Kind::Added { special: true }
                    }
                    Some(token_type::USER_DEFINED) => Kind::Added { special: false },
                    _ => match byte_of_piece(piece) {
                        Some(b) => Kind::Byte(b),
                        None => Kind::Text,
                    },
                };
                match kind {
                    Kind::Byte(b) => {
                        byte_pieces[b as usize].get_or_insert(i as u32);
                    }
                    Kind::Added { .. } if !piece.is_empty() => {
                        added_patterns.push(piece);
                        added_ids.push(i as u32);
                    }
                    _ => {}
                }
                kind
            })
            .collect();
        let added = if added_patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&added_patterns)
                    .map_err(|e| {
                        Error::bad_request(format!(
                            "cannot index the vocabulary's special pieces: {e}"
                        ))
                    })?,
            )
        };
        let mut tokenizer = SpmTokenizer {
            text,
            starts,
            scores: vocabulary.scores.clone(),
            kinds,
            index: HashTable::with_capacity(n),
            hasher: RandomState::new(),
            byte_pieces,
            added,
            added_ids,
            add_space_prefix: vocabulary.add_space_prefix,
            unk_id: vocabulary.unk_id,
        };
        tokenizer.scores.resize(n, 0.0);
        for id in 0..n as u32 {
            // The first of equal pieces wins, as llama.cpp's map keeps it.
            if tokenizer.id_of(tokenizer.piece(id)).is_none() {
                let hash = tokenizer.hasher.hash_one(tokenizer.piece(id));
                let SpmTokenizer {
                    index,
                    hasher,
                    text,
                    starts,
                    ..
                } = &mut tokenizer;
                let piece_of =
                    |i: &u32| &text[starts[*i as usize] as usize..starts[*i as usize + 1] as usize];
                index.insert_unique(hash, id, |i| hasher.hash_one(piece_of(i)));
            }
        }
        Ok(tokenizer)
    }

    /// Number of pieces.
    pub fn vocab_size(&self) -> usize {
        self.kinds.len()
    }

    /// The text of piece `id` as the vocabulary writes it (`▁` for spaces).
    pub fn piece(&self, id: u32) -> &str {
        let i = id as usize;
        &self.text[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// The id of the piece written `piece`.
    pub fn id_of(&self, piece: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(piece);
        self.index
            .find(hash, |&id| self.piece(id) == piece)
            .copied()
    }

    /// Whether `id` is a special piece (control or unknown).
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.kinds.get(id as usize),
            Some(Kind::Added { special: true })
        )
    }

    /// The ids of the pieces matched whole in text (control, unknown and user-defined).
    pub fn added_ids(&self) -> &[u32] {
        &self.added_ids
    }

    /// The ids of `text`: its special pieces as they are, the text between them merged.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        // llama.cpp gives the space prefix to a text part that starts the input or follows a
        // special piece: every text part, as special pieces are what cuts them apart.
        let text_part = |part: &str, out: &mut Vec<u32>| {
            if part.is_empty() {
                return;
            }
            let mut escaped = String::with_capacity(part.len() + 3);
            if self.add_space_prefix {
                escaped.push('\u{2581}');
            }
            escaped.push_str(&part.replace(' ', "\u{2581}"));
            self.merge(&escaped, out);
        };
        let mut at = 0;
        if let Some(added) = &self.added {
            for m in added.find_iter(text) {
                text_part(&text[at..m.start()], &mut out);
                out.push(self.added_ids[m.pattern().as_usize()]);
                at = m.end();
            }
        }
        text_part(&text[at..], &mut out);
        out
    }

    /// llama.cpp's `llm_tokenizer_spm_session::tokenize` of one escaped text part.
    fn merge(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            let end = start + c.len_utf8();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i as isize - 1,
                next: if end == text.len() {
                    -1
                } else {
                    i as isize + 1
                },
            });
        }
        let mut queue = BinaryHeap::new();
        let bigram = |symbols: &[Symbol], left: isize, right: isize| -> Option<Bigram> {
            if left < 0 || right < 0 {
                return None;
            }
            let (l, r) = (&symbols[left as usize], &symbols[right as usize]);
            let merged = &text[l.start..l.start + l.len + r.len];
            let id = self.id_of(merged)?;
            Some(Bigram {
                score: self.scores[id as usize],
                left: left as usize,
                right: right as usize,
                size: merged.len(),
            })
        };
        for i in 1..symbols.len() as isize {
            queue.extend(bigram(&symbols, i - 1, i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Stale: one side was merged into something else since.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if r.next >= 0 {
                symbols[r.next as usize].prev = b.left as isize;
            }
            let left = symbols[b.left];
            queue.extend(bigram(&symbols, left.prev, b.left as isize));
            queue.extend(bigram(&symbols, b.left as isize, left.next));
        }
        let mut i = if symbols.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = symbols[i as usize];
            let piece = &text[s.start..s.start + s.len];
            match self.id_of(piece) {
                Some(id) => out.push(id),
                None => out.extend(
                    piece
                        .bytes()
                        .filter_map(|b| self.byte_pieces[b as usize].or(self.unk_id)),
                ),
            }
            i = s.next;
        }
    }

    /// The text of `ids` (ids past the vocabulary are left out), as the `tokenizers` crate
    /// decodes a SentencePiece vocabulary: `▁` becomes a space, runs of byte pieces become their
    /// UTF-8 text (a run that is not valid UTF-8: one U+FFFD per byte), special pieces are
    /// left out when `skip_special`, and with the space prefix one leading space is dropped.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut out = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let flush = |bytes: &mut Vec<u8>, out: &mut String| {
            match std::str::from_utf8(bytes) {
                Ok(s) => out.push_str(s),
                Err(_) => out.extend(std::iter::repeat_n('\u{FFFD}', bytes.len())),
            }
            bytes.clear();
        };
        for &id in ids {
            let Some(&kind) = self.kinds.get(id as usize) else {
                continue;
            };
            match kind {
                Kind::Byte(b) => bytes.push(b),
                Kind::Added { special: true } if skip_special => {}
                _ => {
                    flush(&mut bytes, &mut out);
                    out.push_str(&self.piece(id).replace('\u{2581}', " "));
                }
            }
        }
        flush(&mut bytes, &mut out);
        if self.add_space_prefix && out.starts_with(' ') {
            out.remove(0);
        }
        out
    }

    /// Every piece's bytes as llguidance reads a vocabulary: text pieces with `▁` as a space,
    /// byte pieces as their byte, special pieces behind llguidance's special-token marker.
    pub fn token_bytes(&self, special_marker: u8) -> Vec<Vec<u8>> {
        (0..self.vocab_size() as u32)
            .map(|id| match self.kinds[id as usize] {
                Kind::Byte(b) => vec![b],
                Kind::Added { special: true } => {
                    let mut bytes = vec![special_marker];
                    bytes.extend_from_slice(self.piece(id).as_bytes());
                    bytes
                }
                Kind::Added { special: false } => self.piece(id).as_bytes().to_vec(),
                Kind::Text => self.piece(id).replace('\u{2581}', " ").into_bytes(),
            })
            .collect()
    }
}

/// `<0xXX>`: the byte piece of XX.
fn byte_of_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A run of the text part that the merge loop has built so far (`len` 0: merged away).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

/// Two neighbouring symbols whose text together is a piece.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    /// llama.cpp's queue order: the higher score first, then the leftmost.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Bigram {}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> SpmTokenizer {
        // Scores rank "▁ab" over "ab" over "b▁"; "<s>" is control, "<x>" user-defined.
        let pieces = vec![
            "<unk>", "<s>", "<x>", "▁", "a", "b", "ab", "▁a", "▁ab", "b▁", "<0xC3>", "<0xA9>",
        ];
        let n = pieces.len();
        let mut types = vec![token_type::NORMAL; n];
        types[0] = token_type::UNKNOWN;
        types[1] = token_type::CONTROL;
        types[2] = token_type::USER_DEFINED;
        types[10] = 6;
        types[11] = 6;
        let mut scores = vec![0.0; n];
        scores[6] = -2.0;
        scores[7] = -3.0;
        scores[8] = -1.0;
        scores[9] = -1.5;
        SpmTokenizer::new(&SpmVocabulary {
            pieces,
            scores,
            types,
            add_space_prefix: true,
            unk_id: Some(0),
        })
        .unwrap()
    }

    /// The best-scoring merge goes first ("b▁" before "ab" would take the b), special pieces
    /// are cut out whole, and a text part after one gets the space prefix again.
    #[test]
    fn merges_by_score_and_cuts_special_pieces() {
        let t = tiny();
        // "▁ab▁ab": b▁ (-1.5) merges first and takes the first b and the second ▁; then the
        // second ab (-2) (the better ▁ab cannot form: its ▁ is taken); ▁a (-3) last.
        assert_eq!(t.encode("ab ab"), vec![7, 9, 6]);
        assert_eq!(t.encode("ab"), vec![8]);
        assert_eq!(t.encode("<s>ab<x>a"), vec![1, 8, 2, 7]);
        assert_eq!(t.encode(""), Vec::<u32>::new());
    }

    /// Characters no piece covers fall back to byte pieces, or to the unknown piece.
    #[test]
    fn uncovered_characters_become_bytes() {
        let t = tiny();
        assert_eq!(t.encode("é"), vec![3, 10, 11]);
        assert_eq!(t.encode("ü"), vec![3, 10, 0]);
    }

    /// Decoding turns `▁` into spaces, byte runs into text, drops one leading space and skips
    /// control pieces on request (user-defined ones are text).
    #[test]
    fn decodes_spaces_bytes_and_special_pieces() {
        let t = tiny();
        assert_eq!(t.decode(&[8, 9, 10, 11], false), "abb é");
        assert_eq!(t.decode(&[1, 7, 2], false), "<s> a<x>");
        assert_eq!(t.decode(&[1, 7, 2], true), "a<x>");
        assert_eq!(t.decode(&[10], false), "\u{FFFD}");
        assert_eq!(t.decode(&[99], false), "");
    }
}
