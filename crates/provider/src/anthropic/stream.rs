//! Reading a streamed Messages answer: SSE events into port events.

use agentry_domain::llm::{ProviderError, StreamEvent, TokenUsage, ToolCall};
use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;

use super::wire::{WireUsage, finish_reason};
use crate::errors::{self, malformed};

/// The SSE events we act on; others (`ping`…) are skipped.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: usize,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: usize,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    model: String,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl WireError {
    /// The HTTP status Anthropic uses for this error type.
    fn into_error(self) -> ProviderError {
        let status = match self.kind.as_str() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "overloaded_error" => 529,
            _ => 500,
        };
        errors::from_status(status, None, self.message)
    }
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// What a stream has told so far.
struct StreamState {
    events: Events,
    model: String,
    usage: WireUsage,
    stop_reason: Option<String>,
    /// The forced structured-output tool, whose input is streamed as the answer's text.
    structured: Option<String>,
    /// Whether the structured answer was given (then a `tool_use` stop means `stop`).
    answered_structured: bool,
    /// `tool_use` blocks being gathered, by content-block index.
    calls: Vec<(usize, ToolCall)>,
    /// Whether `message_stop` came (then only open calls and `Done` are left to emit).
    stopped: bool,
    ended: bool,
}

/// Events as port events: text deltas as `Delta`s; a `tool_use` block as one `ToolCall` at
/// its `content_block_stop` (or, for the structured-output tool, its JSON as one `Delta`);
/// `Done` at `message_stop`.
pub(super) fn translate(
    response: reqwest::Response,
    model: String,
    structured: Option<String>,
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
        usage: WireUsage::default(),
        stop_reason: None,
        structured,
        answered_structured: false,
        calls: Vec::new(),
        stopped: false,
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
        if self.stopped {
            return Ok(self.after_stop());
        }
        while let Some(event) = self.events.next().await {
            let event = event
                .map_err(|e| ProviderError::Unavailable(format!("the connection broke: {e}")))?;
            let parsed: WireEvent = serde_json::from_str(&event.data).map_err(malformed)?;
            if let Some(out) = self.absorb(parsed)? {
                return Ok(out);
            }
        }
        Err(ProviderError::Unavailable(
            "the stream ended before the answer was complete".to_owned(),
        ))
    }

    /// Notes an event; returns the port event it makes, if any.
    fn absorb(&mut self, event: WireEvent) -> Result<Option<StreamEvent>, ProviderError> {
        match event {
            WireEvent::MessageStart { message } => {
                if !message.model.is_empty() {
                    self.model = message.model;
                }
                self.merge_usage(message.usage);
            }
            WireEvent::ContentBlockStart {
                index,
                content_block: StartBlock::ToolUse { id, name },
            } => {
                let call = ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                };
                self.calls.push((index, call));
            }
            WireEvent::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
                ..
            } if !text.is_empty() => {
                return Ok(Some(StreamEvent::Delta(text)));
            }
            WireEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::InputJsonDelta { partial_json },
            } => {
                if let Some((_, call)) = self.calls.iter_mut().find(|(i, _)| *i == index) {
                    call.arguments.push_str(&partial_json);
                }
            }
            WireEvent::ContentBlockStop { index } => return Ok(self.finish_block(index)),
            WireEvent::MessageDelta { delta, usage } => {
                self.stop_reason = delta.stop_reason.or(self.stop_reason.take());
                self.merge_usage(usage);
            }
            WireEvent::MessageStop => {
                self.stopped = true;
                return Ok(Some(self.after_stop()));
            }
            WireEvent::Error { error } => return Err(error.into_error()),
            WireEvent::ContentBlockStart { .. }
            | WireEvent::ContentBlockDelta { .. }
            | WireEvent::Other => {}
        }
        Ok(None)
    }

    /// After `message_stop`: the calls whose block never said `content_block_stop`, then
    /// `Done`.
    fn after_stop(&mut self) -> StreamEvent {
        let open = self.calls.first().map(|(i, _)| *i);
        open.and_then(|index| self.finish_block(index))
            .unwrap_or_else(|| self.done())
    }

    /// The event a finished `tool_use` block makes (none for other blocks).
    fn finish_block(&mut self, index: usize) -> Option<StreamEvent> {
        let position = self.calls.iter().position(|(i, _)| *i == index)?;
        let (_, mut call) = self.calls.remove(position);
        if call.arguments.trim().is_empty() {
            call.arguments = "{}".to_owned();
        }
        if self.structured.as_deref() == Some(call.name.as_str()) {
            self.answered_structured = true;
            return Some(StreamEvent::Delta(call.arguments));
        }
        Some(StreamEvent::ToolCall(call))
    }

    fn merge_usage(&mut self, usage: Option<WireUsage>) {
        let Some(usage) = usage else { return };
        self.usage.input_tokens = usage.input_tokens.or(self.usage.input_tokens);
        self.usage.output_tokens = usage.output_tokens.or(self.usage.output_tokens);
    }

    fn done(&mut self) -> StreamEvent {
        let usage =
            (self.usage.input_tokens.is_some() || self.usage.output_tokens.is_some()).then(|| {
                TokenUsage::new(
                    self.usage.input_tokens.unwrap_or(0),
                    self.usage.output_tokens.unwrap_or(0),
                )
            });
        let mut finish = self.stop_reason.as_deref().map(finish_reason);
        if self.answered_structured && finish.as_deref() == Some("tool_calls") {
            finish = Some("stop".to_owned());
        }
        StreamEvent::Done {
            usage,
            finish_reason: finish,
            model: std::mem::take(&mut self.model),
        }
    }
}
