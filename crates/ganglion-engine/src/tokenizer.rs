//! Byte-level BPE tokenizer built from GGUF metadata (`tokenizer.ggml.*`), plus the chat template.
//!
//! Matches Hugging Face `tokenizers` for GPT-2-style vocabularies: control tokens are split out
//! first, then the `smollm` pre-tokenizer (every numeric character isolated, then the GPT-2
//! regex), then byte-level BPE by merge rank. This module knows nothing about tensors.

use std::collections::HashMap;

use fancy_regex::Regex;

use crate::error::{EngineError, EngineResult};

/// The GPT-2 pre-tokenization pattern used by `ByteLevel(use_regex=true)`.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GGUF `tokenizer.ggml.token_type` value for control tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF `tokenizer.ggml.token_type` value for user-defined (added) tokens.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The raw vocabulary as stored in a GGUF file.
#[derive(Debug, Clone)]
pub struct VocabSpec {
    /// Token strings in byte-level form (`Ġ` for a space), indexed by id.
    pub tokens: Vec<String>,
    /// Token types (1 normal, 3 control, 4 user-defined…), same length as `tokens` or empty.
    pub token_types: Vec<i32>,
    /// BPE merges, `"left right"`, best first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.pre` (`smollm`, `gpt-2`, …).
    pub pre: String,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    /// Jinja chat template, if the model defines one.
    pub chat_template: Option<String>,
}

/// One chat message for [`Tokenizer::apply_chat_template`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Plain text content.
    pub content: String,
}

/// A byte-level BPE tokenizer.
#[derive(Debug)]
pub struct Tokenizer {
    tokens: Vec<String>,
    /// Byte-level form of each token decoded to raw bytes (special tokens: their text).
    token_bytes: Vec<Vec<u8>>,
    vocab: HashMap<String, u32>,
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Control and user-defined tokens, longest first, matched verbatim in text.
    specials: Vec<(String, u32)>,
    is_special: Vec<bool>,
    /// Id of each byte's byte-level character. A few bytes (e.g. 0x04 in SmolLM2) have none;
    /// like Hugging Face BPE without an unknown token, they are dropped when encoding.
    byte_ids: [Option<u32>; 256],
    split_digits: bool,
    regex: Regex,
    bos: Option<u32>,
    eos: Option<u32>,
    chat_template: Option<String>,
    /// Decoded bytes → the one token that decodes to them (None when several do); built on
    /// first use by [`Tokenizer::token_for_piece`].
    pieces: std::sync::OnceLock<HashMap<Vec<u8>, Option<u32>>>,
}

/// GPT-2's reversible byte → printable char map.
fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        map[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    map
}

