//! Tokenizers (Hugging Face `tokenizers`) built from GGUF metadata (`tokenizer.ggml.*`) the way
//! llama.cpp's `llama-vocab.cpp` reads it, or from a Hugging Face `tokenizer.json`; plus the
//! model's chat template rendered with minijinja as transformers renders it.
//!
//! Two GGUF tokenizer models are supported:
//! * `gpt2` — byte-level BPE by merge rank, after the regex pre-tokenizer that
//!   `tokenizer.ggml.pre` names (`smollm`, `gpt-2`, `llama-bpe`, `qwen2`, `default`…), each with
//!   llama.cpp's exact regexes, applied in sequence;
//! * `llama` — SentencePiece BPE (Llama 2, Gemma): merges derived from the vocabulary and the
//!   scores (as transformers' `SentencePieceExtractor` does), `▁` for spaces, byte fallback to
//!   `<0xXX>` tokens and llama.cpp's `add_space_prefix` rule.
//!
//! Control, user-defined and unknown tokens written in the text are split out first (leftmost
//! longest), then each stretch of ordinary text goes through the Hugging Face pipeline.
//! This module knows nothing about tensors.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{EngineError, EngineResult};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_NORMAL: i32 = 1;
const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;
const TOKEN_TYPE_BYTE: i32 = 6;

/// llama.cpp's GPT-2 regex (`LLAMA_VOCAB_PRE_TYPE_GPT2`).
const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// llama.cpp's Llama-3 regex (`LLAMA_VOCAB_PRE_TYPE_LLAMA3`; case-insensitive contractions spelled out).
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's Qwen2 regex (`LLAMA_VOCAB_PRE_TYPE_QWEN2`): Llama-3's with single digits.
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's Qwen3.5 regex (`LLAMA_VOCAB_PRE_TYPE_QWEN35`): Qwen2's with combining marks in words.
const RE_QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Google's Gemma 3 chat template (the `chat_template` of google/gemma-3-*-it's
/// tokenizer_config.json), for Gemma GGUFs that carry none.
pub const GEMMA3_CHAT_TEMPLATE: &str = "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n";

/// The ChatML template, for byte-level vocabularies with `<|im_start|>` that carry no template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The raw vocabulary as stored in a GGUF file (`tokenizer.ggml.*`).
#[derive(Debug, Clone, Default)]
pub struct VocabSpec {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// Token strings (`Ġ` for a space in byte-level form, `▁` in SentencePiece form), by id.
    pub tokens: Vec<String>,
    /// Token scores (SentencePiece merge priorities), same length as `tokens` or empty.
    pub scores: Vec<f32>,
    /// Token types (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte…), same length as
    /// `tokens` or empty.
    pub token_types: Vec<i32>,
    /// BPE merges, `"left right"`, best first (`gpt2` only).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.pre` (`smollm`, `gpt-2`, `llama-bpe`, `qwen2`, `default`…).
    pub pre: String,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    /// Unknown-token id.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; absent: llama.cpp's default for the model and pre-tokenizer.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`; absent: llama.cpp's default (on for SentencePiece).
    pub add_space_prefix: Option<bool>,
    /// `general.architecture` (`llama`, `gemma3`…), to pick a built-in chat template.
    pub architecture: String,
    /// Jinja chat template, if the model defines one.
    pub chat_template: Option<String>,
}

