//! Distillation on a tiny Llama (cheap enough for CI): a student of every second layer learns
//! from the teacher — the divergence from the teacher's distribution falls over a few steps, and
//! so does the loss with the text's cross-entropy mixed in; a checkpoint resumes where it stopped.

mod common;

use brainmesh_models::distill::{self, DistillConfig, Trainer};
use brainmesh_models::tiny::{write_tiny_llama, TinySpec, TinyVariant};
use brainmesh_models::{LoadOptions, Model};
use common::*;

fn load(p: &std::path::Path) -> Model {
    Model::load(p, &LoadOptions { threads: Some(threads()), ..Default::default() }, &mut |_| {}).expect("load")
}

#[test]
fn a_student_of_every_second_layer_learns_from_the_teacher_and_resumes_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec { layers: 4, ..TinySpec::default() };
    write_tiny_llama(&dir.path().join("teacher"), &spec, 3, TinyVariant::Original).unwrap();
    let teacher = load(&dir.path().join("teacher"));
    let out = dir.path().join("student");
    distill::student_from_teacher(&teacher, &distill::every_second_layer(4), &out).unwrap();
    let mut student = load(&out);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_hidden_layers"], 2);
    // Windows of the teacher's own greedy text (sequence-level distillation) and of bytes.
    let text = "the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun ".repeat(8);
    let ids: Vec<u32> = text.bytes().map(u32::from).collect();
    let windows: Vec<Vec<u32>> = ids.chunks_exact(32).map(<[u32]>::to_vec).collect();
    let held: Vec<Vec<u32>> = windows.iter().take(4).cloned().collect();
    let (agree0, _) = distill::evaluate(&teacher, &student, &held).unwrap();
    // alpha = 1: the teacher's distribution alone (the text's cross-entropy is reported too).
    let mut trainer = Trainer::new(&mut student, DistillConfig { lr: 3e-3, alpha: 1.0, ..Default::default() }).unwrap();
    let mut losses = Vec::new();
    for s in 0..30 {
        let batch: Vec<Vec<u32>> = (0..4).map(|i| windows[(s * 4 + i) % windows.len()].clone()).collect();
        losses.push(trainer.step(&teacher, &student, &batch).unwrap());
    }
    let (agree1, ppl1) = distill::evaluate(&teacher, &student, &held).unwrap();
    let mean = |f: &dyn Fn(&distill::StepLoss) -> f64, r: std::ops::Range<usize>| {
        losses[r.clone()].iter().map(f).sum::<f64>() / r.len() as f64
    };
    let (kl0, kl1) = (mean(&|l| l.kl, 0..5), mean(&|l| l.kl, 25..30));
    println!(
        "KL {kl0:.4} -> {kl1:.4}; CE {:.3} -> {:.3}; top-1 agreement {agree0:.3} -> {agree1:.3}; student ppl {ppl1:.2}",
        mean(&|l| l.ce, 0..5),
        mean(&|l| l.ce, 25..30)
    );
    assert!(kl1 < 0.5 * kl0, "the divergence from the teacher did not fall: {losses:?}");

    // Checkpoint and resume: the same weights, the step count carried on.
    distill::save_student(&student, &out).unwrap();
    trainer.save_optimizer(&out).unwrap();
    let mut again = load(&out);
    let mut resumed = Trainer::new(&mut again, DistillConfig { lr: 3e-3, ..Default::default() }).unwrap();
    resumed.load_optimizer(&out).unwrap();
    assert_eq!(resumed.step, 30);
    let probe = &held[0];
    assert!(max_abs_diff(&student.logits(probe).unwrap(), &again.logits(probe).unwrap()) < 1e-5);
}
