//! OpenAI's `POST /v1/embeddings`: `input` a string or an array of strings (token arrays
//! are accepted and embedded from their numbers), `encoding_format` `float` (default) or
//! `base64` (little-endian f32s), `dimensions` (default [`DEFAULT_DIMS`]). The answer is the
//! real shape: `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
//! "model", "usage": {"prompt_tokens", "total_tokens"}}`.
//!
//! Vectors are deterministic: a hashed bag of the lower-cased words, L2-normalised, so texts
//! sharing words are near. Scripted replies and model names (`fake-error-<status>`,
//! `fake-slow-<ms>`) apply as to chat; an echo, text, cut or tool-call plan embeds.

use serde_json::{Value, json};

use crate::State;
use crate::openai::OpenAi;
use crate::script::Outcome;
use crate::text::word_count;
use crate::wire::{Reply, Wire};

/// Vector length when the request does not set `dimensions`.
pub(crate) const DEFAULT_DIMS: usize = 64;
/// Most inputs per request, as OpenAI.
const MAX_INPUTS: usize = 2048;

/// Answers one embeddings request.
pub(crate) async fn respond(state: &State, json: Option<Value>) -> Reply {
    let Some(body) = json else {
        return OpenAi::error(400, Some("The request body is not valid JSON."));
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return OpenAi::error(400, Some("you must provide a model parameter"));
    };
    let inputs = match read_inputs(body.get("input")) {
        Ok(inputs) => inputs,
        Err(message) => return OpenAi::error(400, Some(&message)),
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return OpenAi::error(
                400,
                Some(&format!(
                    "'{other}' is not one of ['float', 'base64'] - 'encoding_format'"
                )),
            );
        }
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMS,
        Some(v) => match v.as_u64().and_then(|d| usize::try_from(d).ok()) {
            Some(d) if (1..=4096).contains(&d) => d,
            _ => return OpenAi::error(400, Some("'dimensions' must be an integer from 1")),
        },
    };
    let plan = state.next_plan(model);
    let wait = state.latency() + plan.delay + plan.stall;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match plan.outcome {
        Outcome::Error(status, message) => return OpenAi::error(status, message.as_deref()),
        Outcome::Unreadable => {
            return Reply {
                chunks: vec![bytes::Bytes::from_static(
                    b"<html><body>Welcome to nginx!</body></html>",
                )],
                ..Reply::json(200, &Value::Null)
            };
        }
        Outcome::Echo | Outcome::Text(_) | Outcome::Cut | Outcome::ToolCalls(_) => {}
    }
    let tokens: u32 = inputs.iter().map(|t| word_count(t).max(1)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = vector(text, dims);
            let embedding = if base64 {
                json!(encode_base64(
                    &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
                ))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Reply::json(
        200,
        &json!({"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// The texts of `input`, as OpenAI accepts them.
fn read_inputs(input: Option<&Value>) -> Result<Vec<String>, String> {
    let invalid = || "'$.input' is invalid. Please check the API reference.".to_owned();
    let texts = match input {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_INPUTS => {
            if items.iter().all(Value::is_number) {
                vec![numbers(items)]
            } else {
                items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(s.clone()),
                        Value::Array(tokens) if !tokens.is_empty() => Ok(numbers(tokens)),
                        _ => Err(invalid()),
                    })
                    .collect::<Result<_, _>>()?
            }
        }
        None => return Err("you must provide an input parameter".to_owned()),
        _ => return Err(invalid()),
    };
    if texts.iter().any(String::is_empty) {
        return Err(invalid());
    }
    Ok(texts)
}

/// A token array as text (its numbers as words).
fn numbers(tokens: &[Value]) -> String {
    tokens
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fake's vector of `text`: each lower-cased word adds ±1 at a hashed place.
pub(crate) fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dims];
    for word in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = word.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let index = usize::try_from(h % dims as u64).unwrap_or(0);
        v[index] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Standard base64 with padding.
fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inputs_are_read_as_openai_reads_them() {
        assert_eq!(read_inputs(Some(&json!("hi"))).unwrap(), ["hi"]);
        assert_eq!(read_inputs(Some(&json!(["a", "b"]))).unwrap(), ["a", "b"]);
        assert_eq!(read_inputs(Some(&json!([1, 2]))).unwrap(), ["1 2"]);
        assert!(read_inputs(Some(&json!([]))).is_err());
        assert!(read_inputs(Some(&json!(""))).is_err());
        assert!(read_inputs(Some(&json!([{"x": 1}]))).is_err());
        assert!(read_inputs(None).is_err());
    }

    #[test]
    fn vectors_are_unit_and_share_words() {
        let a = vector("Refunds take fourteen days", 64);
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        assert_eq!(a, vector("refunds TAKE fourteen days", 64));
        assert_eq!(vector("x", 8).len(), 8);
    }

    #[test]
    fn base64_is_standard() {
        assert_eq!(encode_base64(b""), "");
        assert_eq!(encode_base64(b"f"), "Zg==");
        assert_eq!(encode_base64(b"fo"), "Zm8=");
        assert_eq!(encode_base64(b"foo"), "Zm9v");
        assert_eq!(encode_base64(b"foobar"), "Zm9vYmFy");
    }
}