impl Tokenizer {
    /// Builds a tokenizer from the GGUF vocabulary.
    pub fn from_spec(spec: VocabSpec) -> EngineResult<Self> {
        let VocabSpec { tokens, token_types, merges, pre, bos, eos, chat_template } = spec;
        if tokens.is_empty() {
            return Err(EngineError::Unsupported("the GGUF has an empty tokenizer vocabulary".into()));
        }
        let n = tokens.len();
        if !token_types.is_empty() && token_types.len() != n {
            return Err(EngineError::Unsupported(format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                token_types.len()
            )));
        }
        for (what, id) in [("bos", bos), ("eos", eos)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(EngineError::Unsupported(format!("{what} token id {id} is outside the vocabulary of {n}")));
            }
        }
        let mut vocab = HashMap::with_capacity(n);
        for (id, tok) in tokens.iter().enumerate() {
            vocab.entry(tok.clone()).or_insert(id as u32);
        }
        let b2c = byte_to_char();
        let mut c2b = HashMap::with_capacity(256);
        let mut byte_ids = [None; 256];
        for (b, c) in b2c.iter().enumerate() {
            c2b.insert(*c, b as u8);
            byte_ids[b] = vocab.get(&c.to_string()).copied();
        }
        if let Some(b) = (b' '..=b'~').find(|&b| byte_ids[b as usize].is_none()) {
            return Err(EngineError::Unsupported(format!(
                "the vocabulary lacks the byte-level token for {:?}, so it is not a byte-level BPE",
                b as char
            )));
        }
        let mut is_special = vec![false; n];
        let mut specials = Vec::new();
        for (id, ty) in token_types.iter().enumerate() {
            if *ty == TOKEN_TYPE_CONTROL || *ty == TOKEN_TYPE_USER_DEFINED {
                is_special[id] = true;
                if !tokens[id].is_empty() {
                    specials.push((tokens[id].clone(), id as u32));
                }
            }
        }
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let token_bytes = tokens
            .iter()
            .enumerate()
            .map(|(id, tok)| {
                if is_special[id] {
                    tok.as_bytes().to_vec()
                } else {
                    tok.chars().map(|c| c2b.get(&c).copied().unwrap_or(b'?')).collect()
                }
            })
            .collect();
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let Some((left, right)) = merge.split_once(' ') else {
                return Err(EngineError::Unsupported(format!("merge {rank} (`{merge}`) is not `left right`")));
            };
            let (Some(&l), Some(&r), Some(&m)) =
                (vocab.get(left), vocab.get(right), vocab.get(&format!("{left}{right}")))
            else {
                return Err(EngineError::Unsupported(format!("merge {rank} (`{merge}`) uses tokens missing from the vocabulary")));
            };
            merge_map.entry((l, r)).or_insert((rank as u32, m));
        }
        let split_digits = match pre.as_str() {
            "smollm" => true,
            "gpt-2" | "gpt2" | "default" | "" => false,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "tokenizer pre-tokenizer `{other}` (supported: smollm, gpt-2, default)"
                )));
            }
        };
        let regex = Regex::new(GPT2_PATTERN)
            .map_err(|e| EngineError::Unsupported(format!("pre-tokenizer pattern failed to compile: {e}")))?;
        Ok(Self {
            tokens,
            token_bytes,
            vocab,
            merges: merge_map,
            specials,
            is_special,
            byte_ids,
            split_digits,
            regex,
            bos,
            eos,
            chat_template,
            pieces: std::sync::OnceLock::new(),
        })
    }

    /// The token whose decoded text is exactly `piece`, when exactly one non-special token
    /// decodes to it. Servers that stream each token's text but not its id (llama.cpp's)
    /// can have their token path recovered this way.
    pub fn token_for_piece(&self, piece: &str) -> Option<u32> {
        let index = self.pieces.get_or_init(|| {
            let mut map: HashMap<Vec<u8>, Option<u32>> = HashMap::with_capacity(self.token_bytes.len());
            for (id, bytes) in self.token_bytes.iter().enumerate() {
                if self.is_special.get(id).copied().unwrap_or(false) || bytes.is_empty() {
                    continue;
                }
                map.entry(bytes.clone()).and_modify(|e| *e = None).or_insert(Some(id as u32));
            }
            map
        });
        index.get(piece.as_bytes()).copied().flatten()
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Beginning-of-sequence token id.
    pub fn bos_token(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token id.
    pub fn eos_token(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `id` is a control or user-defined token.
    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// Id of a token given in its byte-level form, e.g. `<|im_end|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Encodes text; control tokens written in the text (`<|im_start|>`) become their ids.
    /// No BOS is added (SmolLM2 does not use one).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match self.find_special(rest) {
                Some((start, len, id)) => {
                    self.encode_ordinary(&rest[..start], &mut ids);
                    ids.push(id);
                    rest = &rest[start + len..];
                }
                None => {
                    self.encode_ordinary(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    /// Encodes text treating special-token strings as ordinary text.
    pub fn encode_plain(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.encode_ordinary(text, &mut ids);
        ids
    }

    fn find_special(&self, text: &str) -> Option<(usize, usize, u32)> {
        let mut best: Option<(usize, usize, u32)> = None;
        for (s, id) in &self.specials {
            if let Some(pos) = text.find(s.as_str()) {
                // Earliest match wins; at equal positions the longer one (sorted first) wins.
                if best.is_none_or(|(p, _, _)| pos < p) {
                    best = Some((pos, s.len(), *id));
                }
            }
        }
        best
    }

    fn encode_ordinary(&self, text: &str, ids: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        if !self.split_digits {
            self.encode_regex_pieces(text, ids);
            return;
        }
        // `Digits(individual_digits=true)`: every numeric char is its own piece.
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                self.encode_regex_pieces(&text[start..i], ids);
                self.encode_regex_pieces(&text[i..i + c.len_utf8()], ids);
                start = i + c.len_utf8();
            }
        }
        self.encode_regex_pieces(&text[start..], ids);
    }

    fn encode_regex_pieces(&self, text: &str, ids: &mut Vec<u32>) {
        let mut pos = 0;
        while pos < text.len() {
            match self.regex.find_from_pos(text, pos) {
                Ok(Some(m)) if m.end() > pos => {
                    if m.start() > pos {
                        self.bpe(&text[pos..m.start()], ids);
                    }
                    self.bpe(m.as_str(), ids);
                    pos = m.end();
                }
                // No further match (or a pathological backtrack limit): the rest is one piece.
                _ => {
                    self.bpe(&text[pos..], ids);
                    break;
                }
            }
        }
    }

    /// Byte-level BPE of one pre-token.
    fn bpe(&self, piece: &str, ids: &mut Vec<u32>) {
        let mut word: Vec<u32> = piece.bytes().filter_map(|b| self.byte_ids[b as usize]).collect();
        while word.len() > 1 {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..word.len() - 1 {
                if let Some(&(rank, merged)) = self.merges.get(&(word[i], word[i + 1]))
                    && best.is_none_or(|(r, _, _)| rank < r)
                {
                    best = Some((rank, i, merged));
                }
            }
            let Some((_, at, merged)) = best else { break };
            // Merge every occurrence of this pair, left to right.
            let (left, right) = (word[at], word[at + 1]);
            let mut out = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == left && word[i + 1] == right {
                    out.push(merged);
                    i += 2;
                } else {
                    out.push(word[i]);
                    i += 1;
                }
            }
            word = out;
        }
        ids.extend_from_slice(&word);
    }

    /// Raw bytes of one token (special tokens: their text). Unknown ids give no bytes.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], |b| b.as_slice())
    }

    /// Display text of one token (lossy for tokens that end inside a UTF-8 character).
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }

    /// Decodes ids to text; invalid UTF-8 is replaced with U+FFFD. Special tokens are kept
    /// unless `skip_special` is set.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, skip_special)).into_owned()
    }

    /// Decodes ids to raw bytes.
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            if skip_special && self.is_special(id) {
                continue;
            }
            out.extend_from_slice(self.token_bytes(id));
        }
        out
    }

    /// Whether the model ships a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders the model's own chat template (`tokenizer.chat_template`) to text.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> EngineResult<String> {
        let Some(template) = &self.chat_template else {
            return Err(EngineError::Template(
                "the model defines no chat template; use the completions endpoint with a raw prompt".into(),
            ));
        };
        let mut env = minijinja::Environment::new();
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", template).map_err(|e| EngineError::Template(e.to_string()))?;
        let tmpl = env.get_template("chat").map_err(|e| EngineError::Template(e.to_string()))?;
        let special = |id: Option<u32>| id.map(|i| self.token_text(i)).unwrap_or_default();
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => special(self.bos),
            eos_token => special(self.eos),
        })
        .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// Applies the chat template and encodes the result (special tokens parsed).
    pub fn encode_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> EngineResult<Vec<u32>> {
        Ok(self.encode(&self.apply_chat_template(messages, add_generation_prompt)?))
    }
}

