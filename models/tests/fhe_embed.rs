//! The client-side embedder (all-MiniLM-L6-v2 on tch) against transformers' BertModel with
//! sentence-transformers' pooling.

mod common;

use brainmesh_models::fhe::embed::{default_minilm_dir, MiniLm};

#[test]
fn minilm_sentence_embeddings_match_transformers() {
    let texts =
        ["Beware the Ides of March.", "O Romeo, Romeo! wherefore art thou Romeo?", "Full fathom five thy father lies"];
    let model = MiniLm::load(&default_minilm_dir()).expect("all-MiniLM-L6-v2 in .cache: run `make setup`");
    let ours = model.embed(&texts).expect("embed");
    let reference = common::run_reference(
        "fhe_ref_minilm.py",
        &serde_json::json!({ "model_dir": default_minilm_dir(), "texts": texts }),
    );
    let r = &reference["embeddings"];
    assert_eq!(r.size(), vec![texts.len() as i64, 384]);
    for (i, row) in ours.iter().enumerate() {
        let want = Vec::<f32>::try_from(r.get(i as i64)).expect("row");
        let diff = row.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(diff < 1e-4, "text {i}: max |Δ| = {diff}");
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
