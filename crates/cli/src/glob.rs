//! Shell-style name patterns for `--keep`: `*` any run of characters, `?` one character.

/// True when `name` matches `pattern` as a whole (`*` and `?` wildcards, everything else literal).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with backtracking to the last `*` (linear in practice, no recursion).
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("*.bias", "encoder.layer.0.bias"));
        assert!(!matches("*.bias", "encoder.layer.0.bias.x"));
        assert!(matches("embeddings.*", "embeddings.word_embeddings.weight"));
        assert!(matches("layer.?.w", "layer.3.w"));
        assert!(!matches("layer.?.w", "layer.10.w"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }
}
