//! The tails of conversations this process just wrote, so that continuing from an answer
//! (`previous_response_id`, `from_answer`) does not read back what was just stored.
//!
//! A continuation used to cost three reads before the model was called: the answer, its
//! conversation, and the conversation's newest messages. After a turn is stored here, the
//! conversation (its message count included) and its newest messages are kept under the
//! answer's id; the next turn that continues from that answer takes them instead.
//!
//! Why a stale entry cannot corrupt a conversation: a continuation is stored with
//! `append_messages_if(expected = the count read)`, so if another turn was stored after the
//! answer meanwhile (here or on another replica), the store refuses the append and the turn
//! becomes a branch, read from the database, exactly as when the answer was read from there.
//! What a cache could get wrong is a conversation deleted since; deleting a conversation
//! moves the shared change counter (see [`Coherence`]), which empties this cache on every
//! replica within one sync interval, and a deletion inside that window makes the turn fail
//! when it is stored (`not_found`), as it would have at the start.
//!
//! Only entries whose count is exact are kept: a new conversation, or a continuation the
//! store accepted. An entry is taken (removed) by the turn that uses it, since after that
//! turn the answer is no longer the newest; `store: false` turns read it without taking it.
//! The cache is bounded by an estimate of its bytes and drops its oldest entries first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::cache::{Coherence, lock};
use crate::conversation::{Conversation, Message};

/// What one message costs beyond its text, roughly (ids, timestamps, the struct itself).
const MESSAGE_OVERHEAD: usize = 256;

/// A conversation as stored after a turn, and its newest messages (oldest first, ending with
/// the answer).
#[derive(Clone)]
pub(crate) struct Tail {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

struct Entry {
    tail: Tail,
    bytes: usize,
}

#[derive(Default)]
struct State {
    /// The generation of every entry held.
    generation: u64,
    entries: HashMap<String, Entry>,
    /// Keys in the order they were kept; may name entries already taken.
    order: VecDeque<String>,
    bytes: usize,
}

impl State {
    /// Drops everything when the caches were emptied since the entries were kept.
    fn at(&mut self, generation: u64) {
        if self.generation != generation {
            self.entries.clear();
            self.order.clear();
            self.bytes = 0;
            self.generation = generation;
        }
    }
}

struct Inner {
    coherence: Arc<Coherence>,
    budget: usize,
    state: Mutex<State>,
}

/// The cache; cheap to clone. [`Tails::off`] keeps nothing.
#[derive(Clone, Default)]
pub struct Tails(Option<Arc<Inner>>);

impl Tails {
    /// A cache of at most about `budget` bytes, emptied whenever `coherence` says caches are
    /// stale. A zero budget keeps nothing.
    #[must_use]
    pub fn new(coherence: Arc<Coherence>, budget: usize) -> Self {
        if budget == 0 {
            return Self::off();
        }
        Self(Some(Arc::new(Inner {
            coherence,
            budget,
            state: Mutex::new(State::default()),
        })))
    }

    /// No cache: every continuation reads the store.
    #[must_use]
    pub fn off() -> Self {
        Self(None)
    }

    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The current generation, read before a write whose result will be kept.
    pub(crate) fn generation(&self) -> u64 {
        self.0.as_ref().map_or(0, |i| i.coherence.generation())
    }

    /// The tail ending with `answer`, if this process stored it and nothing emptied the cache
    /// since; `take` removes it.
    pub(crate) fn get(&self, answer: &str, take: bool) -> Option<Tail> {
        let inner = self.0.as_ref()?;
        let generation = inner.coherence.generation();
        let mut state = lock(&inner.state);
        state.at(generation);
        if take {
            let entry = state.entries.remove(answer)?;
            state.bytes -= entry.bytes;
            Some(entry.tail)
        } else {
            state.entries.get(answer).map(|e| e.tail.clone())
        }
    }

    /// Keeps `tail` under its last message's id, if nothing emptied the cache since
    /// `generation` (read before the write that made it).
    pub(crate) fn keep(&self, tail: Tail, generation: u64) {
        let Some(inner) = &self.0 else { return };
        let Some(key) = tail.messages.last().map(|m| m.id.clone()) else {
            return;
        };
        let bytes = size_of(&tail);
        if bytes > inner.budget {
            return;
        }
        let mut state = lock(&inner.state);
        if inner.coherence.generation() != generation {
            return;
        }
        state.at(generation);
        while state.bytes + bytes > inner.budget {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some(gone) = state.entries.remove(&oldest) {
                state.bytes -= gone.bytes;
            }
        }
        // Keys of taken entries stay in `order` until they reach its front; compact it when
        // they outnumber the live ones.
        if state.order.len() > 2 * state.entries.len() + 64 {
            let State { entries, order, .. } = &mut *state;
            order.retain(|k| entries.contains_key(k));
        }
        state.bytes += bytes;
        state.order.push_back(key.clone());
        state.entries.insert(key, Entry { tail, bytes });
    }

    /// After `conversation` was deleted here: empties every cache of this process and moves
    /// the shared change counter, so that every replica empties its caches.
    pub(crate) async fn deleted(&self, conversation: &str) {
        let Some(inner) = &self.0 else { return };
        tracing::debug!(conversation, "conversation deleted: emptying the caches");
        inner.coherence.changed().await;
    }
}

impl Tails {
    /// Entries held and their estimated bytes.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        self.0.as_ref().map_or((0, 0), |i| {
            let state = lock(&i.state);
            (state.entries.len(), state.bytes)
        })
    }
}

fn size_of(tail: &Tail) -> usize {
    let c = &tail.conversation;
    let conversation = MESSAGE_OVERHEAD
        + c.id.len()
        + c.session_key.len()
        + c.created_by.as_ref().map_or(0, String::len)
        + c.context
            .iter()
            .map(|(k, v)| k.len() + v.to_string().len())
            .sum::<usize>();
    conversation
        + tail
            .messages
            .iter()
            .map(|m| {
                MESSAGE_OVERHEAD
                    + m.content.len()
                    + m.tool_calls
                        .iter()
                        .map(|t| t.name.len() + t.arguments.len() + t.id.len())
                        .sum::<usize>()
                    + m.annotations
                        .citations
                        .iter()
                        .map(|c| 64 + c.file_id.len() + c.filename.len())
                        .sum::<usize>()
                    + m.annotations
                        .guardrails
                        .iter()
                        .map(|g| 64 + g.rule.len() + g.detail.len())
                        .sum::<usize>()
            })
            .sum::<usize>()
}
