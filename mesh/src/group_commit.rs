//! Group commit (DESIGN §6): concurrent writes are queued to one writer task that applies many
//! in one transaction — one commit, one fsync — and answers each caller only after that
//! commit. The writes of a batch run one after another in the transaction, in the order they
//! were queued, so each means exactly what it means on its own (the barrier's per-key rules
//! included, two calls for one key in one batch too). If one write fails, or the transaction
//! itself, nothing of the batch holds and its writes are run again one by one, each in its own
//! transaction, so no caller gets another caller's failure and none is applied twice.
//!
//! There is no savepoint per write: on SQLite every statement is a hand-off to the
//! connection's thread, and two more per write cost more than running a failed batch again.
//!
//! The shape is Restate's background appender: `mpsc::Receiver::recv_many` drains whatever
//! queued while the previous commit ran, so batches grow with the load and a lone write waits
//! for nobody. Used by the barrier of the reference ledgers and by the mall's `SubmitOrder`;
//! the saga applies its fetched batches with the same [`apply_all`].

use std::future::Future;

use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use crate::storage::Database;
use crate::time::now_unix_ms;

/// Writes applied in one transaction at most.
const MOST_PER_COMMIT: usize = 128;

/// A kind of write the writer applies in the caller's (its own) transaction.
pub trait Write: Send + Sync + 'static {
    type Op: Send + Sync + 'static;
    type Answer: Send + 'static;
    /// Rows the writes of one transaction leave to be written together at its end, one
    /// statement for many (`()` when there are none).
    type Staged: Default + Send;
    /// What `finish` hands to `committed`.
    type Committed: Send;

    /// Applies one write in `tx`, or stages part of it in `staged`; `now` is the batch's time
    /// (ms).
    fn apply(
        &self,
        tx: &mut AnyConnection,
        staged: &mut Self::Staged,
        op: &Self::Op,
        now: i64,
    ) -> impl Future<Output = Result<Self::Answer, sqlx::Error>> + Send;

    /// Writes what the transaction's writes staged, just before it commits.
    fn finish(
        &self,
        tx: &mut AnyConnection,
        staged: Self::Staged,
    ) -> impl Future<Output = Result<Self::Committed, sqlx::Error>> + Send;

    /// Called once the transaction that `finish` ended has committed, with what it returned:
    /// the place for effects outside the database (metrics), which a batch that is applied
    /// again one by one must not cause twice.
    fn committed(&self, committed: Self::Committed) {
        let _ = committed;
    }

    /// Whether a write that succeeded changed something to commit. A write that answers `false`
    /// must have written nothing that matters, since in a batch it is not undone; on its own,
    /// its transaction is rolled back rather than committed (no fsync).
    fn keep(&self, _answer: &Self::Answer) -> bool {
        true
    }
}

struct Job<W: Write> {
    op: W::Op,
    reply: oneshot::Sender<Result<W::Answer, sqlx::Error>>,
}

/// The handle callers queue their writes on; the writer task ends when the last handle goes.
pub struct Writer<W: Write> {
    jobs: mpsc::Sender<Job<W>>,
}

impl<W: Write> Clone for Writer<W> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<W: Write> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl<W: Write> Writer<W> {
    /// Starts the writer task on `db`. Needs a Tokio runtime.
    pub fn spawn(write: W, db: Database) -> Self {
        let (jobs, queue) = mpsc::channel(4 * MOST_PER_COMMIT);
        tokio::spawn(run(write, db, queue));
        Self { jobs }
    }

    /// Queues a write and waits until it is committed (or failed).
    pub async fn call(&self, op: W::Op) -> Result<W::Answer, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

async fn run<W: Write>(write: W, db: Database, mut queue: mpsc::Receiver<Job<W>>) {
    let mut batch = Vec::with_capacity(MOST_PER_COMMIT);
    while queue.recv_many(&mut batch, MOST_PER_COMMIT).await > 0 {
        let ops: Vec<&W::Op> = batch.iter().map(|job| &job.op).collect();
        let answers = apply_all(&write, &db, &ops).await;
        for (job, answer) in batch.drain(..).zip(answers) {
            let _ = job.reply.send(answer);
        }
    }
}

/// Applies `ops` in their order in one transaction and answers each after the commit. If one
/// op fails, or the transaction itself (its start, the commit), nothing of it holds and every
/// op is applied again on its own, so no op gets another's failure.
pub async fn apply_all<W: Write>(
    write: &W,
    db: &Database,
    ops: &[&W::Op],
) -> Vec<Result<W::Answer, sqlx::Error>> {
    if ops.len() > 1 {
        match together(write, db, ops).await {
            Ok(answers) => return answers,
            Err(error) => {
                tracing::debug!(%error, writes = ops.len(), "group commit failed; one by one");
            }
        }
    }
    let mut answers = Vec::with_capacity(ops.len());
    for op in ops {
        answers.push(alone(write, db, op).await);
    }
    answers
}

/// Every write of the batch in one transaction; `Err` when one write or the transaction
/// failed (the transaction is then rolled back as it is dropped).
async fn together<W: Write>(
    write: &W,
    db: &Database,
    ops: &[&W::Op],
) -> Result<Vec<Result<W::Answer, sqlx::Error>>, sqlx::Error> {
    let now = now_unix_ms();
    let mut tx = db.begin().await?;
    let mut staged = W::Staged::default();
    let mut answers = Vec::with_capacity(ops.len());
    for op in ops {
        answers.push(Ok(write.apply(&mut tx, &mut staged, op, now).await?));
    }
    let committed = write.finish(&mut tx, staged).await?;
    tx.commit().await?;
    write.committed(committed);
    Ok(answers)
}

/// One write in a transaction of its own.
async fn alone<W: Write>(write: &W, db: &Database, op: &W::Op) -> Result<W::Answer, sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut staged = W::Staged::default();
    let answer = write.apply(&mut tx, &mut staged, op, now_unix_ms()).await?;
    if write.keep(&answer) {
        let committed = write.finish(&mut tx, staged).await?;
        tx.commit().await?;
        write.committed(committed);
    }
    Ok(answer)
}
