//! Live client connections and the soft cap past which new connections are told `503`
//! (decision 56).
//!
//! [`ConnectionGauge::admit`] runs once per accepted connection (`HttpServer::on_connect`) and
//! leaves a [`Connection`] in the connection's extensions; actix-web drops those extensions
//! when the connection closes, and the [`Connection`]'s `Drop` counts it out. A connection
//! accepted while more than `soft_cap` were open is marked: its requests are answered `503`
//! with `Retry-After` and `Connection: close` for as long as the server is still past the cap
//! (the request middleware asks [`Connection::refused`]), so the client learns at once instead
//! of waiting, and the descriptor comes back. actix-web's own `max_connections`, set a margin
//! above the soft cap ([`overflow_margin`]), stops accepting altogether.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::dev::Extensions;

/// Counts the server's open client connections, over all workers.
#[derive(Debug)]
pub struct ConnectionGauge {
    live: AtomicUsize,
    soft_cap: usize,
}

impl ConnectionGauge {
    /// A gauge whose connections past `soft_cap` are refused.
    pub fn new(soft_cap: usize) -> Arc<Self> {
        Arc::new(Self {
            live: AtomicUsize::new(0),
            soft_cap: soft_cap.max(1),
        })
    }

    /// Counts a new connection until its extensions are dropped (for `HttpServer::on_connect`).
    pub fn admit(self: &Arc<Self>, extensions: &mut Extensions) {
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        extensions.insert(Connection {
            gauge: Arc::clone(self),
            past_cap: live > self.soft_cap,
        });
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The soft cap.
    pub fn soft_cap(&self) -> usize {
        self.soft_cap
    }
}

/// The hard cap's distance above the soft cap: an eighth of it, 8 to 64 connections. These
/// connections exist only to be answered `503`, each for a moment.
pub fn overflow_margin(soft_cap: usize) -> usize {
    (soft_cap / 8).clamp(8, 64)
}

/// One counted connection, kept in the connection's extensions.
#[derive(Debug)]
pub struct Connection {
    gauge: Arc<ConnectionGauge>,
    past_cap: bool,
}

impl Connection {
    /// Whether this connection's requests are refused: it was accepted past the soft cap and
    /// the server is past it still.
    pub fn refused(&self) -> bool {
        self.past_cap && self.gauge.live() > self.gauge.soft_cap
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.gauge.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn connections_are_counted_until_their_extensions_drop() {
        let gauge = ConnectionGauge::new(1);
        let mut first = Extensions::new();
        gauge.admit(&mut first);
        let mut second = Extensions::new();
        gauge.admit(&mut second);
        assert_eq!(gauge.live(), 2);
        assert!(!first.get::<Connection>().unwrap().refused());
        assert!(second.get::<Connection>().unwrap().refused());
        drop(first);
        assert_eq!(gauge.live(), 1);
        assert!(
            !second.get::<Connection>().unwrap().refused(),
            "back under the cap, the late connection is served"
        );
        drop(second);
        assert_eq!(gauge.live(), 0);
    }

    #[test]
    fn the_margin_is_an_eighth_within_bounds() {
        assert_eq!(overflow_margin(1), 8);
        assert_eq!(overflow_margin(200), 25);
        assert_eq!(overflow_margin(1_000_000), 64);
    }
}
