//! What both wire formats share: the parsed ask, the answer, and the reply to send.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;

use crate::text::{tokens, word_count};

/// The parts of a request the fake cares about.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    /// The model name asked for.
    pub model: String,
    /// Whether an SSE stream was asked for.
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage`.
    pub include_usage: bool,
    /// The answer length limit, in words.
    pub max_tokens: Option<u32>,
    /// Words of the prompt.
    pub prompt_tokens: u32,
    /// The text to echo.
    pub last_user: String,
}

/// An answer cut into stream pieces, with its usage.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// One piece per word; they concatenate to the answer.
    pub pieces: Vec<String>,
    /// Whether `max_tokens` cut it short.
    pub truncated: bool,
    /// Words of the prompt.
    pub prompt_tokens: u32,
    /// Words of the answer.
    pub completion_tokens: u32,
}

impl Answer {
    /// The answer `text` to `asked`, cut to its `max_tokens`.
    pub(crate) fn new(text: &str, asked: &Asked) -> Self {
        let mut pieces: Vec<String> = tokens(text).into_iter().map(str::to_owned).collect();
        let limit = asked.max_tokens.map_or(usize::MAX, |m| m as usize);
        let truncated = pieces.len() > limit;
        pieces.truncate(limit);
        let completion_tokens = word_count(&pieces.concat());
        Self {
            pieces,
            truncated,
            prompt_tokens: asked.prompt_tokens,
            completion_tokens,
        }
    }

    /// The whole text.
    pub(crate) fn text(&self) -> String {
        self.pieces.concat()
    }

    /// How many pieces a cut stream sends before breaking: about half, at least one.
    pub(crate) fn cut_len(&self) -> usize {
        self.pieces.len().div_ceil(2).max(1).min(self.pieces.len())
    }
}

/// An HTTP reply, possibly streamed slowly or broken on purpose.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Retry-After` seconds, when set.
    pub retry_after: Option<u32>,
    /// Body pieces, sent in order.
    pub chunks: Vec<Bytes>,
    /// Pause between pieces.
    pub gap: Duration,
    /// Whether to drop the connection after the pieces instead of ending the body.
    pub cut: bool,
}

impl Reply {
    /// A JSON reply.
    pub(crate) fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            retry_after: (status == 429).then_some(1),
            chunks: vec![Bytes::from(body.to_string())],
            gap: Duration::ZERO,
            cut: false,
        }
    }

    /// A JSON reply whose connection breaks half-way through the body.
    pub(crate) fn broken_json(body: &Value) -> Self {
        let text = body.to_string();
        let half = text.len() / 2;
        Self {
            chunks: vec![Bytes::from(text.as_bytes()[..half].to_vec())],
            cut: true,
            ..Self::json(200, &Value::Null)
        }
    }

    /// An SSE reply.
    pub(crate) fn sse(chunks: Vec<Bytes>, gap: Duration, cut: bool) -> Self {
        Self {
            status: 200,
            content_type: "text/event-stream",
            retry_after: None,
            chunks,
            gap,
            cut,
        }
    }
}

/// One wire format (OpenAI's or Anthropic's).
pub(crate) trait Wire {
    /// Reads a request body, or says why it is invalid.
    fn parse(body: &Value) -> Result<Asked, String>;
    /// The format's error reply for `status`.
    fn error(status: u16, message: Option<&str>) -> Reply;
    /// The format's answer; `cut` breaks it half-way.
    fn answer(asked: &Asked, answer: &Answer, gap: Duration, cut: bool) -> Reply;
    /// The format's answer calling `calls` (`(name, arguments JSON text)`).
    fn tool_calls(asked: &Asked, calls: &[(String, String)], gap: Duration) -> Reply;
}

/// `text` in about `parts` fragments (cut on character boundaries), as providers stream a
/// tool call's arguments; at least one fragment, even for an empty text.
pub(crate) fn fragments(text: &str, parts: usize) -> Vec<&str> {
    let chars = text.chars().count();
    let size = chars.div_ceil(parts.max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    for (n, (i, _)) in text.char_indices().enumerate() {
        if n > 0 && n % size == 0 {
            out.push(&text[start..i]);
            start = i;
        }
    }
    out.push(&text[start..]);
    out
}

/// Tokens of tool calls: the words of their names and arguments.
pub(crate) fn tool_call_tokens(calls: &[(String, String)]) -> u32 {
    calls
        .iter()
        .map(|(name, arguments)| word_count(name) + word_count(arguments))
        .sum()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A max-tokens field, when it is a non-negative integer.
pub(crate) fn read_u32(body: &Value, field: &str) -> Option<u32> {
    body.get(field)
        .and_then(Value::as_u64)
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_concatenate_to_the_text() {
        for text in ["", "{}", r#"{"city":"Paris","unit":"c"}"#, "éüö"] {
            let pieces = fragments(text, 3);
            assert_eq!(pieces.concat(), text);
            assert!(!pieces.is_empty() && pieces.len() <= 3, "{pieces:?}");
        }
        assert_eq!(fragments(r#"{"a":1}"#, 3).len(), 3);
    }
}
