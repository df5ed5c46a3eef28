//! Rough token arithmetic for the mock: words.

/// Whitespace-separated words.
pub(crate) fn word_count(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// One piece per word, whitespace kept (leading whitespace goes with the first word,
/// trailing with the word before it), so the pieces concatenate to `text`.
pub(crate) fn tokens(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut after_space = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && after_space && text[start..i].chars().any(|c| !c.is_whitespace()) {
            pieces.push(&text[start..i]);
            start = i;
        }
        after_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate() {
        for text in ["", "a", " a  b\nc ", "   "] {
            assert_eq!(tokens(text).concat(), text);
        }
        assert_eq!(tokens("hi  there you"), vec!["hi  ", "there ", "you"]);
        assert_eq!(word_count(" a  b "), 2);
    }
}