impl VocabSpec {
    /// Reads `tokenizer.*` from GGUF metadata whose `tokenizer.ggml.tokens` were already read
    /// (`tokens`), as llama.cpp's llama-vocab.cpp does; `path` names the file in errors.
    pub fn from_gguf_metadata(
        md: &HashMap<String, gguf_file::Value>,
        tokens: Vec<String>,
        architecture: &str,
        path: &Path,
    ) -> EngineResult<Self> {
        let corrupt = |key: &str, e: &dyn std::fmt::Display| EngineError::CorruptModel {
            path: path.to_path_buf(),
            reason: format!("`{key}`: {e}"),
        };
        let opt_string = |key: &str| md.get(key).and_then(|v| v.to_string().ok().cloned());
        let opt_bool = |key: &str| md.get(key).and_then(|v| v.to_bool().ok());
        let opt_u32 = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let array = |key: &str| -> EngineResult<Vec<gguf_file::Value>> {
            md.get(key).map_or(Ok(Vec::new()), |v| v.to_vec().cloned().map_err(|e| corrupt(key, &e)))
        };
        let model = opt_string("tokenizer.ggml.model").ok_or_else(|| corrupt("tokenizer.ggml.model", &"missing"))?;
        let scores = array("tokenizer.ggml.scores")?
            .iter()
            .map(|s| s.to_f32().or_else(|_| s.to_i32().map(|i| i as f32)).map_err(|e| corrupt("tokenizer.ggml.scores", &e)))
            .collect::<EngineResult<_>>()?;
        let token_types = array("tokenizer.ggml.token_type")?
            .iter()
            .map(|t| t.to_i32().map_err(|e| corrupt("tokenizer.ggml.token_type", &e)))
            .collect::<EngineResult<_>>()?;
        let merges = array("tokenizer.ggml.merges")?
            .iter()
            .map(|m| m.to_string().cloned().map_err(|e| corrupt("tokenizer.ggml.merges", &e)))
            .collect::<EngineResult<_>>()?;
        Ok(Self {
            model,
            tokens,
            scores,
            token_types,
            merges,
            pre: opt_string("tokenizer.ggml.pre").unwrap_or_default(),
            bos: opt_u32("tokenizer.ggml.bos_token_id"),
            eos: opt_u32("tokenizer.ggml.eos_token_id"),
            unk: opt_u32("tokenizer.ggml.unknown_token_id"),
            add_bos: opt_bool("tokenizer.ggml.add_bos_token"),
            add_space_prefix: opt_bool("tokenizer.ggml.add_space_prefix"),
            architecture: architecture.to_string(),
            chat_template: opt_string("tokenizer.chat_template"),
        })
    }

    /// Reads the vocabulary of a GGUF file (vocab-only ones included) without its tensors.
    pub fn from_gguf(path: &Path) -> EngineResult<Self> {
        Ok(Self::from_gguf_with_context(path)?.0)
    }

    /// [`VocabSpec::from_gguf`], plus the model's context length
    /// (`<general.architecture>.context_length`) if the header states one: all a client of an
    /// upstream server needs of a GGUF, read from its header without any tensor.
    pub fn from_gguf_with_context(path: &Path) -> EngineResult<(Self, Option<usize>)> {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| EngineError::CorruptModel { path: path.to_path_buf(), reason: e.to_string() })?;
        let md = &content.metadata;
        let tokens = md
            .get("tokenizer.ggml.tokens")
            .ok_or_else(|| EngineError::CorruptModel { path: path.to_path_buf(), reason: "no tokenizer.ggml.tokens".into() })?
            .to_vec()
            .and_then(|arr| arr.iter().map(|t| t.to_string().cloned()).collect::<Result<Vec<_>, _>>())
            .map_err(|e| EngineError::CorruptModel { path: path.to_path_buf(), reason: format!("`tokenizer.ggml.tokens`: {e}") })?;
        let arch = md.get("general.architecture").and_then(|v| v.to_string().ok().cloned()).unwrap_or_default();
        let context = md
            .get(&format!("{arch}.context_length"))
            .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
            .and_then(|n| usize::try_from(n).ok());
        Ok((Self::from_gguf_metadata(md, tokens, &arch, path)?, context))
    }
}

impl Tokenizer {
    /// The tokenizer of a GGUF and the model's context length, from the file's header alone
    /// (no tensor is read): what a client of an upstream server needs of the model file.
    pub fn from_gguf_with_context(path: &Path) -> EngineResult<(Tokenizer, Option<usize>)> {
        let (spec, context) = VocabSpec::from_gguf_with_context(path)?;
        Ok((Tokenizer::from_spec(spec)?, context))
    }
}

/// One chat message for [`Tokenizer::apply_chat_template`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Plain text content.
    pub content: String,
}

/// How ordinary text becomes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Byte-level BPE (GGUF `gpt2`).
    ByteLevel,
    /// SentencePiece BPE (GGUF `llama`); `add_space_prefix` as llama.cpp applies it.
    SentencePiece { add_space_prefix: bool },
    /// Whatever the `tokenizer.json` pipeline does.
    HuggingFace,
}

