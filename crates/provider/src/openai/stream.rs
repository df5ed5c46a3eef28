//! Reading a streamed chat completion: the SSE body decoded here, chunk by chunk, into port
//! events. A plain stream adapter over the HTTP body: no task, no channel.

use std::collections::VecDeque;
use std::pin::Pin;

use agentry_domain::llm::{ProviderError, StreamEvent, TokenUsage, ToolCall};
use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt, stream};

use super::wire::{ChatChunk, ToolCallDelta};
use crate::errors::{self, malformed};

type Events = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// What a stream has told so far.
struct StreamState {
    events: Events,
    model: String,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    /// Tool calls being gathered, in the order they started.
    calls: Vec<PartialCall>,
    /// Whole tool calls waiting to be emitted.
    ready: VecDeque<ToolCall>,
    /// Whether the body is over (`[DONE]`, or its end).
    finished: bool,
    ended: bool,
}

/// A streamed tool call so far.
struct PartialCall {
    index: usize,
    id: String,
    name: String,
    arguments: String,
}

/// Chunks as port events: one `Delta` per non-empty content; each tool call whole, once its
/// choice finishes (or the body ends); `Done` at the end with the finish reason and usage
/// (which arrives in a last chunk after the finish reason). An end without a finish reason
/// is a broken stream.
pub(super) fn translate(
    response: reqwest::Response,
    model: String,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> + Send {
    let events: Events = Box::pin(response.bytes_stream().eventsource().map(|item| {
        item.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(e) => errors::chain(&e.without_url()),
            other => other.to_string(),
        })
    }));
    let state = StreamState {
        events,
        model,
        finish_reason: None,
        usage: None,
        calls: Vec::new(),
        ready: VecDeque::new(),
        finished: false,
        ended: false,
    };
    stream::unfold(state, |mut state| async move {
        if state.ended {
            return None;
        }
        let item = state.next_event().await;
        state.ended = !matches!(item, Ok(StreamEvent::Delta(_) | StreamEvent::ToolCall(_)));
        Some((item, state))
    })
}

impl StreamState {
    async fn next_event(&mut self) -> Result<StreamEvent, ProviderError> {
        loop {
            if let Some(call) = self.ready.pop_front() {
                return Ok(StreamEvent::ToolCall(call));
            }
            if self.finished {
                return self.done();
            }
            match self.events.next().await {
                Some(Ok(event)) if event.data.trim() == "[DONE]" => self.finish_calls(true),
                Some(Ok(event)) => {
                    let chunk: ChatChunk = serde_json::from_str(&event.data).map_err(malformed)?;
                    if let Some(text) = self.absorb(chunk)? {
                        return Ok(StreamEvent::Delta(text));
                    }
                }
                Some(Err(e)) => {
                    return Err(ProviderError::Unavailable(format!(
                        "the connection broke: {e}"
                    )));
                }
                None => self.finish_calls(true),
            }
        }
    }

    fn done(&mut self) -> Result<StreamEvent, ProviderError> {
        match self.finish_reason.take() {
            Some(reason) => Ok(StreamEvent::Done {
                usage: self.usage,
                finish_reason: Some(reason),
                model: std::mem::take(&mut self.model),
            }),
            None => Err(ProviderError::Unavailable(
                "the stream ended before the answer was complete".to_owned(),
            )),
        }
    }

    /// Moves the gathered tool calls to the emit queue; `body_over` also marks the end.
    fn finish_calls(&mut self, body_over: bool) {
        self.ready.extend(self.calls.drain(..).map(|call| ToolCall {
            id: call.id,
            name: call.name,
            arguments: call.arguments,
        }));
        self.finished |= body_over;
    }

    /// Notes a chunk's model, usage, tool-call fragments and finish reason; returns its
    /// text, if any.
    fn absorb(&mut self, chunk: ChatChunk) -> Result<Option<String>, ProviderError> {
        if let Some(error) = chunk.error {
            return Err(ProviderError::Upstream {
                status: 502,
                message: error.message,
            });
        }
        if !chunk.model.is_empty() {
            self.model = chunk.model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(None);
        };
        for fragment in choice.delta.tool_calls.into_iter().flatten() {
            self.gather(fragment);
        }
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
            self.finish_calls(false);
        }
        Ok(choice.delta.content.filter(|text| !text.is_empty()))
    }

    /// Adds a fragment to the call of its index (starting that call when new).
    fn gather(&mut self, fragment: ToolCallDelta) {
        let position = self.calls.iter().position(|c| c.index == fragment.index);
        let call = match position {
            Some(i) => &mut self.calls[i],
            None => {
                self.calls.push(PartialCall {
                    index: fragment.index,
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                let last = self.calls.len() - 1;
                &mut self.calls[last]
            }
        };
        if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name {
                call.name.push_str(&name);
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }
}
