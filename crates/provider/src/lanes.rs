//! Spreading calls over several HTTP clients ("lanes"), at most `streams_per_connection` calls
//! on each at a time.
//!
//! Over HTTP/2 (negotiated with HTTPS providers, or spoken from the start with
//! `http2_prior_knowledge`), an HTTP client keeps one connection per upstream and multiplexes
//! every call on it; a call beyond the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` waits in
//! the client until another call on that connection ends. Each lane is a client of its own
//! (its own pool, so its own connection): when every lane carries `limit` calls, the next call
//! opens a new lane instead of waiting.
//!
//! Only an upstream that can speak HTTP/2 gets lanes; an HTTP/1.1 one gets a single client,
//! without this layer. Making a lane builds a reqwest client, which loads
//! the system's root certificates: ~4 ms and ~85 KB per lane, once per 100 concurrent calls
//! by default (a new HTTP/1.1 call over TLS would pay a handshake instead).
//!
//! Lanes are never closed: the first lane with room is used, so after a burst the later lanes
//! fall idle and their pools close their connections (reqwest closes idle connections after
//! 90 s).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError, StreamEvent,
};
use async_trait::async_trait;
use futures_util::Stream;

/// Makes the client of a new lane (a new HTTP client and the adapter around it).
pub(crate) type MakeLane = Box<dyn Fn() -> Result<Arc<dyn LlmClient>, ProviderError> + Send + Sync>;

/// An adapter whose calls are spread over lanes; see the module documentation.
pub(crate) struct Lanes {
    limit: usize,
    make: MakeLane,
    lanes: Mutex<Vec<Lane>>,
}

struct Lane {
    client: Arc<dyn LlmClient>,
    busy: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("limit", &self.limit)
            .field("lanes", &self.lane_count())
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// Lanes of at most `limit` calls each (at least 1), made by `make` when needed.
    pub(crate) fn new(limit: usize, make: MakeLane) -> Self {
        Self {
            limit: limit.max(1),
            make,
            lanes: Mutex::new(Vec::new()),
        }
    }

    /// Makes the first lane unless there is one (to report an unusable definition early).
    pub(crate) fn open_first(&self) -> Result<(), ProviderError> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if lanes.is_empty() {
            lanes.push(self.new_lane()?);
        }
        Ok(())
    }

    fn new_lane(&self) -> Result<Lane, ProviderError> {
        Ok(Lane {
            client: (self.make)()?,
            busy: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many lanes exist.
    pub(crate) fn lane_count(&self) -> usize {
        self.lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The first lane with room (a new one when all are full), counted busy until the ticket
    /// is dropped.
    fn take(&self) -> Result<(Arc<dyn LlmClient>, Ticket), ProviderError> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match lanes
            .iter()
            .position(|lane| lane.busy.load(Ordering::Relaxed) < self.limit)
        {
            Some(index) => index,
            None => {
                lanes.push(self.new_lane()?);
                lanes.len() - 1
            }
        };
        let lane = &lanes[index];
        lane.busy.fetch_add(1, Ordering::Relaxed);
        Ok((Arc::clone(&lane.client), Ticket(Arc::clone(&lane.busy))))
    }
}

/// A call in progress on a lane.
struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that keeps its lane busy until it is dropped.
struct Ticketed {
    events: CompletionStream,
    _ticket: Ticket,
}

impl Stream for Ticketed {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.events.size_hint()
    }
}

#[async_trait]
impl LlmClient for Lanes {
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        let (client, _ticket) = self.take()?;
        client.complete(request).await
    }

    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        let (client, ticket) = self.take()?;
        let events = client.stream(request).await?;
        Ok(Box::pin(Ticketed {
            events,
            _ticket: ticket,
        }))
    }

    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let (client, _ticket) = self.take()?;
        client.embed(model, inputs).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::StreamExt;

    /// An adapter that records which lane served a call and streams one event.
    struct Probe {
        lane: usize,
        served: Arc<Mutex<Vec<usize>>>,
    }

    #[async_trait]
    impl LlmClient for Probe {
        async fn complete(&self, _: CompletionRequest) -> Result<Completion, ProviderError> {
            self.served.lock().unwrap().push(self.lane);
            Ok(Completion {
                content: String::new(),
                tool_calls: Vec::new(),
                usage: None,
                finish_reason: None,
                model: "m".to_owned(),
            })
        }

        async fn stream(&self, _: CompletionRequest) -> Result<CompletionStream, ProviderError> {
            self.served.lock().unwrap().push(self.lane);
            Ok(Box::pin(futures_util::stream::iter([Ok(
                StreamEvent::Delta("hi".to_owned()),
            )])))
        }
    }

    fn lanes(limit: usize) -> (Lanes, Arc<Mutex<Vec<usize>>>) {
        let served = Arc::new(Mutex::new(Vec::new()));
        let made = Arc::new(AtomicUsize::new(0));
        let log = Arc::clone(&served);
        let make: MakeLane = Box::new(move || {
            let lane = made.fetch_add(1, Ordering::Relaxed);
            Ok(Arc::new(Probe {
                lane,
                served: Arc::clone(&log),
            }) as Arc<dyn LlmClient>)
        });
        (Lanes::new(limit, make), served)
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            model: "m".to_owned(),
            messages: Vec::new(),
            temperature: None,
            top_p: None,
            max_tokens: None,
            ..CompletionRequest::default()
        }
    }

    #[tokio::test]
    async fn open_streams_fill_a_lane_before_the_next_is_made() {
        let (lanes, served) = lanes(2);
        let mut open = Vec::new();
        for _ in 0..5 {
            open.push(lanes.stream(request()).await.unwrap());
        }
        assert_eq!(*served.lock().unwrap(), [0, 0, 1, 1, 2]);
        assert_eq!(lanes.lane_count(), 3);

        // Reading a stream to its end does not free its place (its connection may still be
        // busy); dropping it does.
        while open[0].next().await.is_some() {}
        open.push(lanes.stream(request()).await.unwrap());
        assert_eq!(served.lock().unwrap().last(), Some(&2));
        drop(open.remove(0));
        open.push(lanes.stream(request()).await.unwrap());
        assert_eq!(served.lock().unwrap().last(), Some(&0));
        assert_eq!(lanes.lane_count(), 3);
    }

    #[tokio::test]
    async fn finished_calls_free_their_place() {
        let (lanes, served) = lanes(1);
        for _ in 0..3 {
            lanes.complete(request()).await.unwrap();
        }
        assert_eq!(*served.lock().unwrap(), [0, 0, 0]);
        assert_eq!(lanes.lane_count(), 1);
    }

    #[tokio::test]
    async fn a_lane_that_cannot_be_made_fails_the_call_only() {
        let make: MakeLane = Box::new(|| {
            Err(ProviderError::InvalidRequest {
                status: 400,
                message: "no".to_owned(),
            })
        });
        let lanes = Lanes::new(1, make);
        assert!(lanes.complete(request()).await.is_err());
        assert_eq!(lanes.lane_count(), 0);
    }
}
