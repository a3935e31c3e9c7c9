//! Evaluation metrics with the conventions of the packages papers report with.

/// Index of the largest value; ties go to the lowest index (as `numpy.argmax`).
pub fn argmax(values: &[f64]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

/// `rouge_score`'s tokenisation (no stemming): lowercase, non-alphanumerics become spaces.
fn rouge_tokens(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase();
    let cleaned: String =
        lowered.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { ' ' }).collect();
    cleaned.split_whitespace().map(String::from).collect()
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { row[j + 1].max(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Rouge-L F-measure of `prediction` against `reference`, as `rouge_score.rouge_scorer`
/// (`RougeScorer(["rougeL"]).score(reference, prediction).fmeasure`).
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let (p, r) = (rouge_tokens(prediction), rouge_tokens(reference));
    if p.is_empty() || r.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&r, &p) as f64;
    let (precision, recall) = (lcs / p.len() as f64, lcs / r.len() as f64);
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_the_first_of_equals() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    /// Values from `rouge_score` 0.1.2: score("the cat sat on the mat", "the cat is on the mat").
    #[test]
    fn rouge_l_matches_rouge_score() {
        assert!((rouge_l("the cat is on the mat", "the cat sat on the mat") - 0.8333333333333334).abs() < 1e-12);
        assert!((rouge_l("The CAT, sat!", "the cat sat") - 1.0).abs() < 1e-12);
        assert_eq!(rouge_l("", "the cat"), 0.0);
        assert_eq!(rouge_l("dog", "the cat"), 0.0);
    }
}
