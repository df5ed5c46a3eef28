//! Rough token arithmetic for the mock: words.

/// Whitespace-separated words.
pub(crate) fn word_count(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// Where each piece ends: one piece per word, whitespace kept (leading whitespace goes with
/// the first word, trailing with the word before it), so the pieces `text[previous end..end]`
/// concatenate to `text`. Offsets rather than slices, so a stream can keep them cheaply.
pub(crate) fn piece_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut start = 0;
    let mut after_space = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && after_space && text[start..i].chars().any(|c| !c.is_whitespace()) {
            ends.push(i);
            start = i;
        }
        after_space = space;
    }
    if start < text.len() {
        ends.push(text.len());
    }
    ends
}

/// Piece `i` of `text`, by the offsets of [`piece_ends`] (empty past the last one).
pub(crate) fn piece<'a>(text: &'a str, ends: &[usize], i: usize) -> &'a str {
    let start = i
        .checked_sub(1)
        .and_then(|before| ends.get(before))
        .copied()
        .unwrap_or(0);
    ends.get(i)
        .and_then(|&end| text.get(start..end))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        let ends = piece_ends(text);
        (0..ends.len()).map(|i| piece(text, &ends, i)).collect()
    }

    #[test]
    fn pieces_concatenate() {
        for text in ["", "a", " a  b\nc ", "   ", "é ü"] {
            assert_eq!(pieces(text).concat(), text);
        }
        assert_eq!(pieces("hi  there you"), vec!["hi  ", "there ", "you"]);
        assert_eq!(word_count(" a  b "), 2);
    }
}
