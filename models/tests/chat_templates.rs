//! Chat templates rendered by brainmesh (minijinja) against transformers' `apply_chat_template`
//! (Python's jinja2) on the same template sources and conversations: SmolLM2's own template
//! (from the GGUF), and the Llama 3, Mistral, Gemma, Qwen2 and Zephyr templates as their model
//! repositories ship them.

mod common;

use brainmesh_models::{ChatMessage, ChatTemplate};
use common::*;
use serde_json::{json, Value};

const LLAMA3: &str = r#"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"#;

const MISTRAL: &str = r#"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"#;

const GEMMA: &str = r#"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"#;

const QWEN2: &str = r#"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"#;

/// Block tags on their own lines: exercises trim_blocks / lstrip_blocks.
const ZEPHYR: &str = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

fn conversations() -> Vec<Vec<(&'static str, &'static str)>> {
    vec![
        vec![("user", "What is the capital of France?")],
        vec![("system", "You answer in one word."), ("user", "  Capital of Italy?  ")],
        vec![("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a joke.\nA short one.")],
        vec![("user", "first"), ("user", "second, out of turn")],
    ]
}

#[test]
fn smollm2s_and_five_other_model_templates_render_exactly_as_transformers_renders_them() {
    let m = smollm();
    let smol = match &m.tokenizer.chat_template {
        ChatTemplate::Jinja(j) => j.source().to_string(),
        other => panic!("SmolLM2's GGUF template did not load: {other:?}"),
    };
    let templates = [
        ("smollm2", smol.as_str()),
        ("llama3", LLAMA3),
        ("mistral", MISTRAL),
        ("gemma", GEMMA),
        ("qwen2", QWEN2),
        ("zephyr", ZEPHYR),
    ];
    let convs = conversations();
    let request = json!({
        "gguf": smollm_gguf(),
        "templates": templates.iter().map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
        "conversations": convs.iter().map(|c| c.iter().map(|(r, t)| json!({"role": r, "content": t})).collect::<Vec<_>>()).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().unwrap();
    let (req, out) = (dir.path().join("req.json"), dir.path().join("out.json"));
    std::fs::write(&req, request.to_string()).unwrap();
    let res = std::process::Command::new(python())
        .arg(py_script("ref_chat_templates.py"))
        .arg(&req)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python (run `make setup`): {e}"));
    assert!(res.status.success(), "reference failed: {}", String::from_utf8_lossy(&res.stderr));
    let reference: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let bos = reference["bos_token"].as_str();
    let eos = reference["eos_token"].as_str();
    // The special tokens transformers renders with are the ones our tokenizer knows.
    assert_eq!(bos.map(str::to_string), m.tokenizer.bos_id.and_then(|i| m.tokenizer.id_to_token(i)));
    assert_eq!(eos.map(str::to_string), m.tokenizer.eos_id.and_then(|i| m.tokenizer.id_to_token(i)));
    let (mut same, mut refused) = (0, 0);
    for (name, source) in templates {
        let t = ChatTemplate::from_jinja(Some(source), bos, eos);
        for (i, conv) in convs.iter().enumerate() {
            let msgs: Vec<ChatMessage> = conv.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect();
            let ours = t.render(&msgs);
            match (&reference[name][i], ours) {
                (Value::String(want), Ok(got)) => {
                    assert_eq!(&got, want, "{name}, conversation {i}");
                    same += 1;
                }
                (Value::Object(e), Err(err)) => {
                    // Both refuse; ours carries the template's own message.
                    let msg = e["error"].as_str().unwrap_or_default();
                    assert!(err.to_string().contains(msg.trim_end_matches('.')), "{name} {i}: {err} vs {msg}");
                    refused += 1;
                }
                (want, got) => panic!("{name}, conversation {i}: transformers {want}, brainmesh {got:?}"),
            }
        }
    }
    println!("{same} renderings identical to transformers', {refused} refused by both with the same message");
    assert!(same >= 18 && refused >= 3, "{same} identical, {refused} refused");
}
