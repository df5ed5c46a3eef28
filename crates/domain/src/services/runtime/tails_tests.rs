//! The tails of conversations kept after a turn (`tails.rs`): what a continuation reads,
//! and what makes it read the store again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::test_support::{Harness, continuing, delta, done, live};
use super::*;
use crate::agent::AgentStatus;
use crate::cache::Coherence;
use crate::llm::Role;
use crate::ports::ChangeLog;

/// The change counter replicas share.
#[derive(Default)]
struct Counter(AtomicI64);

#[async_trait]
impl ChangeLog for Counter {
    async fn change_counter(&self) -> Result<i64> {
        Ok(self.0.load(Ordering::SeqCst))
    }
    async fn record_change(&self) -> Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

const BUDGET: usize = 1024 * 1024;

/// A harness whose runtime keeps tails (`budget` bytes), with the coherence behind them.
fn harness(counter: &Arc<Counter>, budget: usize) -> (Harness, Arc<Coherence>) {
    let mut h = Harness::new();
    let coherence = Coherence::new(counter.clone(), Duration::from_secs(60));
    h.runtime = h
        .runtime
        .clone()
        .with_tails(Tails::new(coherence.clone(), budget));
    (h, coherence)
}

fn from(answer: &str, message: &str, store: bool) -> TurnRequest {
    continuing(answer, message, store)
}

async fn turn(h: &Harness, request: TurnRequest) -> ChatTurn {
    turn_on(h, &h.runtime, request).await
}

/// A turn on `runtime` (another replica over `h`'s store and model).
async fn turn_on(h: &Harness, runtime: &Runtime, request: TurnRequest) -> ChatTurn {
    turn_as(h, runtime, None, request).await
}

/// A turn of `caller` on `runtime`, answered "ok".
async fn turn_as(
    h: &Harness,
    runtime: &Runtime,
    caller: Option<&crate::auth::Principal>,
    request: TurnRequest,
) -> ChatTurn {
    h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    runtime
        .start_turn(caller, live("a"), request)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap()
        .chat
        .unwrap()
}

fn reads(h: &Harness) -> usize {
    h.mem.conversation_reads.load(Ordering::SeqCst)
}

/// Another replica over `h`'s store and model, with its own (or no) tails.
fn replica(h: &Harness, tails: Tails) -> Runtime {
    Runtime::new((*h.runtime.ports).clone(), h.runtime.settings).with_tails(tails)
}

/// An API key that may only call agents (and see its own conversations).
fn invoker(id: &str) -> crate::auth::Principal {
    crate::auth::Principal {
        id: id.to_owned(),
        name: id.to_owned(),
        kind: crate::auth::PrincipalKind::ApiKey { owner: None },
        role: None,
        scopes: vec![crate::auth::Scope::Invoke],
        agents: None,
        rate_limit_per_minute: None,
    }
}

/// The roles and texts of the last request's messages.
fn last_prompt(h: &Harness) -> Vec<(Role, String)> {
    let requests = h.llm.requests();
    let last = requests.last().unwrap();
    last.messages
        .iter()
        .map(|m| (m.role, m.content.clone()))
        .collect()
}

#[tokio::test]
async fn continuing_an_answer_stored_here_reads_nothing_back_and_sends_the_same_prompt() {
    let counter = Arc::new(Counter::default());
    let (cached, _) = harness(&counter, BUDGET);
    let plain = Harness::new();
    let mut prompts = Vec::new();
    for h in [&cached, &plain] {
        h.agent("a", AgentStatus::Active, "Help.", vec![]).await;
        let first = turn(h, TurnRequest::user("one")).await;
        let before = reads(h);
        let second = turn(h, from(&first.answer.id, "two", true)).await;
        let third = turn(h, from(&second.answer.id, "three", true)).await;
        assert_eq!(second.conversation.id, first.conversation.id);
        assert_eq!(third.conversation.id, first.conversation.id);
        assert_eq!(third.conversation.message_count, 6);
        let texts: Vec<String> = h
            .mem
            .messages_of(&first.conversation.id)
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(texts, ["one", "ok", "two", "ok", "three", "ok"]);
        prompts.push((last_prompt(h), reads(h) - before));
    }
    let (cached_prompt, cached_reads) = &prompts[0];
    let (plain_prompt, plain_reads) = &prompts[1];
    assert_eq!(*cached_reads, 0, "both continuations came from the tails");
    assert!(*plain_reads >= 6, "without tails each reads three times");
    assert_eq!(
        cached_prompt, plain_prompt,
        "the model sees the same history"
    );
    assert_eq!(
        cached_prompt.len(),
        6,
        "system, four earlier messages, the new one"
    );
}

#[tokio::test]
async fn the_tail_is_the_newest_history_max_messages() {
    let counter = Arc::new(Counter::default());
    let mut h = Harness::with(RuntimeSettings {
        history_max_messages: 3,
        ..RuntimeSettings::default()
    });
    let coherence = Coherence::new(counter.clone(), Duration::from_secs(60));
    h.runtime = h.runtime.clone().with_tails(Tails::new(coherence, BUDGET));
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let mut answer = turn(&h, TurnRequest::user("m0")).await.answer.id;
    for i in 1..4 {
        answer = turn(&h, from(&answer, &format!("m{i}"), true))
            .await
            .answer
            .id;
    }
    let before = reads(&h);
    turn(&h, from(&answer, "m4", true)).await;
    assert_eq!(reads(&h), before);
    let prompt: Vec<String> = last_prompt(&h).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        prompt,
        ["ok", "m3", "ok", "m4"],
        "three earlier messages, then the new one"
    );
}

