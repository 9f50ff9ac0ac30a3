//! The sentences `eval` and `imatrix` run the model on: a text file or the built-in set.

use std::path::Path;

use crate::error::{CliResult, failure};

/// The default text: 780 sentences from Python's documentation (data/README.md).
const DEFAULT_SENTENCES: &str = include_str!("../data/sentences.txt");

/// The sentences of a text and where they come from.
pub struct Sentences {
    /// Non-blank lines, trimmed.
    pub texts: Vec<String>,
    /// The 1-based file line of each sentence.
    pub lines: Vec<usize>,
    /// The name to show for the text.
    pub name: String,
}

/// Non-blank lines of `path` (trimmed), or of the built-in set; an empty file is an error.
pub fn sentences(path: Option<&Path>) -> CliResult<Sentences> {
    let (text, name) = match path {
        None => (
            DEFAULT_SENTENCES.to_string(),
            "sentences.txt (built in)".to_string(),
        ),
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| failure(p, format!("cannot read: {e}")))?;
            let text =
                String::from_utf8(bytes).map_err(|e| failure(p, format!("not UTF-8 text: {e}")))?;
            (text, p.display().to_string())
        }
    };
    let (lines, texts): (Vec<usize>, Vec<String>) = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i, l.to_string()))
        .unzip();
    if texts.is_empty() {
        let shown = path.unwrap_or(Path::new("sentences.txt"));
        return Err(failure(
            shown,
            "no sentences: the file is empty (one sentence per line)",
        ));
    }
    Ok(Sentences { texts, lines, name })
}

/// The calibration text of `--text FILE [--samples N]`: the first `samples` non-blank lines
/// (all by default). Errors on an unreadable or empty file.
pub fn calibration_text(path: &Path, samples: Option<usize>) -> CliResult<Vec<String>> {
    let mut s = sentences(Some(path))?.texts;
    s.truncate(samples.unwrap_or(usize::MAX));
    if s.is_empty() {
        return Err(failure(path, "no calibration text (--samples 0)"));
    }
    Ok(s)
}

/// Tells on stderr which sentences (by file line) were cut to the model's length.
pub fn warn_truncated(s: &Sentences, truncated: &[usize], max_tokens: usize) {
    let name = &s.name;
    if !truncated.is_empty() {
        let shown: Vec<String> = truncated
            .iter()
            .take(5)
            .map(|&i| s.lines[i].to_string())
            .collect();
        eprintln!(
            "modelopt: warning: {} sentence(s) of {name} longer than {max_tokens} tokens were truncated (line(s) {}{})",
            truncated.len(),
            shown.join(", "),
            if truncated.len() > 5 { ", ..." } else { "" }
        );
    }
}
