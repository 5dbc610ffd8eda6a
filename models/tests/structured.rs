//! Structured outputs on SmolLM2-135M-Instruct: generations constrained by a JSON Schema (or
//! "any JSON object") always parse and fit the schema, greedy and sampled, and a validator's
//! replay applies the same mask (the proof check passes with it, and a replay that forgets the
//! grammar finds the constrained tokens implausible).

mod common;

use std::sync::Arc;

use brainmesh_models::grammar::{Grammar, ResponseFormat};
use brainmesh_models::proof::{self, ProofConfig, Tolerance};
use brainmesh_models::{GenerateConfig, PrefixCache};
use common::*;
use serde_json::{json, Value};

fn chat(m: &brainmesh_models::Model, q: &str) -> Vec<u32> {
    m.tokenizer.encode(&m.tokenizer.chat_prompt(q).expect("chat template")).expect("encode")
}

#[test]
fn constrained_generations_parse_and_fit_their_schema_greedy_and_sampled() {
    let m = smollm();
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"type": "string"},
            "population_millions": {"type": "number"},
            "is_capital": {"type": "boolean"},
            "landmarks": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}
        },
        "required": ["city", "country", "population_millions", "is_capital", "landmarks"]
    });
    let grammar = Arc::new(ResponseFormat::JsonSchema { schema: schema.clone() }.compile().expect("schema"));
    let prompt = chat(&m, "Describe Paris as JSON with city, country, population_millions, is_capital, landmarks.");
    for (t, seed) in [(0.0f32, 0u64), (0.8, 1), (1.0, 2)] {
        let cfg =
            GenerateConfig { temperature: t, seed, grammar: Some(grammar.clone()), ..GenerateConfig::greedy(120) };
        let g = m.generate(std::slice::from_ref(&prompt), &cfg, &mut |_| true).expect("generate").remove(0);
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("t={t}: not JSON ({e}): {}", g.text));
        println!("t={t}: {} tokens: {}", g.tokens.len(), g.text);
        let o = v.as_object().expect("an object");
        assert_eq!(o.len(), 5, "{v}");
        assert!(o["city"].is_string() && o["country"].is_string() && o["is_capital"].is_boolean(), "{v}");
        assert!(o["population_millions"].is_number(), "{v}");
        let l = o["landmarks"].as_array().expect("landmarks");
        assert!((1..=3).contains(&l.len()) && l.iter().all(Value::is_string), "{v}");
    }
    // Any JSON object.
    let cfg = GenerateConfig { grammar: Some(Arc::new(Grammar::json_object())), ..GenerateConfig::greedy(200) };
    let g = m
        .generate(&[chat(&m, "Give me a short JSON object about a cat, with its name and age.")], &cfg, &mut |_| true)
        .expect("generate")
        .remove(0);
    println!("json_object: {:?} after {} tokens: {}", g.finish, g.tokens.len(), g.text);
    assert!(serde_json::from_str::<Value>(&g.text).expect("JSON").is_object(), "{}", g.text);
}

#[test]
fn the_validators_replay_applies_the_same_grammar_mask() {
    let m = smollm();
    let grammar = Arc::new(
        ResponseFormat::JsonSchema {
            schema: json!({"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "why": {"type": "string"}}}),
        }
        .compile()
        .expect("schema"),
    );
    let prompt = chat(&m, "Is the sky green? Answer yes or no in JSON, with a short reason.");
    let cfg = GenerateConfig { temperature: 0.9, seed: 3, grammar: Some(grammar), ..GenerateConfig::greedy(200) };
    let mut cache = PrefixCache::new(0, 0, 0);
    let (g, _, acts) = m.generate_with_activations(&prompt, &cfg, &mut cache, &mut |_| true).expect("generate");
    println!("{:?} after {} tokens: {}", g.finish, g.tokens.len(), g.text);
    serde_json::from_str::<Value>(&g.text).expect("JSON");
    let pc = ProofConfig::default();
    let proofs = proof::build_proofs(&acts, &pc).expect("proofs");
    let ok = proof::check(&m, &prompt, &g.tokens, &proofs, &cfg, &pc, &Tolerance::default()).expect("check");
    assert!(ok.passed, "{ok:?}");
    let unconstrained = GenerateConfig { grammar: None, ..cfg.clone() };
    let r = proof::check(&m, &prompt, &g.tokens, &proofs, &unconstrained, &pc, &Tolerance::default()).expect("check");
    println!("replayed without the grammar: {} of {} tokens implausible", r.implausible_tokens, g.tokens.len());
    assert!(!r.passed && r.implausible_tokens > 0, "{r:?}");
}