/// A tokenizer: special-token splitting, a Hugging Face pipeline for ordinary text, exact token
/// bytes and the compiled chat template.
pub struct Tokenizer {
    hf: tokenizers::Tokenizer,
    kind: Kind,
    tokens: Vec<String>,
    /// The exact bytes each token stands for (special tokens: their text).
    token_bytes: Vec<Vec<u8>>,
    vocab: HashMap<String, u32>,
    is_special: Vec<bool>,
    /// Control, user-defined and unknown tokens, matched in [`Tokenizer::encode`].
    specials: Option<(AhoCorasick, Vec<u32>)>,
    /// User-defined tokens only, matched in [`Tokenizer::encode_plain`] (as llama.cpp does with
    /// `parse_special = false`).
    user_defined: Option<(AhoCorasick, Vec<u32>)>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    chat: Option<minijinja::Environment<'static>>,
    /// Decoded bytes → the one token that decodes to them (None when several do); built on
    /// first use by [`Tokenizer::token_for_piece`].
    pieces: OnceLock<HashMap<Vec<u8>, Option<u32>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("has_chat_template", &self.chat.is_some())
            .finish_non_exhaustive()
    }
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

fn unsupported(what: impl std::fmt::Display) -> EngineError {
    EngineError::Unsupported(what.to_string())
}

