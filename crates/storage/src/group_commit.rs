//! Group commit for the writes that answer waits on (a conversation turn's messages, a
//! one-shot run): every
//! write that is ready when the database is free goes into **one** transaction, and each
//! caller is answered once that transaction has committed (issue 20, decision 109).
//!
//! Callers queue their write; the first one to find no batch running becomes the leader and
//! drains the queue on the blocking pool: one connection, `BEGIN`, each write, `COMMIT`, then
//! every caller learns its result. In the batch a write runs only the statements whose
//! answer it needs (a conditional count update) and leaves its rows in [`Later`]: the
//! conversations, messages and runs of every write in the batch go in together just before the
//! commit, as multi-row inserts (decision 126), so a batch of turns costs a few statements,
//! not two per turn (on PostgreSQL, round trips of the one writing connection). When
//! anything fails (a taken id, a stale count), the batch is rolled back and run again with
//! each write whole in a savepoint of its own, so that the failing write is rolled back alone
//! and only its caller gets its error. Writes that arrive while a batch commits wait for the
//! next one, so under load the commit cost (the WAL flush on SQLite, the round trip and WAL
//! flush on PostgreSQL) is shared by every turn in the batch; alone, a write is its own
//! batch at once, with nothing added to wait for. An acknowledged write is committed: a crash
//! loses only writes nobody was told about.

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
use crate::history_rows::{ConversationRow, MessageRow, RunRow};
use crate::multi_row::{insert_conversations, insert_messages, insert_runs};
use crate::translate::{pool_error, query_error};

/// A write in a group commit. It may be run more than once (a batch that failed is run
/// again), each time in a transaction that is rolled back if it fails.
pub(crate) trait Write: Send + 'static {
    /// All of the write now, translating its own errors: its answer, or why it failed.
    fn now(&self, conn: &mut AnyConnection) -> Result<bool>;

    /// The write in a batch: the statements whose answer it needs run now, and the rows it
    /// inserts are left in `later`, inserted with every other write's before the batch
    /// commits. Its errors need no translation: on any failure the batch runs again with
    /// [`now`](Self::now). By default, all of it now.
    fn batched(&self, conn: &mut AnyConnection, later: &mut Later) -> Result<bool> {
        let _ = later;
        self.now(conn)
    }
}

/// Rows the writes of a batch leave to be inserted together before it commits.
///
/// They are copies: diesel caches the statement of a multi-row insert only for an array of
/// rows it can name without a lifetime (an owned row's), and a write keeps its own rows in
/// case the batch is run again. A copy costs a few allocations, a statement several
/// thousand instructions on SQLite and a round trip on PostgreSQL.
#[derive(Default)]
pub(crate) struct Later {
    conversations: Vec<ConversationRow>,
    messages: Vec<MessageRow>,
    runs: Vec<RunRow>,
}

impl Later {
    /// A conversation to insert (before any message: messages refer to it).
    pub(crate) fn conversation(&mut self, row: &ConversationRow) {
        self.conversations.push(row.clone());
    }

    /// Messages to insert, in order.
    pub(crate) fn messages(&mut self, rows: &[MessageRow]) {
        self.messages.extend_from_slice(rows);
    }

    /// A run to insert.
    pub(crate) fn run(&mut self, row: &RunRow) {
        self.runs.push(row.clone());
    }

    /// Inserts the conversations, then the messages, then the runs, in multi-row statements.
    fn insert(&self, conn: &mut AnyConnection) -> diesel::QueryResult<()> {
        insert_conversations(conn, &self.conversations)?;
        insert_messages(conn, &self.messages)?;
        insert_runs(conn, &self.runs)?;
        Ok(())
    }
}

/// One write and who waits for its answer.
pub(crate) type Job = (Box<dyn Write>, oneshot::Sender<Answer>);

