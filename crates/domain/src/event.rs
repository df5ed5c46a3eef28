//! Events: what tasks, agent turns and the system tell subscribers (WebSocket clients, task
//! workers) as it happens. One port, [`EventBus`]; [`LocalEventBus`] serves one process (and
//! SQLite, which is one process), the storage crate's PostgreSQL bus carries events between
//! replicas with `LISTEN/NOTIFY`.
//!
//! Events are published on **channels**: `task.{id}` and `tasks` (task status),
//! `agent.{id}.events` (an agent's messages), `system` (notifications). Agent messages are
//! many (every piece of text of every turn), so a turn publishes them only when someone,
//! on any replica, listens to that agent's channel ([`EventBus::wants`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// The channel of one agent's messages.
pub fn agent_channel(agent_id: &str) -> String {
    format!("agent.{agent_id}.events")
}

/// The channel of one task's status.
pub fn task_channel(task_id: &str) -> String {
    format!("task.{task_id}")
}

/// The channel of every task's status.
pub const TASKS_CHANNEL: &str = "tasks";
/// The channel of system notifications.
pub const SYSTEM_CHANNEL: &str = "system";

/// One event: the frame subscribers receive (`payload`, with its `type`), the channels it is
/// published on, and the agent it concerns (subscribers limited to some agents see only
/// theirs).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Where it is published.
    pub channels: Vec<String>,
    /// The agent it concerns (its key), if any.
    pub agent_key: Option<String>,
    /// What subscribers receive: `{"type": "task.status", …}`.
    pub payload: Map<String, Value>,
}

impl Event {
    /// The event's type (`task.status`, `agent.message`, `system.notification`).
    pub fn kind(&self) -> &str {
        self.payload
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// A `system.notification` (`level`: `info`, `warning` or `error`).
    pub fn system(level: &str, message: impl Into<String>) -> Self {
        let mut payload = Map::new();
        payload.insert("type".into(), json!("system.notification"));
        payload.insert("level".into(), json!(level));
        payload.insert("message".into(), json!(message.into()));
        Self {
            channels: vec![SYSTEM_CHANNEL.to_owned()],
            agent_key: None,
            payload,
        }
    }

    /// An `agent.message`: a piece of the answer being produced (`done: false`) or the whole
    /// answer (`done: true`).
    pub fn agent_message(
        agent_id: &str,
        agent_key: &str,
        session_id: Option<&str>,
        message: &str,
        done: bool,
    ) -> Self {
        let mut payload = Map::new();
        payload.insert("type".into(), json!("agent.message"));
        payload.insert("agent_id".into(), json!(agent_id));
        payload.insert("session_id".into(), json!(session_id));
        payload.insert("message".into(), json!(message));
        payload.insert("done".into(), json!(done));
        Self {
            channels: vec![agent_channel(agent_id)],
            agent_key: Some(agent_key.to_owned()),
            payload,
        }
    }

    /// The event as JSON (for a bus between processes).
    pub fn to_json(&self) -> Value {
        json!({"channels": self.channels, "agent_key": self.agent_key, "payload": self.payload})
    }

    /// Reads [`Event::to_json`]'s form back.
    pub fn from_json(value: &Value) -> Option<Self> {
        let channels = value
            .get("channels")?
            .as_array()?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        let agent_key = value
            .get("agent_key")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let payload = value.get("payload")?.as_object()?.clone();
        Some(Self {
            channels,
            agent_key,
            payload,
        })
    }
}

/// Carries events to every subscriber of the deployment.
pub trait EventBus: Send + Sync {
    /// Publishes an event; never blocks (a bus between processes sends it in the background).
    fn publish(&self, event: Event);
    /// Every event published from now on, on any channel (subscribers filter). A receiver
    /// that falls behind the bus's buffer loses the oldest events (`Lagged`).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
    /// Whether anyone listens to `channel` (here, or on another replica recently).
    fn wants(&self, channel: &str) -> bool;
    /// Says that this process listens to `channel` while the guard lives.
    fn listen(&self, channel: &str) -> Interest;
}

/// Who listens to which channels: counted here, and as other replicas last said.
#[derive(Default)]
pub struct Interests {
    local: Mutex<HashMap<String, usize>>,
    remote: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Interests {
    /// Counts one more local listener of `channel`; whether it is the first.
    pub fn add(&self, channel: &str) -> bool {
        let mut local = lock(&self.local);
        let n = local.entry(channel.to_owned()).or_insert(0);
        *n += 1;
        *n == 1
    }

    fn remove(&self, channel: &str) {
        let mut local = lock(&self.local);
        if let Some(n) = local.get_mut(channel) {
            *n -= 1;
            if *n == 0 {
                local.remove(channel);
            }
        }
    }

    /// The channels listened to here.
    pub fn local_channels(&self) -> Vec<String> {
        lock(&self.local).keys().cloned().collect()
    }

    /// Another replica listens to `channels` for the next `ttl`.
    pub fn remote(&self, channels: &[String], ttl: Duration) {
        let until = Instant::now() + ttl;
        let mut remote = lock(&self.remote);
        for c in channels {
            remote.insert(c.clone(), until);
        }
    }

    /// Whether `channel` is listened to here or (not long ago) elsewhere.
    pub fn wanted(&self, channel: &str) -> bool {
        if lock(&self.local).contains_key(channel) {
            return true;
        }
        let mut remote = lock(&self.remote);
        match remote.get(channel) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                remote.remove(channel);
                false
            }
            None => false,
        }
    }
}

