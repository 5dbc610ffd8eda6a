//! Tokenizers: the byte-level BPE held in a GGUF file (`tokenizer.ggml.*`) turned into a
//! `tokenizers::Tokenizer`, or a Hugging Face `tokenizer.json`; plus the chat template.

use std::path::Path;

use serde_json::{json, Map, Value as Json};

use crate::chat_template::END_OF_TURN_MARKERS;
pub use crate::chat_template::{ChatMessage, JinjaTemplate};
use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, Value};
use crate::grammar::TokenTable;

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The regex llama.cpp uses for `tokenizer.ggml.pre = llama-bpe` (Llama 3 style).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a model turns a conversation into a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// The model's own Jinja template ([`JinjaTemplate`]).
    Jinja(JinjaTemplate),
    /// The model carries a template that does not parse: chat requests are refused with this
    /// message (plain-text completions still work).
    Invalid(String),
    /// No template: messages' contents joined by newlines.
    Plain,
}

impl ChatTemplate {
    /// The template for a Jinja source (as found in GGUF `tokenizer.chat_template` or
    /// `tokenizer_config.json`), rendered with these special tokens.
    pub fn from_jinja(template: Option<&str>, bos_token: Option<&str>, eos_token: Option<&str>) -> Self {
        match template {
            None => ChatTemplate::Plain,
            Some(t) => match JinjaTemplate::new(t, bos_token, eos_token) {
                Ok(j) => ChatTemplate::Jinja(j),
                Err(e) => ChatTemplate::Invalid(e.to_string()),
            },
        }
    }

    /// Renders a conversation, ending with the assistant's turn opened. A template that cannot
    /// render it (it raises, or does not parse) is an error with its message.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        match self {
            ChatTemplate::Jinja(j) => j.render(messages, true),
            ChatTemplate::Invalid(e) => Err(ModelError::InvalidArgument(e.clone())),
            ChatTemplate::Plain => {
                let mut s: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                s.push("");
                Ok(s.join("\n"))
            }
        }
    }

    /// The end-of-turn markers the template writes (candidates for stop tokens).
    fn end_markers(&self) -> Vec<&'static str> {
        match self {
            ChatTemplate::Jinja(j) => END_OF_TURN_MARKERS.iter().copied().filter(|m| j.source().contains(m)).collect(),
            _ => Vec::new(),
        }
    }
}

/// A tokenizer with the special ids generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether encoding a prompt should prepend BOS.
    pub add_bos: bool,
    pub chat_template: ChatTemplate,
    /// Token ids that end a generation (EOS and, for ChatML, `<|im_end|>`).
    pub stop_ids: Vec<u32>,
    /// Whether the vocabulary is byte-level BPE (GPT-2 style: each byte drawn as a printable
    /// character), which [`Tokenizer::token_bytes`] maps back.
    byte_level: bool,
    /// Every token's bytes (special tokens: none), built on first use.
    table: std::sync::OnceLock<std::sync::Arc<TokenTable>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("chat_template", &self.chat_template)
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let json = gguf_tokenizer_json(g)?;
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).map_err(tok_err)?;
        let id = |k: &str| g.get(k).and_then(Value::as_u64).map(|v| v as u32);
        let bos_id = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let add_bos = g.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        let template = g.get("tokenizer.chat_template").and_then(Value::as_str);
        Ok(Self::finish(inner, bos_id, eos_id, add_bos, template))
    }

    /// Loads a Hugging Face `tokenizer.json`; the special ids come from the model's config.
    pub fn from_hf_file(
        path: &Path,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
        chat_template: Option<&str>,
    ) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self::finish(inner, bos_id, eos_id, false, chat_template))
    }

    /// Wraps an existing `tokenizers` tokenizer.
    pub fn from_tokenizers(inner: tokenizers::Tokenizer, bos_id: Option<u32>, eos_id: Option<u32>) -> Self {
        Self::finish(inner, bos_id, eos_id, false, None)
    }

    fn finish(
        inner: tokenizers::Tokenizer,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
        add_bos: bool,
        template: Option<&str>,
    ) -> Self {
        let bos = bos_id.and_then(|i| inner.id_to_token(i));
        let eos = eos_id.and_then(|i| inner.id_to_token(i));
        let chat_template = ChatTemplate::from_jinja(template, bos.as_deref(), eos.as_deref());
        // The end of an assistant turn ends a generation (`<|im_end|>`, `<|eot_id|>`, …).
        let mut stop_ids: Vec<u32> = eos_id.into_iter().collect();
        for marker in chat_template.end_markers() {
            if let Some(id) = inner.token_to_id(marker) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let byte_level =
            inner.get_decoder().and_then(|d| serde_json::to_string(d).ok()).is_some_and(|d| d.contains("ByteLevel"));
        Tokenizer { inner, bos_id, eos_id, add_bos, chat_template, stop_ids, byte_level, table: Default::default() }
    }

    /// Every token's bytes, special tokens with none (what constrained decoding matches).
    pub fn token_table(&self) -> std::sync::Arc<TokenTable> {
        self.table
            .get_or_init(|| {
                let n = self.vocab_size() as u32;
                let added = self.inner.get_added_vocabulary();
                let bytes = (0..n)
                    .map(|id| match self.inner.id_to_token(id) {
                        Some(p) if added.is_special_token(&p) => Vec::new(),
                        Some(_) => self.token_bytes(id),
                        None => Vec::new(),
                    })
                    .collect();
                std::sync::Arc::new(TokenTable::new(bytes))
            })
            .clone()
    }

    /// The raw bytes one token stands for: byte-level BPE symbols mapped back to their bytes,
    /// SentencePiece's `▁` as a space and `<0xNN>` as that byte; special tokens as their text.
    /// Empty for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(piece) = self.inner.id_to_token(id) else { return Vec::new() };
        let special = self.inner.get_added_vocabulary().is_special_token(&piece);
        if special {
            return piece.into_bytes();
        }
        if self.byte_level {
            let table = byte_level_decoder();
            if let Some(bytes) = piece.chars().map(|c| table.get(&c).copied()).collect::<Option<Vec<u8>>>() {
                return bytes;
            }
        }
        if let Some(hex) = piece.strip_prefix("<0x").and_then(|r| r.strip_suffix('>')) {
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                return vec![b];
            }
        }
        piece.replace('\u{2581}', " ").into_bytes()
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text; special tokens written in the text (`<|im_start|>`) become their ids.
    /// Prepends BOS when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            if let Some(b) = self.bos_id {
                ids.push(b);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Decodes ids to text, dropping special tokens when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    /// The text of a token id, if it is in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Renders one user message with the model's chat template.
    pub fn chat_prompt(&self, user: &str) -> Result<String> {
        self.chat_template.render(&[ChatMessage::new("user", user)])
    }

    /// The tokenizer in Hugging Face `tokenizer.json` form.
    pub fn to_json(&self, pretty: bool) -> Result<String> {
        self.inner.to_string(pretty).map_err(tok_err)
    }
}