/// llama.cpp's regexes for a `tokenizer.ggml.pre` name, applied one after the other, and
/// whether whole words found in the vocabulary skip the merges (`ignore_merges`).
fn pre_regexes(pre: &str) -> EngineResult<(Vec<&'static str>, bool)> {
    Ok(match pre {
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => (vec![r"\p{N}", RE_GPT2], false),
        "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de" | "mpt" | "olmo" | "roberta-bpe" => {
            (vec![RE_GPT2], false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => (vec![RE_LLAMA3], true),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" => (vec![RE_QWEN2], false),
        "qwen35" => (vec![RE_QWEN35], false),
        "falcon" => (vec![r"[\p{P}\$\+<=>\^~\|`]+", RE_GPT2, "[0-9][0-9][0-9]"], false),
        "deepseek-coder" => (vec![r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", r"\p{N}"], false),
        "default" | "" => (vec![r"[\p{P}\$\+<=>\^~\|]+", RE_GPT2, r"\p{N}+", "[0-9][0-9][0-9]"], false),
        other => {
            return Err(unsupported(format!(
                "tokenizer pre-tokenizer `{other}` (supported: smollm, gpt-2, llama-bpe, qwen2, qwen35, falcon, deepseek-coder, default and their aliases)"
            )));
        }
    })
}

/// Leftmost-longest matcher over the given tokens.
fn matcher(tokens: &[String], ids: Vec<u32>) -> EngineResult<Option<(AhoCorasick, Vec<u32>)>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let patterns: Vec<&str> = ids.iter().map(|&id| tokens[id as usize].as_str()).collect();
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(patterns)
        .map_err(|e| unsupported(format!("special tokens cannot be matched: {e}")))?;
    Ok(Some((ac, ids)))
}

/// The byte a SentencePiece `<0xXX>` token stands for.
fn byte_token(tok: &str) -> Option<u8> {
    let hex = tok.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Builds a tokenizer from the GGUF vocabulary.
    pub fn from_spec(spec: VocabSpec) -> EngineResult<Self> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(unsupported("the GGUF has an empty tokenizer vocabulary"));
        }
        if n > u32::MAX as usize {
            return Err(unsupported(format!("a vocabulary of {n} tokens")));
        }
        for (what, len) in [("token_type", spec.token_types.len()), ("scores", spec.scores.len())] {
            if len != 0 && len != n {
                return Err(unsupported(format!("tokenizer.ggml.{what} has {len} entries for {n} tokens")));
            }
        }
        for (what, id) in [("bos", spec.bos), ("eos", spec.eos), ("unk", spec.unk)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(unsupported(format!("{what} token id {id} is outside the vocabulary of {n}")));
            }
        }
        let ty = |id: usize| spec.token_types.get(id).copied().unwrap_or(TOKEN_TYPE_NORMAL);
        let mut vocab = HashMap::with_capacity(n);
        for (id, tok) in spec.tokens.iter().enumerate() {
            vocab.entry(tok.clone()).or_insert(id as u32);
        }
        let is_special: Vec<bool> =
            (0..n).map(|id| matches!(ty(id), TOKEN_TYPE_UNKNOWN | TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED)).collect();

        let (kind, hf, token_bytes, add_bos_default) = match spec.model.as_str() {
            "gpt2" | "" => {
                let b2c = byte_to_char();
                let c2b: HashMap<char, u8> = b2c.iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
                if let Some(b) = (b' '..=b'~').find(|&b| !vocab.contains_key(&b2c[b as usize].to_string())) {
                    return Err(unsupported(format!(
                        "the vocabulary lacks the byte-level token for {:?}, so it is not a byte-level BPE",
                        b as char
                    )));
                }
                let (regexes, ignore_merges) = pre_regexes(&spec.pre)?;
                let mut merges = Vec::with_capacity(spec.merges.len());
                for (rank, merge) in spec.merges.iter().enumerate() {
                    let Some((left, right)) = merge.split_once(' ') else {
                        return Err(unsupported(format!("merge {rank} (`{merge}`) is not `left right`")));
                    };
                    if !vocab.contains_key(left) || !vocab.contains_key(right) || !vocab.contains_key(&format!("{left}{right}")) {
                        return Err(unsupported(format!("merge {rank} (`{merge}`) uses tokens missing from the vocabulary")));
                    }
                    merges.push((left.to_string(), right.to_string()));
                }
                let model = BPE::builder()
                    .vocab_and_merges(model_vocab(&spec.tokens), merges)
                    .ignore_merges(ignore_merges)
                    .build()
                    .map_err(|e| unsupported(format!("the BPE model cannot be built: {e}")))?;
                let mut pre: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
                for re in regexes {
                    let split = Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false)
                        .map_err(|e| unsupported(format!("pre-tokenizer regex `{re}` failed to compile: {e}")))?;
                    pre.push(split.into());
                }
                pre.push(ByteLevel::new(false, false, false).into());
                let mut hf = tokenizers::Tokenizer::new(model);
                hf.with_pre_tokenizer(Some(Sequence::new(pre)));
                let token_bytes = spec
                    .tokens
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
                // llama.cpp adds BOS by default for the Llama-3 pre-tokenizer only.
                let add_bos_default = matches!(spec.pre.as_str(), "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral");
                (Kind::ByteLevel, hf, token_bytes, add_bos_default)
            }
            "llama" => {
                let merges = spm_merges(&spec, &vocab, &ty);
                let mut builder = BPE::builder().vocab_and_merges(model_vocab(&spec.tokens), merges).byte_fallback(true).fuse_unk(true);
                if let Some(unk) = spec.unk.or_else(|| vocab.get("<unk>").copied()) {
                    builder = builder.unk_token(spec.tokens[unk as usize].clone());
                }
                let model = builder.build().map_err(|e| unsupported(format!("the SentencePiece model cannot be built: {e}")))?;
                let mut hf = tokenizers::Tokenizer::new(model);
                let replace = Replace::new(" ", "▁").map_err(|e| unsupported(format!("normalizer: {e}")))?;
                hf.with_normalizer(Some(replace)).map_err(|e| unsupported(format!("normalizer: {e}")))?;
                let token_bytes = spec
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(id, tok)| match ty(id) {
                        TOKEN_TYPE_BYTE => byte_token(tok).map_or_else(|| tok.as_bytes().to_vec(), |b| vec![b]),
                        TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED | TOKEN_TYPE_UNKNOWN => tok.as_bytes().to_vec(),
                        _ => tok.replace('▁', " ").into_bytes(),
                    })
                    .collect();
                let kind = Kind::SentencePiece { add_space_prefix: spec.add_space_prefix.unwrap_or(true) };
                (kind, hf, token_bytes, true)
            }
            other => return Err(unsupported(format!("tokenizer model `{other}` (supported: gpt2, llama)"))),
        };

        let specials_of = |types: &[i32]| -> Vec<u32> {
            (0..n).filter(|&id| types.contains(&ty(id)) && !spec.tokens[id].is_empty()).map(|id| id as u32).collect()
        };
        let specials = matcher(&spec.tokens, specials_of(&[TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED]))?;
        let user_defined = matcher(&spec.tokens, specials_of(&[TOKEN_TYPE_USER_DEFINED]))?;
        let template = spec.chat_template.clone().filter(|t| !t.trim().is_empty()).or_else(|| builtin_template(&spec, &vocab));
        let mut tok = Self {
            hf,
            kind,
            tokens: spec.tokens,
            token_bytes,
            vocab,
            is_special,
            specials,
            user_defined,
            bos: spec.bos,
            eos: spec.eos,
            add_bos: spec.add_bos.unwrap_or(add_bos_default) && spec.bos.is_some(),
            chat: None,
            pieces: OnceLock::new(),
        };
        if let Some(template) = template {
            tok.chat = Some(tok.compile_template(template)?);
        }
        Ok(tok)
    }

    /// Builds a tokenizer from a Hugging Face `tokenizer.json` (its own normalizer,
    /// pre-tokenizer, model and added tokens); `chat_template`, `bos` and `eos` come from the
    /// model's `tokenizer_config.json` when it has them.
    pub fn from_tokenizer_json(
        json: &[u8],
        chat_template: Option<String>,
        bos: Option<&str>,
        eos: Option<&str>,
    ) -> EngineResult<Self> {
        let mut hf = tokenizers::Tokenizer::from_bytes(json).map_err(|e| unsupported(format!("tokenizer.json: {e}")))?;
        let n = hf.get_vocab_size(true);
        let mut tokens = vec![String::new(); n];
        for (tok, id) in hf.get_vocab(true) {
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = tok;
            }
        }
        let mut vocab = HashMap::with_capacity(n);
        for (id, tok) in tokens.iter().enumerate() {
            vocab.entry(tok.clone()).or_insert(id as u32);
        }
        let added = hf.get_added_tokens_decoder();
        let mut is_special = vec![false; n];
        let (mut special_ids, mut user_ids) = (Vec::new(), Vec::new());
        for (id, t) in &added {
            if let Some(s) = is_special.get_mut(*id as usize) {
                *s = true;
                special_ids.push(*id);
                if !t.special {
                    user_ids.push(*id);
                }
            }
        }
        special_ids.sort_unstable();
        user_ids.sort_unstable();
        // Byte-level vocabularies decode through the GPT-2 byte map; the others SentencePiece-style.
        let json_text = String::from_utf8_lossy(json);
        let byte_level = json_text.contains("\"ByteLevel\"");
        let b2c = byte_to_char();
        let c2b: HashMap<char, u8> = b2c.iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
        let token_bytes = tokens
            .iter()
            .enumerate()
            .map(|(id, tok)| {
                if is_special[id] {
                    tok.as_bytes().to_vec()
                } else if byte_level {
                    tok.chars().map(|c| c2b.get(&c).copied().unwrap_or(b'?')).collect()
                } else if let Some(b) = byte_token(tok) {
                    vec![b]
                } else {
                    tok.replace('▁', " ").into_bytes()
                }
            })
            .collect();
        // BOS: whatever the post-processor adds in front when asked to add special tokens.
        let with = hf.encode_fast("a", true).map_err(|e| unsupported(format!("tokenizer.json: {e}")))?;
        let without = hf.encode_fast("a", false).map_err(|e| unsupported(format!("tokenizer.json: {e}")))?;
        let added_bos = (with.get_ids().len() > without.get_ids().len()).then(|| with.get_ids().first().copied()).flatten();
        let bos = bos.and_then(|b| vocab.get(b).copied()).or(added_bos);
        let eos = eos.and_then(|e| vocab.get(e).copied());
        // Special added tokens are split out by us (so `encode_plain` can leave them as text).
        hf.set_encode_special_tokens(true);
        let specials = matcher(&tokens, special_ids)?;
        let user_defined = matcher(&tokens, user_ids)?;
        let mut tok = Self {
            hf,
            kind: Kind::HuggingFace,
            tokens,
            token_bytes,
            vocab,
            is_special,
            specials,
            user_defined,
            bos,
            eos,
            add_bos: added_bos.is_some(),
            chat: None,
            pieces: OnceLock::new(),
        };
        if let Some(template) = chat_template {
            tok.chat = Some(tok.compile_template(template)?);
        }
        Ok(tok)
    }

    /// [`Tokenizer::from_tokenizer_json`] on a file.
    pub fn from_tokenizer_json_file(path: &Path) -> EngineResult<Self> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        Self::from_tokenizer_json(&bytes, None, None, None)
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

    /// The tokens that end a generation: EOS, and the end-of-turn tokens llama.cpp also
    /// treats as end of generation when the vocabulary has them as special tokens
    /// (`<|im_end|>` for ChatML models, `<end_of_turn>` for Gemma, `<|eot_id|>` for
    /// Llama 3, …). A chat answer ends at its end-of-turn token, not at EOS.
    pub fn end_of_generation(&self) -> Vec<u32> {
        const END_OF_TURN: &[&str] = &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|eom_id|>",
            "<EOT>",
            "_<EOT>",
            "<|end_of_text|>",
            "</s>",
        ];
        let mut ids: Vec<u32> = self.eos.into_iter().collect();
        for name in END_OF_TURN {
            if let Some(id) = self.token_id(name).filter(|&id| self.is_special(id))
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// Whether [`Tokenizer::encode`] puts the BOS token in front (`tokenizer.ggml.add_bos_token`:
    /// Gemma yes, SmolLM2 no).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `id` is a control, user-defined or unknown token.
    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// Id of a token given in its vocabulary form, e.g. `<|im_end|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Encodes text as llama.cpp does with `add_special` and `parse_special`: the BOS token
    /// first when the model asks for it, and control tokens written in the text
    /// (`<|im_start|>`, `<start_of_turn>`) become their ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos
            && let Some(bos) = self.bos
        {
            ids.push(bos);
        }
        self.encode_with(text, self.specials.as_ref(), &mut ids);
        ids
    }

    /// Encodes text treating control-token strings as ordinary text (llama.cpp's
    /// `parse_special = false`; user-defined tokens are still matched), without BOS.
    pub fn encode_plain(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_with(text, self.user_defined.as_ref(), &mut ids);
        ids
    }

    fn encode_with(&self, text: &str, specials: Option<&(AhoCorasick, Vec<u32>)>, ids: &mut Vec<u32>) {
        // As llama.cpp's SentencePiece path: a space is prefixed to text that starts the input
        // or follows a special token.
        let mut prev_special = true;
        let mut start = 0;
        if let Some((ac, special_ids)) = specials {
            for m in ac.find_iter(text) {
                if m.start() > start {
                    self.encode_ordinary(&text[start..m.start()], prev_special, ids);
                }
                ids.push(special_ids[m.pattern().as_usize()]);
                prev_special = true;
                start = m.end();
            }
        }
        if start < text.len() {
            self.encode_ordinary(&text[start..], prev_special, ids);
        }
    }

    fn encode_ordinary(&self, text: &str, after_special: bool, ids: &mut Vec<u32>) {
        let prefixed;
        let text = match self.kind {
            Kind::SentencePiece { add_space_prefix: true } if after_special => {
                prefixed = format!(" {text}");
                prefixed.as_str()
            }
            _ => text,
        };
        match self.hf.encode_fast(text, false) {
            Ok(enc) => ids.extend_from_slice(enc.get_ids()),
            // The pipelines built here cannot fail on a &str; a tokenizer.json one might.
            Err(e) => tracing::warn!(error = %e, "tokenizer failed on a piece of text; it was dropped"),
        }
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

    /// Whether the model ships a chat template (or has a built-in one: Gemma, ChatML).
    pub fn has_chat_template(&self) -> bool {
        self.chat.is_some()
    }

    /// The chat template's source, if the model has one.
    pub fn chat_template(&self) -> Option<String> {
        self.chat.as_ref()?.get_template("chat").ok().map(|t| t.source().to_string())
    }

    /// This tokenizer as a Hugging Face `tokenizer.json` (what [`Tokenizer::from_tokenizer_json`]
    /// and transformers' `PreTrainedTokenizerFast` read): the BPE model and pre-tokenizer, the
    /// control and user-defined tokens as added tokens, a byte-level decoder and, when the
    /// model adds BOS, a post-processor that does. Byte-level vocabularies only (a
    /// SentencePiece one would also need llama.cpp's `add_space_prefix` rule spelled as
    /// normalizers).
    pub fn to_tokenizer_json(&self) -> EngineResult<String> {
        use tokenizers::processors::template::TemplateProcessing;
        use tokenizers::AddedToken;
        if !matches!(self.kind, Kind::ByteLevel | Kind::HuggingFace) {
            return Err(unsupported("writing a tokenizer.json for a SentencePiece vocabulary (byte-level BPE only)"));
        }
        let mut hf = self.hf.clone();
        if matches!(self.kind, Kind::ByteLevel) {
            let user: &[u32] = self.user_defined.as_ref().map_or(&[], |(_, ids)| ids.as_slice());
            let added: Vec<AddedToken> = (0..self.tokens.len())
                .filter(|&id| self.is_special[id] && !self.tokens[id].is_empty())
                .map(|id| AddedToken::from(self.tokens[id].clone(), !user.contains(&(id as u32))))
                .collect();
            hf.add_special_tokens(added).map_err(|e| unsupported(format!("added tokens: {e}")))?;
            hf.with_decoder(Some(ByteLevel::default()));
            if let (true, Some(bos)) = (self.add_bos, self.bos) {
                let text = self.tokens[bos as usize].clone();
                let post = TemplateProcessing::builder()
                    .try_single(format!("{text}:0 $A:0"))
                    .and_then(|b| b.try_pair(format!("{text}:0 $A:0 {text}:1 $B:1")))
                    .map_err(|e| unsupported(format!("BOS post-processor: {e}")))?
                    .special_tokens(vec![(text, bos)])
                    .build()
                    .map_err(|e| unsupported(format!("BOS post-processor: {e}")))?;
                hf.with_post_processor(Some(post));
            }
        }
        hf.to_string(true).map_err(|e| unsupported(format!("serialising tokenizer.json: {e}")))
    }

    fn compile_template(&self, template: String) -> EngineResult<minijinja::Environment<'static>> {
        let mut env = minijinja::Environment::new();
        // transformers renders with an ImmutableSandboxedEnvironment(trim_blocks=True,
        // lstrip_blocks=True) plus loop controls, `raise_exception`, `strftime_now` and a `tojson`
        // filter that is Python's json.dumps.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |format: String| -> String { strftime_now(&format) });
        env.add_filter("tojson", tojson);
        let special = |id: Option<u32>| id.map(|i| self.token_text(i)).unwrap_or_default();
        env.add_global("bos_token", special(self.bos));
        env.add_global("eos_token", special(self.eos));
        env.add_template_owned("chat", template).map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(env)
    }

    /// Renders the model's chat template (`tokenizer.chat_template`, or the built-in one) to text.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> EngineResult<String> {
        let Some(env) = &self.chat else {
            return Err(EngineError::Template(
                "the model defines no chat template; use the completions endpoint with a raw prompt".into(),
            ));
        };
        let tmpl = env.get_template("chat").map_err(|e| EngineError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
        })
        .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// Applies the chat template and encodes the result (special tokens parsed). The template
    /// writes the BOS token itself where the model wants one (Gemma's does); when it does not
    /// but the model adds BOS, it is put in front (llama.cpp's server does the same).
    pub fn encode_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> EngineResult<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos
            && let Some(bos) = self.bos
            && !self.tokens.get(bos as usize).is_some_and(|b| !b.is_empty() && text.starts_with(b.as_str()))
        {
            ids.push(bos);
        }
        self.encode_with(&text, self.specials.as_ref(), &mut ids);
        Ok(ids)
    }
}