/// A listener's interest in a channel; dropping it ends the interest.
pub struct Interest {
    interests: Arc<Interests>,
    channel: String,
}

impl Interest {
    /// An interest counted in `interests`.
    pub fn new(interests: Arc<Interests>, channel: &str) -> Self {
        Self::counted(interests, channel).0
    }

    /// An interest counted in `interests`, and whether it is the first in that channel here
    /// (a bus between processes then tells the others at once).
    pub fn counted(interests: Arc<Interests>, channel: &str) -> (Self, bool) {
        let first = interests.add(channel);
        (
            Self {
                interests,
                channel: channel.to_owned(),
            },
            first,
        )
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        self.interests.remove(&self.channel);
    }
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interest")
            .field("channel", &self.channel)
            .finish()
    }
}

/// Events within one process: a broadcast channel.
pub struct LocalEventBus {
    tx: broadcast::Sender<Arc<Event>>,
    interests: Arc<Interests>,
}

/// Events a subscriber may lag behind before it loses the oldest.
pub const BUS_CAPACITY: usize = 4096;

impl Default for LocalEventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::Sender::new(BUS_CAPACITY),
            interests: Arc::new(Interests::default()),
        }
    }
}

impl EventBus for LocalEventBus {
    fn publish(&self, event: Event) {
        // No receiver is not an error: nobody listens.
        let _ = self.tx.send(Arc::new(event));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    fn wants(&self, channel: &str) -> bool {
        self.interests.wanted(channel)
    }

    fn listen(&self, channel: &str) -> Interest {
        Interest::new(self.interests.clone(), channel)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_and_interest_is_counted() {
        let bus = LocalEventBus::default();
        let mut rx = bus.subscribe();
        bus.publish(Event::system("info", "hello"));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.kind(), "system.notification");
        assert_eq!(got.channels, [SYSTEM_CHANNEL]);

        let channel = agent_channel("agent_1");
        assert!(!bus.wants(&channel));
        let a = bus.listen(&channel);
        let b = bus.listen(&channel);
        assert!(bus.wants(&channel));
        drop(a);
        assert!(bus.wants(&channel));
        drop(b);
        assert!(!bus.wants(&channel));
    }

    #[test]
    fn remote_interest_expires_and_events_round_trip() {
        let interests = Interests::default();
        interests.remote(&["x".into()], Duration::from_secs(60));
        assert!(interests.wanted("x"));
        interests.remote(&["y".into()], Duration::ZERO);
        assert!(!interests.wanted("y"));
        let e = Event::agent_message("agent_1", "bot", Some("s"), "hi", false);
        assert_eq!(Event::from_json(&e.to_json()), Some(e));
    }
}
