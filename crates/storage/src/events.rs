//! The event bus between replicas on PostgreSQL: `NOTIFY` to publish, `LISTEN` to receive.
//!
//! - Publishing hands the event to a sender thread, which sends what has queued up (a few
//!   milliseconds' worth) with one statement on its own connection; a payload too large for
//!   a notification (8,000 bytes) is stored in `event_payloads` and sent by reference.
//! - A listener thread holds a connection that `LISTEN`s, reads what arrived (libpq reads
//!   the socket without blocking; again at once while notifications keep coming, else after
//!   [`POLL`]) and hands the events to this process's subscribers. Events published here come back the same way, so every replica
//!   sees one order.
//! - Interest in agent channels travels the same way: the first local listener of a channel
//!   announces it at once, and every [`INTEREST_REFRESH`] the replica repeats what it listens
//!   to; others consider it for [`INTEREST_TTL`].
//! - The notification channel is named after the database schema, so deployments (or test
//!   schemas) sharing one database do not hear each other.
//!
//! Both threads reconnect with a backoff when their connection breaks, and end when the bus
//! is dropped.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use agentry_domain::event::{BUS_CAPACITY, Event, EventBus, Interest, Interests};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::schema::event_payloads;

/// How often the listener reads its connection.
pub(crate) const POLL: Duration = Duration::from_millis(10);
/// How often a replica repeats the channels it listens to.
pub(crate) const INTEREST_REFRESH: Duration = Duration::from_secs(10);
/// How long another replica's interest counts.
pub(crate) const INTEREST_TTL: Duration = Duration::from_secs(30);
/// Largest payload sent inline (PostgreSQL's limit is 8,000 bytes).
const INLINE_MAX: usize = 7000;

struct Shared {
    local: broadcast::Sender<Arc<Event>>,
    interests: Arc<Interests>,
    outbox: Sender<Value>,
}

/// The PostgreSQL bus (see the module documentation).
pub(crate) struct PgEventBus {
    shared: Arc<Shared>,
}

impl PgEventBus {
    /// Starts the sender and listener threads on connections to `url`.
    pub(crate) fn start(url: String) -> Self {
        let (outbox, queued) = channel();
        let shared = Arc::new(Shared {
            local: broadcast::Sender::new(BUS_CAPACITY),
            interests: Arc::new(Interests::default()),
            outbox,
        });
        let weak = Arc::downgrade(&shared);
        let sender_url = url.clone();
        let listener = weak.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("agentry-events-send".into())
            .spawn(move || send_loop(&sender_url, &queued, &weak))
        {
            tracing::error!(error = %e, "could not start the event sender");
        }
        if let Err(e) = std::thread::Builder::new()
            .name("agentry-events-listen".into())
            .spawn(move || listen_loop(&url, &listener))
        {
            tracing::error!(error = %e, "could not start the event listener");
        }
        Self { shared }
    }
}

impl EventBus for PgEventBus {
    fn publish(&self, event: Event) {
        let _ = self.shared.outbox.send(json!({"event": event.to_json()}));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.local.subscribe()
    }

    fn wants(&self, channel: &str) -> bool {
        self.shared.interests.wanted(channel)
    }

    fn listen(&self, channel: &str) -> Interest {
        let (interest, first) = Interest::counted(self.shared.interests.clone(), channel);
        if first {
            let _ = self
                .shared
                .outbox
                .send(interest_message(&[channel.to_owned()]));
        }
        interest
    }
}

fn interest_message(channels: &[String]) -> Value {
    json!({"interest": channels, "ttl_secs": INTEREST_TTL.as_secs()})
}

/// The notification channel of the connection's schema.
fn channel_name(conn: &mut PgConnection) -> QueryResult<String> {
    #[derive(QueryableByName)]
    struct Schema {
        #[diesel(sql_type = Text)]
        schema: String,
    }
    let schema: Schema = diesel::sql_query("SELECT current_schema() AS schema").get_result(conn)?;
    let clean: String = schema
        .schema
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    Ok(format!("agentry_events_{clean}"))
}

fn connect(url: &str, what: &str, attempt: &mut u32) -> Option<(PgConnection, String)> {
    let opened = PgConnection::establish(url)
        .map_err(|e| e.to_string())
        .and_then(|mut c| {
            channel_name(&mut c)
                .map(|name| (c, name))
                .map_err(|e| e.to_string())
        });
    match opened {
        Ok(ok) => {
            if *attempt > 0 {
                tracing::info!("event {what}: connected again");
            }
            *attempt = 0;
            Some(ok)
        }
        Err(e) => {
            if *attempt == 0 {
                tracing::warn!(error = %e, "event {what}: cannot connect; retrying");
            }
            *attempt += 1;
            std::thread::sleep(Duration::from_millis(100 * u64::from((*attempt).min(50))));
            None
        }
    }
}