#[tokio::test]
async fn an_answer_continued_elsewhere_meanwhile_makes_a_branch_as_without_tails() {
    let counter = Arc::new(Counter::default());
    let (h, _) = harness(&counter, BUDGET);
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let first = turn(&h, TurnRequest::user("one")).await;
    // Another replica (sharing the store, not this process's tails) continues the answer.
    let other = replica(&h, Tails::off());
    let there = turn_on(&h, &other, from(&first.answer.id, "elsewhere", true)).await;
    assert_eq!(there.conversation.id, first.conversation.id);
    // This replica's tail still says the answer is the newest: the store refuses the
    // append at the old count, and the turn becomes a branch holding the line up to it.
    let here = turn(&h, from(&first.answer.id, "here", true)).await;
    assert_ne!(here.conversation.id, first.conversation.id);
    let line: Vec<String> = h
        .mem
        .messages_of(&first.conversation.id)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        line,
        ["one", "ok", "elsewhere", "ok"],
        "the line is untouched"
    );
    let branch: Vec<String> = h
        .mem
        .messages_of(&here.conversation.id)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(branch, ["one", "ok", "here", "ok"]);
}

#[tokio::test]
async fn a_conversation_deleted_on_another_replica_is_read_from_the_store_after_a_sync() {
    let counter = Arc::new(Counter::default());
    let (h, coherence) = harness(&counter, BUDGET);
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    coherence.sync().await.unwrap();
    let first = turn(&h, TurnRequest::user("one")).await;
    assert_eq!(h.runtime.tails.held().0, 1);
    // Replica B (its own tails over the same counter) deletes the conversation.
    let b = replica(
        &h,
        Tails::new(
            Coherence::new(counter.clone(), Duration::from_secs(60)),
            BUDGET,
        ),
    );
    assert!(
        b.delete_conversation(None, &first.conversation.id)
            .await
            .unwrap()
    );
    // Within a sync interval this replica empties its caches; the continuation then reads
    // the store, which no longer has the answer: nothing joins the deleted conversation.
    coherence.sync().await.unwrap();
    let before = reads(&h);
    let next = turn(&h, from(&first.answer.id, "two", true)).await;
    assert!(reads(&h) > before, "read from the store");
    assert_ne!(next.conversation.id, first.conversation.id);
    assert!(h.mem.messages_of(&first.conversation.id).is_empty());
}

#[tokio::test]
async fn deleting_a_conversation_here_empties_the_tails_at_once() {
    let counter = Arc::new(Counter::default());
    let (h, _) = harness(&counter, BUDGET);
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let first = turn(&h, TurnRequest::user("one")).await;
    turn(&h, TurnRequest::user("another")).await;
    assert_eq!(h.runtime.tails.held().0, 2);
    let moved = counter.0.load(Ordering::SeqCst);
    h.runtime
        .delete_conversation(None, &first.conversation.id)
        .await
        .unwrap();
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        moved + 1,
        "told the replicas"
    );
    let before = reads(&h);
    let next = turn(&h, from(&first.answer.id, "two", true)).await;
    assert!(reads(&h) > before);
    assert_ne!(next.conversation.id, first.conversation.id);
}

#[tokio::test]
async fn a_turn_not_stored_leaves_the_tail_for_the_next() {
    let counter = Arc::new(Counter::default());
    let (h, _) = harness(&counter, BUDGET);
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let first = turn(&h, TurnRequest::user("one")).await;
    let before = reads(&h);
    turn(&h, from(&first.answer.id, "just asking", false)).await;
    let kept = turn(&h, from(&first.answer.id, "two", true)).await;
    assert_eq!(reads(&h), before, "both continuations came from the tails");
    assert_eq!(kept.conversation.id, first.conversation.id);
    assert_eq!(h.mem.messages_of(&first.conversation.id).len(), 4);
}

#[tokio::test]
async fn another_caller_cannot_continue_a_cached_answer() {
    let counter = Arc::new(Counter::default());
    let (h, _) = harness(&counter, BUDGET);
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let owner = invoker("owner");
    let stranger = invoker("stranger");
    let first = turn_as(&h, &h.runtime, Some(&owner), TurnRequest::user("one")).await;
    let before = reads(&h);
    let refused = h
        .runtime
        .start_turn(
            Some(&stranger),
            live("a"),
            from(&first.answer.id, "x", true),
        )
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(refused, Error::NotFound { .. }), "{refused:?}");
    assert_eq!(
        reads(&h),
        before,
        "refused from the tail, as the store would have"
    );
}

#[tokio::test]
async fn the_tails_stay_within_their_budget_and_drop_the_oldest() {
    let counter = Arc::new(Counter::default());
    let (h, _) = harness(&counter, 4 * 1024);
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let mut answers = Vec::new();
    for i in 0..20 {
        answers.push(turn(&h, TurnRequest::user(format!("q{i}"))).await.answer.id);
    }
    let (held, bytes) = h.runtime.tails.held();
    assert!(bytes <= 4 * 1024, "{bytes}");
    assert!(held > 0 && held < 20, "{held}");
    // The newest is still there, the oldest went first.
    let before = reads(&h);
    turn(&h, from(answers.last().unwrap(), "more", true)).await;
    assert_eq!(reads(&h), before);
    turn(&h, from(&answers[0], "more", true)).await;
    assert!(reads(&h) > before);
}

#[tokio::test]
async fn without_a_budget_nothing_is_kept() {
    let counter = Arc::new(Counter::default());
    let (h, _) = harness(&counter, 0);
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let first = turn(&h, TurnRequest::user("one")).await;
    assert_eq!(h.runtime.tails.held(), (0, 0));
    let before = reads(&h);
    turn(&h, from(&first.answer.id, "two", true)).await;
    assert!(reads(&h) > before);
}
