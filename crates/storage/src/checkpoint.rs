//! SQLite's WAL checkpoints on a thread of their own, off the commit path (issue 20,
//! decision 125).
//!
//! SQLite appends each commit to the write-ahead log; a checkpoint copies the log's pages
//! back into the database file, fsyncing the log before and the file after. By default the
//! connection whose commit takes the log past 1,000 pages runs the checkpoint inside that
//! commit, so the page copies and both fsyncs (0.3 ms to tens of milliseconds on a busy disk)
//! are waited for by every turn queued behind that group commit: at 1,000 stored turns a
//! second that was several times a second, and set the stateful paths' p99.
//!
//! Here the writers whose callers wait (the group commit, the run log) nudge this thread
//! after they commit, and it checkpoints at most once per [`INTERVAL`], in `PASSIVE` mode (it
//! never waits for readers or writers and never takes the write lock). Each pass copies what
//! was committed since the last one; small passes disturb the writers least (at 1,000 turns a
//! second, p99 ~2 ms with passes every 20–100 ms, 3–4 ms every 200 ms, 14 ms every second).
//! Under steady writes a pass never reaches the log's end (commits land while it copies), so
//! SQLite cannot start the log over from the top; the connections' automatic checkpoint at
//! [`BACKSTOP_PAGES`] (see `connection.rs`) does that in a commit, with little left to copy.
//! It also covers this thread falling behind or not running. On PostgreSQL there is nothing to
//! do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::Pool;

use crate::connection::{AnyConnection, Manager};

/// Shortest time between two checkpoints: the writes of an interval are copied together.
const INTERVAL: Duration = Duration::from_millis(50);

/// The automatic checkpoint every SQLite connection keeps as a backstop, in pages of the
/// log (40 MB at 4 KiB pages, the log file's size under steady writes; SQLite's default is
/// 1,000).
pub(crate) const BACKSTOP_PAGES: u32 = 10_000;

/// What the thread has done, for the metrics.
#[derive(Default)]
pub(crate) struct Counts {
    checkpoints: AtomicU64,
    failures: AtomicU64,
    nanos: AtomicU64,
    /// The thread was found gone (and that was logged).
    gone: AtomicBool,
}

impl Counts {
    /// Checkpoints run, failed ones among them, and the seconds they took in all.
    pub(crate) fn read(&self) -> (u64, u64, f64) {
        (
            self.checkpoints.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            Duration::from_nanos(self.nanos.load(Ordering::Relaxed)).as_secs_f64(),
        )
    }
}

/// The nudge side, held by the writers; the thread stops when every clone is gone. The
/// default, for PostgreSQL, has no thread: nudges do nothing and there is nothing to count.
#[derive(Clone, Default)]
pub(crate) struct Checkpointer(Option<Running>);

/// A started thread: where to nudge it, and what it has done.
#[derive(Clone)]
struct Running {
    nudge: SyncSender<()>,
    counts: Arc<Counts>,
}

impl Checkpointer {
    /// Starts the thread over a SQLite pool. If it cannot start, connections fall back on
    /// their automatic checkpoint.
    pub(crate) fn start(pool: Pool<Manager>) -> Self {
        // One slot: a nudge while one is pending adds nothing.
        let (nudge, rx) = sync_channel(1);
        let counts = Arc::new(Counts::default());
        let theirs = Arc::clone(&counts);
        let started = std::thread::Builder::new()
            .name("agentry-checkpoint".to_owned())
            .spawn(move || checkpoint_loop(&pool, &rx, &theirs))
            .map_err(|e| tracing::warn!(error = %e, "WAL checkpoint thread not started; commits checkpoint the log themselves"))
            .is_ok();
        Self(started.then_some(Running { nudge, counts }))
    }

    /// Tells the thread that a commit added to the log. Never blocks.
    pub(crate) fn wrote(&self) {
        if let Some(running) = &self.0
            && let Err(TrySendError::Disconnected(())) = running.nudge.try_send(())
            && !running.counts.gone.swap(true, Ordering::Relaxed)
        {
            // Said once: every commit after would say it again.
            tracing::warn!("WAL checkpoint thread gone; commits checkpoint the log themselves");
        }
    }

    /// What the thread has done so far; `None` without a thread.
    pub(crate) fn counts(&self) -> Option<&Counts> {
        self.0.as_ref().map(|running| &*running.counts)
    }
}

fn checkpoint_loop(pool: &Pool<Manager>, nudges: &Receiver<()>, counts: &Counts) {
    while nudges.recv().is_ok() {
        let started = Instant::now();
        let done = checkpoint(pool);
        let took = started.elapsed();
        counts.checkpoints.fetch_add(1, Ordering::Relaxed);
        counts.nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Err(error) = done {
            counts.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "WAL checkpoint failed; the next write retries it");
        }
        // Commits meanwhile leave a nudge in the slot: the next checkpoint follows at once.
        std::thread::sleep(INTERVAL.saturating_sub(took));
    }
}

/// One `PASSIVE` checkpoint on a pooled connection: as much of the log as no reader still
/// needs is copied into the database file.
fn checkpoint(pool: &Pool<Manager>) -> Result<(), String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    match &mut *conn {
        AnyConnection::Sqlite(c) => c
            .batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
            .map_err(|e| e.to_string()),
        AnyConnection::Postgres(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use diesel::r2d2::ManageConnection;
    use diesel::sql_types::Integer;
    use diesel::{QueryableByName, RunQueryDsl};

    use super::*;
    use crate::target::Target;

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Integer)]
        wal_autocheckpoint: i32,
    }

    /// Every connection the pool opens leaves checkpoints to the thread up to the backstop.
    #[test]
    fn sqlite_connections_checkpoint_only_at_the_backstop() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("backstop.db").display());
        let manager = Manager::new(Target::parse(&url).unwrap());
        let mut conn = manager.connect().unwrap();
        let AnyConnection::Sqlite(conn) = &mut conn else {
            unreachable!("a SQLite URL opened another backend");
        };
        let setting: Setting = diesel::sql_query("PRAGMA wal_autocheckpoint")
            .get_result(conn)
            .unwrap();
        assert_eq!(
            u32::try_from(setting.wal_autocheckpoint).unwrap(),
            BACKSTOP_PAGES
        );
    }

    /// A checkpoint that cannot get a connection (the database cannot be opened) is counted
    /// as failed, and the thread lives on to try again at the next nudge.
    #[test]
    fn a_failed_checkpoint_is_counted_and_the_next_nudge_retries() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/db.sqlite");
        let url = format!("sqlite://{}", missing.display());
        let pool = Pool::builder()
            .connection_timeout(Duration::from_millis(100))
            .build_unchecked(Manager::new(Target::parse(&url).unwrap()));
        let checkpointer = Checkpointer::start(pool);
        let failures_reach = |n: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                checkpointer.wrote();
                let (runs, failures, _) = checkpointer.counts().unwrap().read();
                if failures >= n {
                    assert_eq!(runs, failures, "every checkpoint failed");
                    return;
                }
                assert!(Instant::now() < deadline, "{failures} failures after 10 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        failures_reach(1);
        failures_reach(2);
    }
}
