//! Background workers that wait for work before they poll at full speed.
//!
//! A process that has never seen a task or an evaluation run keeps one worker of each kind
//! looking for work every [`DORMANT_POLLS`] polls (10 s for tasks, 20 s for runs by default)
//! and the others parked; the first piece of work it sees (claimed from the database, which
//! is how it finds what another replica created, or announced on the event bus, which is
//! how this replica's own and, on PostgreSQL, every replica's new work arrives at once)
//! wakes them all, at the configured poll from then on, for the life of the process. An
//! idle server therefore makes a database call every few seconds instead of several per
//! second, and the blocking threads those calls kept alive (each with its stack and its
//! allocator arena) go away (decision 97).

use std::sync::Arc;
use std::time::Duration;

/// How many polls a dormant worker lets pass between two looks for work.
pub const DORMANT_POLLS: u32 = 10;

/// Whether this process has seen work of one kind yet; shared by that kind's workers.
#[derive(Clone)]
pub(crate) struct FirstWork(Arc<tokio::sync::watch::Sender<bool>>);

impl FirstWork {
    pub(crate) fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(false)))
    }

    /// Records that work was seen; wakes the parked workers (once).
    pub(crate) fn seen(&self) {
        self.0
            .send_if_modified(|seen| !std::mem::replace(seen, true));
    }

    /// Waits until work was seen.
    pub(crate) async fn wait(&self) {
        let mut seen = self.0.subscribe();
        // The sender lives as long as `self`, so this returns only once work was seen.
        let _ = seen.wait_for(|seen| *seen).await;
    }

    /// How long an idle worker waits before it looks again: `poll` once work was seen,
    /// [`DORMANT_POLLS`] times as long before.
    pub(crate) fn idle(&self, poll: Duration) -> Duration {
        if *self.0.borrow() {
            poll
        } else {
            poll.saturating_mul(DORMANT_POLLS)
        }
    }

    /// An idle worker's wait: until its next look (`idle(poll)`), or until an event on the
    /// bus says new work came (`wakes`; recorded as work seen). A closed bus waits out the
    /// poll.
    pub(crate) async fn idle_wait(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<Arc<crate::event::Event>>,
        poll: Duration,
        wakes: impl Fn(&crate::event::Event) -> bool,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        let sleep = tokio::time::sleep(self.idle(poll));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                got = events.recv() => match got {
                    Ok(e) if wakes(&e) => {
                        self.seen();
                        return;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {
                        (&mut sleep).await;
                        return;
                    }
                },
            }
        }
    }
}