/// Turns a stream of token ids into UTF-8 text pieces, holding back incomplete characters.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Adds one token and returns the text that became complete.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tokenizer.token_bytes(id));
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // A genuinely invalid sequence: emit it lossily now rather than holding it forever.
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    /// Flushes whatever is left (lossily).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// A tiny byte-level vocabulary (the 256 byte tokens, a few merges, three ChatML control
/// tokens and a ChatML template), for tests and plumbing without a real model.
pub fn tiny_byte_level_spec() -> VocabSpec {
    let b2c = byte_to_char();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    tokens.extend(b2c.iter().map(|c| c.to_string()));
    let merges = vec!["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"];
    for m in &merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut token_types = vec![3, 3, 3];
    token_types.resize(tokens.len(), 1);
    VocabSpec {
        tokens,
        token_types,
        merges: merges.into_iter().map(String::from).collect(),
        pre: "smollm".into(),
        bos: Some(1),
        eos: Some(2),
        chat_template: Some(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}".into(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tiny_spec() -> VocabSpec {
        tiny_byte_level_spec()
    }

    #[test]
    fn bpe_applies_merges_by_rank() {
        let tok = Tokenizer::from_spec(tiny_spec()).unwrap();
        let ids = tok.encode("hello wo");
        let pieces: Vec<String> = ids.iter().map(|&i| tok.tokens[i as usize].clone()).collect();
        assert_eq!(pieces, vec!["hello", "Ġwo"]);
        assert_eq!(tok.decode(&ids, false), "hello wo");
    }

    #[test]
    fn digits_are_split_and_specials_matched() {
        let tok = Tokenizer::from_spec(tiny_spec()).unwrap();
        let ids = tok.encode("<|im_start|>a12<|im_end|>");
        assert_eq!(ids[0], 1);
        assert_eq!(*ids.last().unwrap(), 2);
        assert_eq!(ids.len(), 5, "a, 1, 2 must be separate tokens: {ids:?}");
        assert_eq!(tok.decode(&ids, true), "a12");
        // Plain encoding does not parse special tokens.
        assert!(tok.encode_plain("<|im_end|>").len() > 1);
    }

    #[test]
    fn round_trips_arbitrary_bytes() {
        let tok = Tokenizer::from_spec(tiny_spec()).unwrap();
        for text in ["", "  \n\t x", "naïve 日本 😀", "don't 3.14"] {
            assert_eq!(tok.decode(&tok.encode(text), false), text);
        }
    }

    #[test]
    fn stream_decoder_holds_partial_utf8() {
        let tok = Tokenizer::from_spec(tiny_spec()).unwrap();
        let ids = tok.encode("é!");
        assert_eq!(ids.len(), 3, "é is two byte tokens");
        let mut dec = StreamDecoder::default();
        assert_eq!(dec.push(&tok, ids[0]), "");
        assert_eq!(dec.push(&tok, ids[1]), "é");
        assert_eq!(dec.push(&tok, ids[2]), "!");
        assert_eq!(dec.finish(), "");
    }

    #[test]
    fn chat_template_renders_chatml() {
        let tok = Tokenizer::from_spec(tiny_spec()).unwrap();
        let msgs = [ChatMessage { role: "user".into(), content: "hi".into() }];
        let text = tok.apply_chat_template(&msgs, true).unwrap();
        assert_eq!(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        let ids = tok.encode_chat(&msgs, true).unwrap();
        assert_eq!(ids[0], 1);
    }

    #[test]
    fn rejects_non_byte_level_vocabularies() {
        let mut spec = tiny_spec();
        spec.tokens.truncate(40);
        spec.token_types.truncate(40);
        spec.merges.clear();
        let err = Tokenizer::from_spec(spec).unwrap_err();
        assert!(err.to_string().contains("byte-level"), "{err}");
    }
}
