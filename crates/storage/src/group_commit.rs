//! Group commit for the writes that answer waits on (a conversation turn's messages): every
//! write that is ready when the database is free goes into **one** transaction, and each
//! caller is answered once that transaction has committed (issue 20, decision 109).
//!
//! Callers queue their write; the first one to find no batch running becomes the leader and
//! drains the queue on the blocking pool: one connection, `BEGIN`, each write, `COMMIT`, then
//! every caller learns its result. When a write fails (a taken id, a stale count), the batch
//! is rolled back and run again with each write in a savepoint of its own, so that the
//! failing write is rolled back alone and only its caller gets its error. Writes that arrive
//! while a batch commits wait for the next one, so under load the commit cost (the WAL flush
//! and fsync on SQLite, the round trip and WAL flush on PostgreSQL) is shared by every turn in
//! the batch; alone, a write is its own batch at once, with nothing added to wait for. An
//! acknowledged write is committed: a crash loses only writes nobody was told about.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use agentry_domain::{Error, Result};
use diesel::Connection;
use diesel::r2d2::Pool;
use diesel::result::Error as DieselError;
use tokio::sync::oneshot;

use crate::checkpoint::Checkpointer;
use crate::connection::{AnyConnection, Manager};
use crate::translate::{pool_error, query_error};

/// One write: its statements (which translate their own errors) and who waits for it.
type Job = Box<dyn Fn(&mut AnyConnection) -> Result<bool> + Send>;

/// Most writes in one transaction (a bound on how long the first of them waits).
const BATCH_MAX: usize = 256;

/// The queue and its leader flag; one per database, shared by every store over it.
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<(Job, oneshot::Sender<Result<bool>>)>>,
    leading: AtomicBool,
    /// Told after each commit (SQLite checkpoints the log on its own thread).
    checkpoint: Checkpointer,
}

/// A job that failed inside the batch: its own error, or the savepoint's.
enum Failed {
    Job(Error),
    Db(DieselError),
}

impl From<DieselError> for Failed {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

impl GroupCommit {
    pub(crate) fn new(checkpoint: Checkpointer) -> Self {
        Self {
            queue: Mutex::default(),
            leading: AtomicBool::new(false),
            checkpoint,
        }
    }

    /// Runs `work` in the next batch and answers once that batch committed.
    pub(crate) async fn run(
        self: &Arc<Self>,
        pool: &Pool<Manager>,
        work: impl Fn(&mut AnyConnection) -> Result<bool> + Send + 'static,
    ) -> Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((Box::new(work), tx));
        self.lead(pool);
        rx.await
            .map_err(|_| Error::Internal("the group commit dropped a write".into()))?
    }

    /// Becomes the leader if no batch runs, draining the queue on the blocking pool.
    fn lead(self: &Arc<Self>, pool: &Pool<Manager>) {
        if self
            .leading
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let (me, pool) = (Arc::clone(self), pool.clone());
        tokio::task::spawn_blocking(move || me.drain(&pool));
    }

    fn take(&self) -> Vec<(Job, oneshot::Sender<Result<bool>>)> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = queue.len().min(BATCH_MAX);
        queue.drain(..n).collect()
    }

    /// Commits batches until the queue is empty, then steps down (and leads again if a write
    /// slipped in meanwhile).
    fn drain(&self, pool: &Pool<Manager>) {
        loop {
            let batch = self.take();
            if batch.is_empty() {
                self.leading.store(false, Ordering::Release);
                let more = !self
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_empty();
                if more
                    && self
                        .leading
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    continue;
                }
                return;
            }
            commit(pool, batch);
            self.checkpoint.wrote();
        }
    }
}

/// One transaction for `batch` (a write alone included), the writes one after the other;
/// then every caller's answer. Only if a write fails is the batch run again with each write
/// in a savepoint of its own.
fn commit(pool: &Pool<Manager>, batch: Vec<(Job, oneshot::Sender<Result<bool>>)>) {
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(e) => {
            for (_, tx) in batch {
                let _ = tx.send(Err(pool_error(&e)));
            }
            return;
        }
    };
    // First every write straight in the transaction: no savepoint round trips, which on
    // PostgreSQL are most of a batch's time. If one fails, all is rolled back and the batch
    // runs again below with a savepoint per write, so that only the failing one fails.
    let mut answers = Vec::with_capacity(batch.len());
    let together = conn.transaction::<_, DieselError, _>(|c| {
        for (job, _) in &batch {
            match job(c) {
                Ok(done) => answers.push(done),
                Err(_) => return Err(DieselError::RollbackTransaction),
            }
        }
        Ok(())
    });
    match together {
        Ok(()) => {
            for ((_, tx), done) in batch.into_iter().zip(answers) {
                let _ = tx.send(Ok(done));
            }
            return;
        }
        Err(DieselError::RollbackTransaction) => {}
        Err(e) => {
            // The commit failed: nothing of the batch is stored.
            let message = format!("{}", query_error(e));
            for (_, tx) in batch {
                let _ = tx.send(Err(Error::Unavailable(message.clone())));
            }
            return;
        }
    }
    let mut waiting = Vec::with_capacity(batch.len());
    let committed = conn.transaction::<_, DieselError, _>(|c| {
        for (job, tx) in batch {
            waiting.push((tx, attempt(c, job)));
        }
        Ok(())
    });
    match committed {
        Ok(()) => {
            for (tx, result) in waiting {
                let _ = tx.send(result);
            }
        }
        Err(e) => {
            // Nothing of the batch is stored: every write fails with the commit's error.
            let message = format!("{}", query_error(e));
            for (tx, result) in waiting {
                let _ = tx.send(match result {
                    Err(own) => Err(own),
                    Ok(_) => Err(Error::Unavailable(message.clone())),
                });
            }
        }
    }
}

/// Runs `job` in a transaction (a savepoint when one is open): its answer, with its changes
/// undone when it fails.
fn attempt(conn: &mut AnyConnection, job: Job) -> Result<bool> {
    match conn.transaction::<bool, Failed, _>(|c| job(c).map_err(Failed::Job)) {
        Ok(done) => Ok(done),
        Err(Failed::Job(e)) => Err(e),
        Err(Failed::Db(e)) => Err(query_error(e)),
    }
}