fn send_loop(url: &str, queued: &Receiver<Value>, shared: &Weak<Shared>) {
    let mut attempt = 0;
    let mut conn: Option<(PgConnection, String)> = None;
    let mut last_refresh = Instant::now();
    let mut batch: Vec<Value> = Vec::new();
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        match queued.recv_timeout(Duration::from_millis(200)) {
            Ok(first) => {
                batch.push(first);
                // What else is already queued goes in the same statement.
                while batch.len() < 500 {
                    match queued.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_refresh.elapsed() >= INTEREST_REFRESH {
            last_refresh = Instant::now();
            if let Some(s) = shared.upgrade() {
                let channels = s.interests.local_channels();
                if !channels.is_empty() {
                    batch.push(interest_message(&channels));
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        if conn.is_none() {
            conn = connect(url, "sender", &mut attempt);
        }
        let Some((c, name)) = conn.as_mut() else {
            // Events published while the database is unreachable are dropped (bounded).
            if batch.len() > 10_000 {
                batch.clear();
            }
            continue;
        };
        match notify(c, name, &batch) {
            Ok(()) => batch.clear(),
            Err(e) => {
                tracing::warn!(error = %e, "event sender: NOTIFY failed; reconnecting");
                conn = None;
                batch.clear();
            }
        }
    }
}

fn notify(conn: &mut PgConnection, channel: &str, batch: &[Value]) -> QueryResult<()> {
    let now = chrono::Utc::now().naive_utc();
    let mut payloads = Vec::with_capacity(batch.len());
    for message in batch {
        let text = message.to_string();
        if text.len() <= INLINE_MAX {
            payloads.push(text);
        } else {
            let id = agentry_domain::ids::new_id("evt");
            diesel::insert_into(event_payloads::table)
                .values((
                    event_payloads::id.eq(&id),
                    event_payloads::body.eq(&text),
                    event_payloads::created_at.eq(now),
                ))
                .execute(conn)?;
            payloads.push(json!({"ref": id}).to_string());
        }
    }
    diesel::sql_query("SELECT pg_notify($1, p) FROM unnest($2) AS p")
        .bind::<Text, _>(channel)
        .bind::<Array<Text>, _>(&payloads)
        .execute(conn)?;
    // Payloads sent by reference are read within milliseconds; a minute is plenty.
    let old = now - chrono::Duration::seconds(60);
    diesel::delete(event_payloads::table.filter(event_payloads::created_at.lt(old)))
        .execute(conn)?;
    Ok(())
}

fn listen_loop(url: &str, shared: &Weak<Shared>) {
    let mut attempt = 0;
    let mut conn: Option<(PgConnection, String)> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        if conn.is_none() {
            conn = connect(url, "listener", &mut attempt).and_then(|(mut c, name)| {
                match diesel::sql_query(format!("LISTEN {name}")).execute(&mut c) {
                    Ok(_) => Some((c, name)),
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener: LISTEN failed");
                        None
                    }
                }
            });
        }
        let Some((c, _)) = conn.as_mut() else {
            continue;
        };
        let mut broken = false;
        let mut received: Vec<String> = Vec::new();
        for n in c.notifications_iter() {
            match n {
                Ok(n) => received.push(n.payload),
                Err(e) => {
                    tracing::warn!(error = %e, "event listener: connection lost; reconnecting");
                    broken = true;
                    break;
                }
            }
        }
        let idle = received.is_empty();
        for payload in received {
            deliver(c, &s, &payload);
        }
        if broken {
            conn = None;
        }
        drop(s);
        // Read again at once while notifications keep coming; wait only when none came.
        if idle {
            std::thread::sleep(POLL);
        }
    }
}

fn deliver(conn: &mut PgConnection, shared: &Shared, payload: &str) {
    let Ok(mut message) = serde_json::from_str::<Value>(payload) else {
        return;
    };
    if let Some(id) = message.get("ref").and_then(Value::as_str) {
        let body: Option<String> = event_payloads::table
            .find(id)
            .select(event_payloads::body)
            .first(conn)
            .optional()
            .unwrap_or(None);
        match body.and_then(|b| serde_json::from_str(&b).ok()) {
            Some(m) => message = m,
            None => return,
        }
    }
    if let Some(channels) = message.get("interest").and_then(Value::as_array) {
        let channels: Vec<String> = channels
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        shared.interests.remote(&channels, INTEREST_TTL);
        return;
    }
    if let Some(event) = message.get("event").and_then(Event::from_json) {
        let _ = shared.local.send(Arc::new(event));
    }
}
