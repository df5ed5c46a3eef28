//! Reading prompts and cutting answers into stream tokens.

use serde_json::Value;

/// The text of a message `content`: a string, or an array of `{"type":"text","text":..}` parts.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text of the last `user` message of a `messages` array, or `""`.
pub(crate) fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default()
}

/// Rough token count: whitespace-separated words.
pub(crate) fn word_count(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// Words of every message's content (and of `system`, when given).
pub(crate) fn prompt_words(messages: &[Value], system: Option<&Value>) -> u32 {
    let from_messages: u32 = messages
        .iter()
        .filter_map(|m| m.get("content"))
        .map(|c| word_count(&content_text(c)))
        .sum();
    from_messages + system.map_or(0, |s| word_count(&content_text(s)))
}

/// Cuts `text` into one piece per word, whitespace kept, so the pieces concatenate to `text`.
pub(crate) fn tokens(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut previous_was_space = false;
    for (i, c) in text.char_indices() {
        let is_space = c.is_whitespace();
        if !is_space && previous_was_space && text[start..i].chars().any(|c| !c.is_whitespace()) {
            pieces.push(&text[start..i]);
            start = i;
        }
        previous_was_space = is_space;
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
    fn tokens_concatenate_to_the_text() {
        for text in ["", "one", "  two words ", "a\n b\tc", "x  "] {
            assert_eq!(tokens(text).concat(), text);
        }
        assert_eq!(
            tokens("  hello big world "),
            vec!["  hello ", "big ", "world "]
        );
    }

    #[test]
    fn words_and_user_text() {
        let messages = vec![
            serde_json::json!({"role": "system", "content": "be nice"}),
            serde_json::json!({"role": "user", "content": [{"type": "text", "text": "hi there"}]}),
        ];
        assert_eq!(last_user_text(&messages), "hi there");
        assert_eq!(prompt_words(&messages, None), 4);
    }
}
