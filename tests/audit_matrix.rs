//! The adversarial matrix of `benches/audit_matrix.rs` on a few tasks per row, as a test: the
//! honest miner is never flagged; a squeezed model declared as the original, an edited output,
//! an old answer replayed for a new prompt and random tokens are all caught by the validator's
//! re-check (signed receipt + signed transcript, one forward pass). The bench runs ≥ 200 tasks
//! per row and reports rates and costs.

#[path = "../benches/audit_matrix.rs"]
#[allow(dead_code)]
mod matrix;

#[test]
fn the_recheck_passes_honest_miners_and_catches_every_cheat_in_the_matrix() {
    let r = matrix::run(4, 12, 2);
    for (name, row) in matrix::ROWS.iter().zip(&r.rows) {
        println!("{name}: {row:?}");
        assert_eq!(row.tasks, 4);
        if *name == "honest" {
            assert_eq!(row.failed, 0, "false alarm on an honest miner: {row:?}");
        } else {
            assert_eq!(row.failed, row.tasks, "{name}: not every cheat was caught: {row:?}");
        }
    }
}
