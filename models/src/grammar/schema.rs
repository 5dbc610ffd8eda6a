//! JSON Schema (the subset structured outputs need) compiled into a small graph of nodes the
//! matcher walks. Keywords outside the subset are refused by name rather than ignored, so an
//! output that matches the grammar always validates against the schema.
//!
//! Objects with `properties` are written with every declared property (what OpenAI's strict
//! mode asks for: all properties required, no others), in the order of their names (the request
//! JSON is parsed into sorted maps, so the declaration order is not known here). An object
//! without `properties` takes any keys with any values.

use serde_json::Value;

use super::GrammarError;

/// Index of a node in [`Grammar::nodes`].
pub type NodeId = u32;

/// One node of a compiled schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Any JSON value.
    Any,
    /// An object with exactly these keys, in this order (key JSON-encoded with its quotes).
    Object(Vec<(Vec<u8>, NodeId)>),
    /// An object with any keys and any values.
    AnyObject,
    Array {
        items: NodeId,
        min: u32,
        max: Option<u32>,
    },
    String,
    Number,
    Integer,
    Boolean,
    Null,
    /// Exactly these bytes (a `const` or `enum` member, JSON-encoded).
    Literal(Vec<u8>),
    AnyOf(Vec<NodeId>),
}

/// A compiled schema: `nodes[root]` is the value to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Grammar {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    /// An [`Node::Any`] node (the values of free objects).
    pub any: NodeId,
}

/// Keywords that only describe (they do not constrain what validates).
const ANNOTATIONS: [&str; 8] = ["title", "description", "$schema", "$id", "examples", "default", "$comment", "strict"];
/// `$ref` depth at which a schema is taken to be recursive.
const MAX_DEPTH: usize = 32;
/// Nodes a schema may compile to.
const MAX_NODES: usize = 4096;

impl Grammar {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn json_object() -> Self {
        Grammar { nodes: vec![Node::AnyObject, Node::Any], root: 0, any: 1 }
    }

    /// A call of one of `tools` (name, JSON Schema of its arguments), written as
    /// `{"name": <one of the names>, "arguments": <valid arguments>}` — the name first, so the
    /// model picks the function before its arguments; with `allow_response`, alternatively
    /// `{"response": <text>}` (the model answers without calling anything).
    pub fn from_tools(tools: &[(String, Value)], allow_response: bool) -> Result<Self, GrammarError> {
        let empty = Value::Object(Default::default());
        let mut c = Compiler { root: &empty, nodes: Vec::new() };
        let mut alts = Vec::with_capacity(tools.len() + 1);
        for (name, params) in tools {
            c.root = params;
            let args = c.compile(params, &format!("tools[{name}].parameters"), 0)?;
            let name_lit = c.push(Node::Literal(serde_json::to_vec(name).unwrap_or_default()))?;
            alts.push(c.push(Node::Object(vec![(b"\"name\"".to_vec(), name_lit), (b"\"arguments\"".to_vec(), args)]))?);
        }
        if allow_response {
            let text = c.push(Node::String)?;
            alts.push(c.push(Node::Object(vec![(b"\"response\"".to_vec(), text)]))?);
        }
        if alts.is_empty() {
            return Err(GrammarError::Invalid("no tools to call".into()));
        }
        let root = if alts.len() == 1 { alts[0] } else { c.push(Node::AnyOf(alts))? };
        let any = c.push(Node::Any)?;
        Ok(Grammar { nodes: c.nodes, root, any })
    }

    /// Compiles a JSON Schema.
    pub fn from_schema(schema: &Value) -> Result<Self, GrammarError> {
        let mut c = Compiler { root: schema, nodes: Vec::new() };
        let root = c.compile(schema, "#", 0)?;
        let any = c.push(Node::Any)?;
        Ok(Grammar { nodes: c.nodes, root, any })
    }
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
}

fn unsupported(path: &str, what: impl std::fmt::Display) -> GrammarError {
    GrammarError::Unsupported(format!("{path}: {what}"))
}

