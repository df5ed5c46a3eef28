//! OpenAI's embeddings endpoint (`POST {base_url}/embeddings`), spoken by OpenAI and by most
//! compatible servers (vLLM, Ollama, llama.cpp, LM Studio…): inputs in batches, vectors as
//! floats, put back in input order by their `index`.

use agentry_domain::llm::ProviderError;
use serde::{Deserialize, Serialize};

use crate::errors::malformed;

/// Inputs per upstream call (OpenAI accepts 2,048 and 300,000 tokens per call; Agentry's
/// chunks are about 250 tokens each).
pub(super) const BATCH_INPUTS: usize = 128;

/// The request body.
#[derive(Debug, Serialize)]
pub(super) struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

impl<'a> EmbeddingRequest<'a> {
    pub(super) fn new(model: &'a str, input: &'a [String]) -> Self {
        Self {
            model,
            input,
            encoding_format: "float",
        }
    }
}

/// The parts of the answer read: `data[].index` and `data[].embedding`.
#[derive(Debug, Deserialize)]
pub(super) struct EmbeddingResponse {
    data: Vec<EmbeddingData>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingData {
    index: usize,
    embedding: Vec<f32>,
}

impl EmbeddingResponse {
    /// The vectors in input order; `inputs` vectors exactly, each index once.
    pub(super) fn into_vectors(self, inputs: usize) -> Result<Vec<Vec<f32>>, ProviderError> {
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
        for d in self.data {
            match vectors.get_mut(d.index) {
                Some(slot @ None) => *slot = Some(d.embedding),
                Some(Some(_)) => return Err(malformed(format!("index {} came twice", d.index))),
                None => {
                    return Err(malformed(format!("index {} for {inputs} inputs", d.index)));
                }
            }
        }
        vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| malformed(format!("no embedding for input {i}"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(json: &str) -> EmbeddingResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn vectors_are_put_back_in_input_order() {
        let r = read(
            r#"{"object":"list","model":"m","usage":{"prompt_tokens":2,"total_tokens":2},
            "data":[{"object":"embedding","index":1,"embedding":[0.5,1]},
                    {"object":"embedding","index":0,"embedding":[-1,0.25]}]}"#,
        );
        assert_eq!(
            r.into_vectors(2).unwrap(),
            vec![vec![-1.0, 0.25], vec![0.5, 1.0]]
        );
    }

    #[test]
    fn missing_doubled_or_stray_vectors_are_malformed() {
        let one = r#"{"data":[{"index":0,"embedding":[1]}]}"#;
        assert!(matches!(
            read(one).into_vectors(2),
            Err(ProviderError::Malformed { .. })
        ));
        let twice = r#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#;
        assert!(read(twice).into_vectors(2).is_err());
        let stray = r#"{"data":[{"index":5,"embedding":[1]}]}"#;
        assert!(read(stray).into_vectors(1).is_err());
    }

    #[test]
    fn the_request_asks_for_floats() {
        let input = vec!["a".to_owned()];
        let body = serde_json::to_value(EmbeddingRequest::new("m", &input)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "m", "input": ["a"], "encoding_format": "float"})
        );
    }
}