/// GPT-2's byte-level alphabet read backwards: printable character → byte.
fn byte_level_decoder() -> &'static std::collections::HashMap<char, u8> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<char, u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut next = 256u32;
        (0..=255u8)
            .map(|b| {
                let c = if printable(b) {
                    char::from(b)
                } else {
                    let c = char::from_u32(next).unwrap_or('\u{FFFD}');
                    next += 1;
                    c
                };
                (c, b)
            })
            .collect()
    })
}

/// Translates `tokenizer.ggml.*` metadata into a `tokenizer.json` document.
fn gguf_tokenizer_json(g: &GgufFile) -> Result<Json> {
    let model = g.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(ModelError::Tokenizer(format!(
            "tokenizer.ggml.model = {model:?} is not supported (only byte-level BPE, \"gpt2\")"
        )));
    }
    let tokens = g
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| ModelError::Metadata("tokenizer.ggml.tokens".into()))?;
    let merges = g
        .get("tokenizer.ggml.merges")
        .and_then(Value::as_array)
        .ok_or_else(|| ModelError::Metadata("tokenizer.ggml.merges".into()))?;
    let types = g.get("tokenizer.ggml.token_type").and_then(Value::as_array);

    let mut vocab = Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let s = t.as_str().ok_or_else(|| ModelError::Metadata(format!("tokenizer.ggml.tokens[{i}]")))?;
        vocab.insert(s.to_string(), json!(i));
        let ty = types.and_then(|ts| ts.get(i)).and_then(Value::as_i64).unwrap_or(1);
        if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
            added.push(json!({
                "id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": ty == TOKEN_TYPE_USER_DEFINED, "special": ty == TOKEN_TYPE_CONTROL,
            }));
        }
    }
    let merges: Vec<Json> = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.as_str().map(|s| json!(s)).ok_or_else(|| ModelError::Metadata(format!("tokenizer.ggml.merges[{i}]")))
        })
        .collect::<Result<_>>()?;

    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    let pre_tokenizer = match pre {
        "default" | "gpt2" | "gpt-2" => byte_level.clone(),
        "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level.clone()]}),
        "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
        other => {
            return Err(ModelError::Tokenizer(format!(
                "tokenizer.ggml.pre = {other:?} is not supported (known: default, gpt2, smollm, starcoder, llama-bpe)"
            )))
        }
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn smollm2s_template_inserts_the_default_system_prompt_only_without_a_system_message() {
        let t = ChatTemplate::from_jinja(Some(SMOL), Some("<|im_start|>"), Some("<|im_end|>"));
        assert!(matches!(t, ChatTemplate::Jinja(_)), "{t:?}");
        assert_eq!(t.end_markers(), vec!["<|im_end|>"]);
        let sys = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
        let one = t.render(&[ChatMessage::new("user", "hi")]).unwrap();
        assert_eq!(
            one,
            format!("<|im_start|>system\n{sys}<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        );
        let own = t.render(&[ChatMessage::new("system", "S"), ChatMessage::new("user", "hi")]).unwrap();
        assert!(own.starts_with("<|im_start|>system\nS<|im_end|>\n"));
        assert!(!own.contains(sys));
    }

    #[test]
    fn no_template_renders_plain_text_and_a_broken_one_refuses_chat_clearly() {
        assert_eq!(ChatTemplate::from_jinja(None, None, None), ChatTemplate::Plain);
        let t = ChatTemplate::Plain;
        assert_eq!(t.render(&[ChatMessage::new("user", "hello")]).unwrap(), "hello\n");
        let broken = ChatTemplate::from_jinja(Some("{% if %}"), None, None);
        let e = broken.render(&[ChatMessage::new("user", "hello")]).unwrap_err().to_string();
        assert!(e.contains("chat template does not parse"), "{e}");
    }
}
