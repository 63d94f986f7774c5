//! Group commit for the barrier (DESIGN §6): concurrent deducts and refunds are queued to one
//! writer task that applies many in one transaction — one commit, one fsync — and answers each
//! caller only after that commit. Each call runs under a savepoint, so one that fails is undone
//! alone; the calls of a batch run one after another in the transaction, so the barrier means
//! per key exactly what it means one call at a time (two calls for one key in one batch
//! included). If the transaction itself fails, its calls are run again one by one, each in its
//! own transaction, so no caller gets another caller's failure.
//!
//! The shape is Restate's background appender: `mpsc::Receiver::recv_many` drains whatever
//! queued while the previous commit ran, so batches grow with the load and a lone call waits
//! for nobody.

use tokio::sync::{mpsc, oneshot};

use crate::barrier::{Barrier, DeductOutcome, LedgerEntry};
use crate::storage::Database;
use crate::time::now_unix_ms;

/// Calls applied in one transaction at most.
const MOST_PER_COMMIT: usize = 128;

#[derive(Debug)]
enum Op {
    Deduct {
        order_id: String,
        party: String,
        points: i64,
    },
    Refund {
        order_id: String,
        party: String,
    },
}

#[derive(Debug)]
enum Answer {
    Deducted(DeductOutcome),
    Refunded(LedgerEntry),
}

#[derive(Debug)]
struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Answer, sqlx::Error>>,
}

/// The handle callers queue their calls on; the writer task ends when the last handle goes.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn spawn(barrier: Barrier, db: Database) -> Self {
        let (jobs, queue) = mpsc::channel(4 * MOST_PER_COMMIT);
        tokio::spawn(run(barrier, db, queue));
        Self { jobs }
    }

    pub(crate) async fn deduct(
        &self,
        order_id: &str,
        party: &str,
        points: i64,
    ) -> Result<DeductOutcome, sqlx::Error> {
        let op = Op::Deduct {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
            points,
        };
        match self.call(op).await? {
            Answer::Deducted(outcome) => Ok(outcome),
            Answer::Refunded(_) => Err(mixed_up()),
        }
    }

    pub(crate) async fn refund(
        &self,
        order_id: &str,
        party: &str,
    ) -> Result<LedgerEntry, sqlx::Error> {
        let op = Op::Refund {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
        };
        match self.call(op).await? {
            Answer::Refunded(entry) => Ok(entry),
            Answer::Deducted(_) => Err(mixed_up()),
        }
    }

    async fn call(&self, op: Op) -> Result<Answer, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

fn mixed_up() -> sqlx::Error {
    sqlx::Error::Protocol("the group-commit writer answered another kind of call".into())
}

async fn run(barrier: Barrier, db: Database, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MOST_PER_COMMIT);
    while queue.recv_many(&mut batch, MOST_PER_COMMIT).await > 0 {
        if batch.len() > 1 {
            match together(&barrier, &db, &batch).await {
                Ok(answers) => {
                    for (job, answer) in batch.drain(..).zip(answers) {
                        let _ = job.reply.send(answer);
                    }
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%error, calls = batch.len(), "group commit failed; one by one");
                }
            }
        }
        for job in batch.drain(..) {
            let answer = alone(&barrier, &db, &job.op).await;
            let _ = job.reply.send(answer);
        }
    }
}

async fn apply(
    barrier: &Barrier,
    tx: &mut sqlx::AnyConnection,
    op: &Op,
    now: i64,
) -> Result<Answer, sqlx::Error> {
    match op {
        Op::Deduct {
            order_id,
            party,
            points,
        } => barrier
            .deduct_in(tx, order_id, party, *points, now)
            .await
            .map(Answer::Deducted),
        Op::Refund { order_id, party } => barrier
            .refund_in(tx, order_id, party, now)
            .await
            .map(Answer::Refunded),
    }
}

/// Every call of the batch in one transaction; `Err` when the transaction itself failed.
async fn together(
    barrier: &Barrier,
    db: &Database,
    batch: &[Job],
) -> Result<Vec<Result<Answer, sqlx::Error>>, sqlx::Error> {
    let now = now_unix_ms();
    let mut tx = db.begin().await?;
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        sqlx::query("SAVEPOINT barrier_call")
            .execute(&mut *tx)
            .await?;
        let answer = apply(barrier, &mut tx, &job.op, now).await;
        if answer.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT barrier_call")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("RELEASE SAVEPOINT barrier_call")
            .execute(&mut *tx)
            .await?;
        answers.push(answer);
    }
    tx.commit().await?;
    Ok(answers)
}

/// One call in a transaction of its own.
async fn alone(barrier: &Barrier, db: &Database, op: &Op) -> Result<Answer, sqlx::Error> {
    let mut tx = db.begin().await?;
    let answer = apply(barrier, &mut tx, op, now_unix_ms()).await?;
    tx.commit().await?;
    Ok(answer)
}
