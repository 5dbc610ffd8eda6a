//! A model's own chat template (the Jinja source a GGUF carries in `tokenizer.chat_template`, or
//! `tokenizer_config.json` / `chat_template.jinja` in a Hugging Face directory), rendered with
//! minijinja the way transformers' `apply_chat_template` renders it: `trim_blocks` and
//! `lstrip_blocks` on, `messages`, `add_generation_prompt`, `bos_token` and `eos_token` in the
//! context, `raise_exception` and `strftime_now` as functions, and Python's string methods
//! (`.strip()`, `.startswith()`, …) through minijinja-contrib's `pycompat`.
//!
//! The miner renders a chat request with it and the validator re-renders the same messages with
//! the same template (the Brain's declared model), so both tokenize the same prompt.

use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::error::{ModelError, Result};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Markers that end an assistant turn in the common templates; those a template writes and
/// the vocabulary holds become stop tokens.
pub const END_OF_TURN_MARKERS: [&str; 6] =
    ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "<|end_of_text|>"];

const NAME: &str = "chat";

/// Instructions one rendering may execute (a template that loops forever is stopped).
const RENDER_FUEL: u64 = 2_000_000;

/// A compiled chat template with the special tokens it is rendered with.
#[derive(Clone)]
pub struct JinjaTemplate {
    env: Arc<Environment<'static>>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate").field("bytes", &self.source.len()).finish()
    }
}

impl PartialEq for JinjaTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.bos_token == other.bos_token && self.eos_token == other.eos_token
    }
}

impl Eq for JinjaTemplate {}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)` as transformers provides it (Llama 3.1's template dates its system
/// prompt). A fixed date, not the clock: the miner and the validator must render the same text.
fn strftime_now(format: String) -> String {
    format.replace("%d", "26").replace("%b", "Jul").replace("%B", "July").replace("%Y", "2024").replace("%m", "07")
}

impl JinjaTemplate {
    /// Compiles `source`; a template that does not parse is an error naming the problem.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ModelError::InvalidArgument(format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        // A template comes with the model: bound the work one rendering may do.
        env.set_fuel(Some(RENDER_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME.to_string(), source.to_string())
            .map_err(|e| ModelError::InvalidArgument(format!("the model's chat template does not parse: {e}")))?;
        Ok(JinjaTemplate {
            env: Arc::new(env),
            source: source.to_string(),
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
        })
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation (`add_generation_prompt`: end with the assistant's turn opened).
    /// A template that refuses the conversation (`raise_exception`, say roles that do not
    /// alternate) or fails is an error carrying its message.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl =
            self.env.get_template(NAME).map_err(|e| ModelError::InvalidArgument(format!("chat template: {e}")))?;
        let messages: Vec<Message<'_>> =
            messages.iter().map(|m| Message { role: &m.role, content: &m.content }).collect();
        let ctx = minijinja::context! {
            messages => Value::from(minijinja::value::Serde(&messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            tools => Value::from(()),
            documents => Value::from(()),
        };
        tmpl.render(ctx).map_err(|e| {
            let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.to_string());
            ModelError::InvalidArgument(format!("the model's chat template cannot render this conversation: {detail}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect()
    }

    #[test]
    fn a_chatml_template_renders_with_the_generation_prompt() {
        let t = JinjaTemplate::new(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
            None,
            None,
        )
        .unwrap();
        let out = t.render(&msgs(&[("system", "Be brief."), ("user", "Hi")]), true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_trim_blocks_and_special_tokens_work_as_in_transformers() {
        let t = JinjaTemplate::new(
            "{{ bos_token }}\n{% for m in messages %}\n  [{{ m['role'] | upper }}] {{ m['content'].strip() }}{{ eos_token }}\n{% endfor %}",
            Some("<s>"),
            Some("</s>"),
        )
        .unwrap();
        // What Python's jinja2 renders with trim_blocks and lstrip_blocks (checked by hand).
        assert_eq!(t.render(&msgs(&[("user", "  hi  ")]), false).unwrap(), "<s>\n  [USER] hi</s>\n");
    }

    #[test]
    fn a_template_that_raises_or_does_not_parse_is_a_clear_error() {
        let t = JinjaTemplate::new(
            "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok",
            None,
            None,
        )
        .unwrap();
        let e = t.render(&msgs(&[("system", "x")]), true).unwrap_err().to_string();
        assert!(e.contains("System role not supported"), "{e}");
        assert_eq!(t.render(&msgs(&[("user", "x")]), true).unwrap(), "ok");
        let e = JinjaTemplate::new("{% for %}", None, None).unwrap_err().to_string();
        assert!(e.contains("does not parse"), "{e}");
    }
}