/// A write's answer, with the write itself handed back: it is dropped by the task that made
/// it. Freed on the committing thread instead, every row's allocations went back to another
/// thread's malloc arena, under its lock, and that thread's next allocations took glibc's
/// slow path: a third of the CPU a stored turn costs over a stateless call (decision 128).
pub(crate) type Answer = (Result<bool>, Box<dyn Write>);

/// Tells the caller of `job` its answer.
fn answer(job: Job, result: Result<bool>) {
    let (write, tx) = job;
    let _ = tx.send((result, write));
}

/// Most writes in one transaction (a bound on how long the first of them waits).
const BATCH_MAX: usize = 256;

/// The queue and its leader flag; one per database, shared by every store over it.
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Job>>,
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
        write: impl Write,
    ) -> Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((Box::new(write), tx));
        self.lead(pool);
        let (answer, write) = rx
            .await
            .map_err(|_| Error::Internal("the group commit dropped a write".into()))?;
        drop(write);
        answer
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

    fn take(&self) -> Vec<Job> {
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

/// One transaction for `batch` (a write alone included), the writes one after the other and
/// then the rows they left; then every caller's answer. Only if something fails is the batch
/// run again with each write whole in a savepoint of its own.
fn commit(pool: &Pool<Manager>, batch: Vec<Job>) {
    match pool.get() {
        Ok(mut conn) => commit_on(&mut conn, batch),
        Err(e) => {
            for job in batch {
                answer(job, Err(pool_error(&e)));
            }
        }
    }
}

/// [`commit`] on `conn`.
pub(crate) fn commit_on(conn: &mut AnyConnection, batch: Vec<Job>) {
    // First every write straight in the transaction, its rows inserted with the others' at
    // the end: no savepoint round trips, which on PostgreSQL are most of a batch's time. If
    // anything fails, all is rolled back and the batch runs again below with a savepoint per
    // write, so that only the failing one fails.
    let mut answers = Vec::with_capacity(batch.len());
    let together = conn.transaction::<_, DieselError, _>(|c| {
        let mut later = Later::default();
        for (write, _) in &batch {
            match write.batched(c, &mut later) {
                Ok(done) => answers.push(done),
                Err(_) => return Err(DieselError::RollbackTransaction),
            }
        }
        later
            .insert(c)
            .map_err(|_| DieselError::RollbackTransaction)
    });
    match together {
        Ok(()) => {
            for (job, done) in batch.into_iter().zip(answers) {
                answer(job, Ok(done));
            }
            return;
        }
        Err(DieselError::RollbackTransaction) => {}
        Err(e) => {
            // The commit failed: nothing of the batch is stored.
            let message = format!("{}", query_error(e));
            for job in batch {
                answer(job, Err(Error::Unavailable(message.clone())));
            }
            return;
        }
    }
    let mut waiting = Vec::with_capacity(batch.len());
    let committed = conn.transaction::<_, DieselError, _>(|c| {
        for job in batch {
            let result = attempt(c, job.0.as_ref());
            waiting.push((job, result));
        }
        Ok(())
    });
    match committed {
        Ok(()) => {
            for (job, result) in waiting {
                answer(job, result);
            }
        }
        Err(e) => {
            // Nothing of the batch is stored: every write fails with the commit's error.
            let message = format!("{}", query_error(e));
            for (job, result) in waiting {
                let result = match result {
                    Err(own) => Err(own),
                    Ok(_) => Err(Error::Unavailable(message.clone())),
                };
                answer(job, result);
            }
        }
    }
}

/// Runs `write` whole in a transaction (a savepoint when one is open): its answer, with its
/// changes undone when it fails.
fn attempt(conn: &mut AnyConnection, write: &dyn Write) -> Result<bool> {
    match conn.transaction::<bool, Failed, _>(|c| write.now(c).map_err(Failed::Job)) {
        Ok(done) => Ok(done),
        Err(Failed::Job(e)) => Err(e),
        Err(Failed::Db(e)) => Err(query_error(e)),
    }
}