/// The model vocabulary for a BPE: each token's first id.
fn model_vocab(tokens: &[String]) -> tokenizers::models::bpe::Vocab {
    let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(tokens.len());
    for (id, tok) in tokens.iter().enumerate() {
        vocab.entry(tok.clone()).or_insert(id as u32);
    }
    vocab
}

/// SentencePiece BPE merges from the vocabulary and scores, as transformers'
/// `SentencePieceExtractor` derives them: every split of a normal token into two vocabulary
/// pieces, best score of the merged token first (llama.cpp merges the adjacent pair whose
/// concatenation is the best-scoring token, which is the same order).
fn spm_merges(spec: &VocabSpec, vocab: &HashMap<String, u32>, ty: &dyn Fn(usize) -> i32) -> Vec<(String, String)> {
    let score = |id: usize| spec.scores.get(id).copied().unwrap_or(-(id as f32));
    let mut found: Vec<(f32, u32, u32, u32, usize)> = Vec::new();
    for (id, tok) in spec.tokens.iter().enumerate() {
        if ty(id) != TOKEN_TYPE_NORMAL || vocab.get(tok) != Some(&(id as u32)) {
            continue;
        }
        for (at, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(at);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                found.push((score(id), id as u32, li, ri, at));
            }
        }
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
    found
        .into_iter()
        .map(|(_, id, _, _, at)| {
            let (l, r) = spec.tokens[id as usize].split_at(at);
            (l.to_string(), r.to_string())
        })
        .collect()
}

