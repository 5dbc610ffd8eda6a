//! Constrained decoding for structured outputs: a JSON Schema (or "any JSON object") compiled to
//! a grammar ([`schema`]), a byte-level matcher over it ([`matcher`]), and the token mask that
//! keeps a generation inside it: at each step every token whose bytes the matcher refuses gets
//! a logit of −∞, and once the value is complete only end-of-sequence tokens remain. The mask
//! depends only on the request and the tokens so far, so a validator replaying the sampler
//! applies the very same mask ([`crate::proof::check`]).

pub mod matcher;
pub mod schema;

use serde::{Deserialize, Serialize};

pub use matcher::Matcher;
pub use schema::{Grammar, Node};

/// Why a response format cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The schema uses a keyword or construct the grammar does not implement.
    #[error("unsupported schema: {0}")]
    Unsupported(String),
    /// The schema is not a valid JSON Schema.
    #[error("invalid schema: {0}")]
    Invalid(String),
}

/// What an answer must be, as a request states it (and a transcript records it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// A value valid against this JSON Schema.
    JsonSchema { schema: serde_json::Value },
    /// A call of one of these functions (name, JSON Schema of the arguments):
    /// `{"name", "arguments"}`; with `allow_response`, or `{"response": text}`.
    ToolCall { tools: Vec<(String, serde_json::Value)>, allow_response: bool },
}

impl ResponseFormat {
    pub fn compile(&self) -> Result<Grammar, GrammarError> {
        match self {
            ResponseFormat::JsonObject => Ok(Grammar::json_object()),
            ResponseFormat::JsonSchema { schema } => Grammar::from_schema(schema),
            ResponseFormat::ToolCall { tools, allow_response } => Grammar::from_tools(tools, *allow_response),
        }
    }
}

/// Every token's bytes, for matching (special tokens have none: the grammar never asks for
/// them).
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    bytes: Vec<Vec<u8>>,
}

impl TokenTable {
    pub fn new(bytes: Vec<Vec<u8>>) -> Self {
        TokenTable { bytes }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[][..], Vec::as_slice)
    }
}