impl<'a> Compiler<'a> {
    fn push(&mut self, n: Node) -> Result<NodeId, GrammarError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(GrammarError::Unsupported(format!("the schema is too large (over {MAX_NODES} nodes)")));
        }
        self.nodes.push(n);
        Ok((self.nodes.len() - 1) as NodeId)
    }

    fn resolve(&self, reference: &str, path: &str) -> Result<&'a Value, GrammarError> {
        let root: &'a Value = self.root;
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(unsupported(path, format!("only local $ref (#/...) are supported, not {reference}")));
        };
        root.pointer(pointer).ok_or_else(|| GrammarError::Invalid(format!("{path}: $ref {reference} not found")))
    }

    fn compile(&mut self, s: &Value, path: &str, depth: usize) -> Result<NodeId, GrammarError> {
        if depth > MAX_DEPTH {
            return Err(unsupported(path, "recursive schemas are not supported"));
        }
        let obj = match s {
            Value::Bool(true) => return self.push(Node::Any),
            Value::Object(o) => o,
            other => return Err(GrammarError::Invalid(format!("{path}: a schema must be an object, got {other}"))),
        };
        if let Some(r) = obj.get("$ref") {
            let r = r.as_str().ok_or_else(|| GrammarError::Invalid(format!("{path}: $ref must be a string")))?;
            let target = self.resolve(r, path)?;
            return self.compile(target, r, depth + 1);
        }
        for key in obj.keys() {
            let known = ANNOTATIONS.contains(&key.as_str())
                || matches!(
                    key.as_str(),
                    "type"
                        | "properties"
                        | "required"
                        | "additionalProperties"
                        | "items"
                        | "minItems"
                        | "maxItems"
                        | "enum"
                        | "const"
                        | "anyOf"
                        | "oneOf"
                        | "$defs"
                        | "definitions"
                );
            if !known {
                return Err(unsupported(path, format!("the keyword `{key}` is not supported in structured outputs")));
            }
        }
        if let Some(c) = obj.get("const") {
            return self.push(Node::Literal(serde_json::to_vec(c).unwrap_or_default()));
        }
        if let Some(e) = obj.get("enum") {
            let items = e.as_array().ok_or_else(|| GrammarError::Invalid(format!("{path}: enum must be an array")))?;
            if items.is_empty() {
                return Err(GrammarError::Invalid(format!("{path}: enum must not be empty")));
            }
            let mut ids = Vec::with_capacity(items.len());
            for v in items {
                ids.push(self.push(Node::Literal(serde_json::to_vec(v).unwrap_or_default()))?);
            }
            return self.push(Node::AnyOf(ids));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = obj.get(key) {
                let alts =
                    alts.as_array().ok_or_else(|| GrammarError::Invalid(format!("{path}: {key} must be an array")))?;
                if alts.is_empty() {
                    return Err(GrammarError::Invalid(format!("{path}: {key} must not be empty")));
                }
                if key == "oneOf" && alts.len() > 1 {
                    // Exclusivity cannot be enforced while writing; only disjoint branches are safe.
                    return Err(unsupported(path, "oneOf with several branches is not supported; use anyOf"));
                }
                let mut ids = Vec::with_capacity(alts.len());
                for (i, a) in alts.iter().enumerate() {
                    ids.push(self.compile(a, &format!("{path}/{key}/{i}"), depth + 1)?);
                }
                return self.push(Node::AnyOf(ids));
            }
        }
        let types: Vec<&str> = match obj.get("type") {
            None => return self.push(Node::Any),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            Some(other) => return Err(GrammarError::Invalid(format!("{path}: bad type {other}"))),
        };
        let mut ids = Vec::with_capacity(types.len());
        for t in &types {
            let id = match *t {
                "object" => self.object(obj, path, depth)?,
                "array" => {
                    let items = match obj.get("items") {
                        Some(i) => self.compile(i, &format!("{path}/items"), depth + 1)?,
                        None => self.push(Node::Any)?,
                    };
                    let bound = |k: &str| obj.get(k).and_then(Value::as_u64).map(|v| v.min(u32::MAX as u64) as u32);
                    let (min, max) = (bound("minItems").unwrap_or(0), bound("maxItems"));
                    if max.is_some_and(|m| m < min) {
                        return Err(GrammarError::Invalid(format!("{path}: maxItems < minItems")));
                    }
                    self.push(Node::Array { items, min, max })?
                }
                "string" => self.push(Node::String)?,
                "number" => self.push(Node::Number)?,
                "integer" => self.push(Node::Integer)?,
                "boolean" => self.push(Node::Boolean)?,
                "null" => self.push(Node::Null)?,
                other => return Err(GrammarError::Invalid(format!("{path}: unknown type `{other}`"))),
            };
            ids.push(id);
        }
        match ids.len() {
            0 => Err(GrammarError::Invalid(format!("{path}: empty type list"))),
            1 => Ok(ids[0]),
            _ => self.push(Node::AnyOf(ids)),
        }
    }

    fn object(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<NodeId, GrammarError> {
        let Some(props) = obj.get("properties") else {
            if obj.get("additionalProperties").is_some_and(|a| a.is_object()) {
                return Err(unsupported(path, "additionalProperties with a schema is not supported"));
            }
            return self.push(Node::AnyObject);
        };
        let props =
            props.as_object().ok_or_else(|| GrammarError::Invalid(format!("{path}: properties must be an object")))?;
        if let Some(req) = obj.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !props.contains_key(r) {
                    return Err(GrammarError::Invalid(format!("{path}: required property `{r}` is not declared")));
                }
            }
        }
        let mut fields = Vec::with_capacity(props.len());
        for (k, v) in props {
            let id = self.compile(v, &format!("{path}/properties/{k}"), depth + 1)?;
            fields.push((serde_json::to_vec(k).unwrap_or_default(), id));
        }
        self.push(Node::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refs_enums_and_type_lists_compile_and_unsupported_keywords_are_named() {
        let g = Grammar::from_schema(&json!({
            "$defs": {"colour": {"enum": ["red", "green"]}},
            "type": "object",
            "properties": {"c": {"$ref": "#/$defs/colour"}, "n": {"type": ["integer", "null"]}},
            "required": ["c", "n"],
            "additionalProperties": false
        }))
        .unwrap();
        assert!(matches!(&g.nodes[g.root as usize], Node::Object(f) if f.len() == 2));
        let e = Grammar::from_schema(&json!({"type": "string", "pattern": "^a"})).unwrap_err().to_string();
        assert!(e.contains("`pattern`"), "{e}");
        let e = Grammar::from_schema(
            &json!({"$defs": {"t": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "$ref": "#/$defs/t"}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("recursive"), "{e}");
        let e = Grammar::from_schema(&json!({"type": "object", "properties": {}, "required": ["x"]})).unwrap_err();
        assert!(e.to_string().contains("`x`"));
    }

    #[test]
    fn tool_calls_name_the_function_first_and_may_allow_a_plain_response() {
        let tools = vec![
            ("get_weather".to_string(), json!({"type": "object", "properties": {"city": {"type": "string"}}})),
            ("get_time".to_string(), json!({"type": "object", "properties": {}})),
        ];
        let g = Grammar::from_tools(&tools, true).unwrap();
        let whole = |t: &str| {
            let mut m = super::super::Matcher::new(&g);
            m.feed_all(t.as_bytes()) && m.is_complete()
        };
        assert!(whole(r#"{"name": "get_weather", "arguments": {"city": "Oslo"}}"#));
        assert!(whole(r#"{"name":"get_time","arguments":{}}"#));
        assert!(whole(r#"{"response": "It is sunny."}"#));
        assert!(!whole(r#"{"name": "get_time", "arguments": {"city": "Oslo"}}"#));
        assert!(!whole(r#"{"name": "launch", "arguments": {}}"#));
        let strict = Grammar::from_tools(&tools, false).unwrap();
        let mut m = super::super::Matcher::new(&strict);
        assert!(!(m.feed_all(br#"{"response": "x"}"#) && m.is_complete()));
    }
}
