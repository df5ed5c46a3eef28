//! The mock's embedding model, `lexical`: a deterministic hashed bag of lightly stemmed
//! words and of their character trigrams, in [`DIMS`] dimensions, L2-normalised.
//!
//! It is a **lexical stand-in, not a semantic model**: texts are near when they share words
//! (or parts of words, through the trigrams: "refund" and "refunded"), never because they
//! mean the same thing with other words. It exists so that hybrid ranking works offline, in
//! tests and on the default configuration; the quality of a semantic model needs a real
//! provider (docs/knowledge.md). The same text gives the same vector in every process and
//! release (FNV-1a hashing, no random seed), since vectors are stored.

/// Dimensions of a vector.
pub(crate) const DIMS: usize = 256;

/// Weight of a character trigram next to its word's weight of 1.
const TRIGRAM_WEIGHT: f32 = 0.25;

/// Words too common to say anything.
const STOPWORDS: [&str; 48] = [
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has",
    "have", "how", "i", "if", "in", "is", "it", "its", "me", "my", "of", "on", "or", "our", "so",
    "that", "the", "their", "there", "this", "to", "was", "we", "what", "when", "where", "which",
    "who", "why", "will", "with", "you", "your", "yours",
];

/// The vector of `text`.
pub(crate) fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    let lower = text.to_lowercase();
    let words = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(w))
        .map(stem);
    let mut features: Vec<(String, f32)> = Vec::new();
    for word in words {
        features.push((format!("w:{word}"), 1.0));
        let marked: Vec<char> = format!("#{word}#").chars().collect();
        for tri in marked.windows(3) {
            features.push((
                format!("t:{}", tri.iter().collect::<String>()),
                TRIGRAM_WEIGHT,
            ));
        }
    }
    // Sublinear term frequency: a feature seen n times weighs (1 + ln n) times its weight.
    features.sort_by(|a, b| a.0.cmp(&b.0));
    let mut i = 0;
    while i < features.len() {
        let (name, weight) = &features[i];
        let n = features[i..].iter().take_while(|(f, _)| f == name).count();
        #[allow(clippy::cast_precision_loss)]
        let tf = 1.0 + (n as f32).ln();
        let h = fnv1a(name.as_bytes());
        let index = usize::try_from(h % DIMS as u64).unwrap_or(0);
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[index] += sign * weight * tf;
        i += n;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// A light English suffix stripper (plurals, -ing, -ed, -ly), keeping at least three
/// letters.
fn stem(word: &str) -> String {
    let keep = |stem: &str| stem.chars().count() >= 3;
    if let Some(s) = word.strip_suffix("ies").filter(|s| keep(s)) {
        return format!("{s}y");
    }
    for suffix in ["ing", "ed", "ly", "es", "s"] {
        if let Some(s) = word.strip_suffix(suffix).filter(|s| keep(s)) {
            if suffix == "s" && s.ends_with('s') {
                break;
            }
            return s.to_owned();
        }
    }
    word.to_owned()
}

/// 64-bit FNV-1a: stable across processes and releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn vectors_are_unit_deterministic_and_lexical() {
        let a = embed("Refunds are paid within fourteen days");
        assert_eq!(a.len(), DIMS);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(a, embed("Refunds are paid within fourteen days"));
        // Shared (stemmed) words make texts near; other words with the same meaning do not.
        let near = cos(&a, &embed("when is my refund paid"));
        let synonym = cos(&a, &embed("money back"));
        assert!(near > 0.4, "{near}");
        assert!(synonym < near / 2.0, "{synonym} vs {near}");
        assert!(embed("").iter().all(|x| *x == 0.0));
        assert!(embed("the and of").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn stemming_is_light() {
        assert_eq!(stem("refunds"), "refund");
        assert_eq!(stem("shipping"), "shipp");
        assert_eq!(stem("shipped"), "shipp");
        assert_eq!(stem("deliveries"), "delivery");
        assert_eq!(stem("glass"), "glass");
        assert_eq!(stem("is"), "is");
    }

    #[test]
    fn hashing_is_stable() {
        // Stored vectors depend on it: a change here needs a new model name.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