/// Sets the logit of every token the grammar does not allow next to −∞ (`stop_ids` are allowed
/// exactly when the value is complete). Returns how many tokens remain allowed.
pub fn apply_mask(m: &Matcher<'_>, table: &TokenTable, stop_ids: &[u32], logits: &mut [f32]) -> usize {
    let complete = m.is_complete();
    let closed = m.is_closed();
    // Bytes that may come first: most tokens are refused on their first byte alone.
    let mut first = [false; 256];
    if !closed {
        for (b, ok) in first.iter_mut().enumerate() {
            *ok = m.accepts(&[b as u8]);
        }
    }
    let mut allowed = 0;
    for (id, l) in logits.iter_mut().enumerate() {
        let id = id as u32;
        let ok = if stop_ids.contains(&id) {
            complete
        } else {
            let bytes = table.bytes(id);
            !closed && !bytes.is_empty() && first[bytes[0] as usize] && m.accepts(bytes)
        };
        if ok {
            allowed += 1;
        } else {
            *l = f32::NEG_INFINITY;
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepts_whole(g: &Grammar, text: &str) -> bool {
        let mut m = Matcher::new(g);
        m.feed_all(text.as_bytes()) && m.is_complete()
    }

    #[test]
    fn json_object_mode_takes_objects_and_refuses_everything_else() {
        let g = Grammar::json_object();
        for ok in [r#"{}"#, r#"{"a": 1, "b": [true, null, {"c": "d\"e"}], "f": -0.5e3}"#, "{\n  \"k\": \"v\"\n}"] {
            assert!(accepts_whole(&g, ok), "{ok}");
        }
        for bad in [r#"[]"#, r#""s""#, r#"{"a" 1}"#, r#"{"a": 1,}"#, r#"{"a": tru}"#, r#"{"a": 01}"#, "{\"a\":\u{1}}"] {
            assert!(!accepts_whole(&g, bad), "{bad}");
        }
        // Unbounded whitespace is refused (a model cannot pad forever).
        assert!(!accepts_whole(&g, &format!("{{{}}}", " ".repeat(20))));
    }

    #[test]
    fn a_schema_fixes_the_keys_types_enums_and_array_bounds() {
        let g = Grammar::from_schema(&json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "mood": {"enum": ["happy", "sad", 3]},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
                "pet": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"kind": {"const": "cat"}}}]}
            },
            "required": ["name", "age", "mood", "tags", "pet"]
        }))
        .unwrap();
        // Keys in name order (serde_json's maps are sorted).
        let ok = r#"{"age": 41, "mood": "sad", "name": "Ann", "pet": {"kind": "cat"}, "tags": ["a"]}"#;
        assert!(accepts_whole(&g, ok));
        assert!(accepts_whole(&g, r#"{"age":-3,"mood":3,"name":"","pet":null,"tags":["x","y"]}"#));
        for bad in [
            r#"{"age": 4.5, "mood": "sad", "name": "A", "pet": null, "tags": ["a"]}"#,
            r#"{"age": 4, "mood": "glad", "name": "A", "pet": null, "tags": ["a"]}"#,
            r#"{"age": 4, "mood": "sad", "name": "A", "pet": null, "tags": []}"#,
            r#"{"age": 4, "mood": "sad", "name": "A", "pet": null, "tags": ["a", "b", "c"]}"#,
            r#"{"age": 4, "mood": "sad", "name": "A", "pet": {"kind": "dog"}, "tags": ["a"]}"#,
            r#"{"mood": "sad", "age": 4, "name": "A", "pet": null, "tags": ["a"]}"#,
            r#"{"age": 4, "mood": "sad", "name": "A", "pet": null, "tags": ["a"], "x": 1}"#,
        ] {
            assert!(!accepts_whole(&g, bad), "{bad}");
        }
    }

    #[test]
    fn a_top_level_number_is_complete_while_it_may_still_grow() {
        let g = Grammar::from_schema(&json!({"type": "number"})).unwrap();
        let mut m = Matcher::new(&g);
        assert!(m.feed_all(b"12") && m.is_complete() && m.accepts(b"3") && m.accepts(b".5"));
        assert!(!m.accepts(b"x"));
    }

    #[test]
    fn the_mask_keeps_only_tokens_the_grammar_allows_and_eos_once_complete() {
        let g = Grammar::from_schema(&json!({"type": "object", "properties": {"ok": {"type": "boolean"}}})).unwrap();
        let vocab: Vec<&str> = vec!["<eos>", "{", "{\"", "ok", "\":", " true", "}", "hello", "\"ok\"", ":", "false}"];
        let table = TokenTable::new(
            vocab.iter().enumerate().map(|(i, t)| if i == 0 { vec![] } else { t.as_bytes().to_vec() }).collect(),
        );
        let allowed = |m: &Matcher<'_>| {
            let mut l = vec![0.0f32; vocab.len()];
            apply_mask(m, &table, &[0], &mut l);
            l.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, _)| vocab[i]).collect::<Vec<_>>()
        };
        let mut m = Matcher::new(&g);
        assert_eq!(allowed(&m), vec!["{", "{\""]);
        assert!(m.feed_all(b"{"));
        assert_eq!(allowed(&m), vec!["\"ok\""]);
        assert!(m.feed_all(b"\"ok\""));
        assert_eq!(allowed(&m), vec!["\":", ":"].into_iter().filter(|t| *t == ":").collect::<Vec<_>>());
        assert!(m.feed_all(b":"));
        assert_eq!(allowed(&m), vec![" true", "false}"]);
        assert!(m.feed_all(b"false}"));
        assert_eq!(allowed(&m), vec!["<eos>"]);
    }
}