/// A built-in chat template for a GGUF that carries none: Google's Gemma 3 template for Gemma
/// vocabularies, ChatML for vocabularies with `<|im_start|>`/`<|im_end|>`.
fn builtin_template(spec: &VocabSpec, vocab: &HashMap<String, u32>) -> Option<String> {
    if spec.architecture.starts_with("gemma") || (vocab.contains_key("<start_of_turn>") && vocab.contains_key("<end_of_turn>")) {
        return Some(GEMMA3_CHAT_TEMPLATE.to_string());
    }
    if vocab.contains_key("<|im_start|>") && vocab.contains_key("<|im_end|>") {
        return Some(CHATML_TEMPLATE.to_string());
    }
    None
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=indent)`, keys in
/// their order.
fn tojson(value: &minijinja::Value, kwargs: minijinja::value::Kwargs) -> Result<minijinja::Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    python_json(value, indent, sort_keys.unwrap_or(false), 0, &mut out)?;
    Ok(minijinja::Value::from_safe_string(out))
}

/// Python's `json.dumps` layout: `", "`/`": "` separators without indent, newlines with it.
fn python_json(v: &minijinja::Value, indent: Option<usize>, sort: bool, depth: usize, out: &mut String) -> Result<(), minijinja::Error> {
    use minijinja::value::ValueKind as K;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    let json_string = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    match v.kind() {
        K::Seq | K::Iterable => {
            let items: Vec<minijinja::Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                python_json(item, indent, sort, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        K::Map => {
            let mut keys: Vec<minijinja::Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if sort {
                keys.sort();
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&json_string(&key.to_string()));
                out.push_str(": ");
                python_json(&v.get_item(key)?, indent, sort, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        K::String => out.push_str(&json_string(v.as_str().unwrap_or_default())),
        K::Undefined | K::None => out.push_str("null"),
        K::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        _ => {
            let json = serde_json::to_value(v)
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
            out.push_str(&json.to_string());
        }
    }
    Ok(())
}

/// `strftime_now(format)`: the current UTC time, for the common `strftime` directives.
fn strftime_now(format: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = DAYS[days.rem_euclid(7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(day_name),
            Some('a') => out.push_str(&day_name[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
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
        model: "gpt2".into(),
        tokens,
        token_types,
        merges: merges.into_iter().map(String::from).collect(),
        pre: "smollm".into(),
        bos: Some(1),
        eos: Some(2),
        add_bos: Some(false),
        architecture: "llama".into(),
        chat_template: Some(CHATML_TEMPLATE.into()),
        ..VocabSpec::default()
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

    #[test]
    fn rejects_unknown_pre_tokenizers_and_models() {
        let mut spec = tiny_spec();
        spec.pre = "no-such-pre".into();
        assert!(Tokenizer::from_spec(spec).unwrap_err().to_string().contains("no-such-pre"));
        let mut spec = tiny_spec();
        spec.model = "bert".into();
        assert!(Tokenizer::from_spec(spec).unwrap_err().to_string().contains("bert"));
    }

    /// A tiny SentencePiece vocabulary: byte fallback, `▁` and score-ordered merges.
    fn tiny_spm() -> Tokenizer {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![TOKEN_TYPE_UNKNOWN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(TOKEN_TYPE_BYTE);
        }
        for t in ["▁", "h", "i", "▁h", "▁hi", "hi"] {
            tokens.push(t.into());
            types.push(TOKEN_TYPE_NORMAL);
        }
        let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
        Tokenizer::from_spec(VocabSpec {
            model: "llama".into(),
            tokens,
            scores,
            token_types: types,
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            ..VocabSpec::default()
        })
        .unwrap()
    }

    #[test]
    fn sentencepiece_merges_by_score_with_byte_fallback() {
        let tok = tiny_spm();
        let ids = tok.encode("hi hé");
        // BOS, "▁hi", "▁h", then é as two byte tokens.
        assert_eq!(ids, vec![1, 263, 262, 3 + 0xC3, 3 + 0xA9]);
        assert_eq!(tok.decode(&ids, true), " hi hé");
        assert_eq!(tok.token_bytes(3 + 0xC3), &[0xC3]);
        assert!(!tok.has_chat_template());
    }

    #[test]
    fn tojson_is_pythons_json_dumps() {
        let render = |v: minijinja::Value, indent: Option<usize>| {
            let mut out = String::new();
            python_json(&v, indent, false, 0, &mut out).unwrap();
            out
        };
        let v = minijinja::Value::from_serialize(serde_json::json!({"b": [1, "é", null, true], "a": {}}));
        // serde_json's map is sorted, so "a" comes first here; the order given is kept.
        assert_eq!(render(v, None), r#"{"a": {}, "b": [1, "é", null, true]}"#);
        let v = minijinja::Value::from_serialize(serde_json::json!({"a": [1]}));
        assert_eq!(render(v, Some(2)), "{\n  \"a\": [\n    1\n  ]\n}");
        let tok = Tokenizer::from_spec(VocabSpec {
            chat_template: Some("{{ messages | tojson }}|{{ strftime_now('%Y') | length }}".into()),
            ..tiny_spec()
        })
        .unwrap();
        let text = tok.apply_chat_template(&[ChatMessage { role: "user".into(), content: "x\"y".into() }], false).unwrap();
        assert_eq!(text, r#"[{"role": "user", "content": "x\"y"}]|4"#);
    }
}
