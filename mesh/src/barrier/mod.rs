//! The idempotency barrier of DESIGN §3, shared by the channel (points) and the portal (quota).
//!
//! A [`Barrier`] keeps one ledger row per key `(order_id, party)` — the party is the user at
//! a channel, the channel at the portal — and moves the party's [`Balance`] *in the same
//! transaction*, so a crash between two statements leaves neither. Every transaction starts
//! with an insert of the key, which makes it a writer from its first statement: concurrent
//! calls for one key queue on it (PostgreSQL's unique index, SQLite's write lock) instead of
//! both reading "absent" and both acting.
//!
//! - deduct, key absent: take the points, or record a [`Rejection`] when the balance is short
//!   or the party unknown;
//! - deduct, key present: the recorded outcome, unchanged; a refunded key refuses the deduct
//!   (it would hang), a different amount is a conflict;
//! - refund, key absent: record a refund of 0 points (null compensation);
//! - refund of a deducted key: give the points back, once;
//! - any other refund: the recorded row, unchanged.
//!
//! Holds (TCC, DESIGN §12, [`hold`]) follow the same rules: a freeze is a deduct into a frozen
//! balance that lapses at its expiry, a cancel is a refund (null cancel, anti-hanging), and a
//! confirm spends a live hold once.

mod hold;
mod ledger;

pub use hold::{ConfirmOutcome, DEFAULT_HOLD_TTL, HoldBalance, release_lapsed_holds};

use sqlx::AnyConnection;

use ledger::{DeductClaim, Ledger, RefundClaim};

use crate::group_commit::{Write, Writer};
use crate::storage::Database;

/// Where one key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    /// The points are held by the deduction.
    Deducted,
    /// Given back, or refunded before any deduct arrived (0 points).
    Refunded,
    /// Refused for a business reason; nothing was taken.
    Rejected,
    /// Held by a hold: out of the spendable balance, not spent (TCC).
    Frozen,
    /// The hold was confirmed: its points are spent.
    Confirmed,
    /// The hold was released, cancelled before it arrived (0 points), or expired.
    Cancelled,
}

impl LedgerState {
    pub const ALL: [Self; 6] = [
        Self::Deducted,
        Self::Refunded,
        Self::Rejected,
        Self::Frozen,
        Self::Confirmed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deducted => "DEDUCTED",
            Self::Refunded => "REFUNDED",
            Self::Rejected => "REJECTED",
            Self::Frozen => "FROZEN",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Whether the state belongs to holds (TCC) rather than to deducts and refunds.
    pub fn is_hold(self) -> bool {
        matches!(self, Self::Frozen | Self::Confirmed | Self::Cancelled)
    }

    fn parse(raw: &str) -> Result<Self, sqlx::Error> {
        match raw {
            "DEDUCTED" => Ok(Self::Deducted),
            "REFUNDED" => Ok(Self::Refunded),
            "REJECTED" => Ok(Self::Rejected),
            "FROZEN" => Ok(Self::Frozen),
            "CONFIRMED" => Ok(Self::Confirmed),
            "CANCELLED" => Ok(Self::Cancelled),
            other => Err(sqlx::Error::Decode(
                format!("unknown ledger state {other:?}").into(),
            )),
        }
    }
}

/// One row of a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub order_id: String,
    pub party: String,
    /// Points held while deducted, given back once refunded (0 for a null compensation), asked
    /// for when rejected.
    pub points: i64,
    pub state: LedgerState,
    /// The caller's code for why a deduct was rejected, or `expired` for a hold that lapsed;
    /// empty otherwise.
    pub rejection: String,
    pub updated_at_ms: i64,
    /// When a hold lapses by itself; 0 for anything else.
    pub expires_at_ms: i64,
}

/// Why a deduct was refused; recorded in the ledger row so a redelivery gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The balance was smaller than the amount.
    Insufficient,
    /// The party (user, channel) does not exist.
    UnknownParty,
}

impl Rejection {
    fn code(self) -> &'static str {
        match self {
            Self::Insufficient => "insufficient",
            Self::UnknownParty => "unknown_party",
        }
    }

    fn from_code(code: &str) -> Result<Self, sqlx::Error> {
        match code {
            "insufficient" => Ok(Self::Insufficient),
            "unknown_party" => Ok(Self::UnknownParty),
            other => Err(sqlx::Error::Decode(
                format!("unknown rejection {other:?}").into(),
            )),
        }
    }
}

impl LedgerEntry {
    /// Whether a cancelled hold was released by its expiry rather than by a cancel.
    pub fn expired(&self) -> bool {
        self.state == LedgerState::Cancelled && self.rejection == hold::EXPIRED
    }

    /// The key's state in words, `EXPIRED` for a hold released by its expiry.
    pub fn state_name(&self) -> &'static str {
        if self.expired() {
            "EXPIRED"
        } else {
            self.state.as_str()
        }
    }

    /// The rejection of a rejected entry.
    pub fn rejection(&self) -> Option<Rejection> {
        (self.state == LedgerState::Rejected)
            .then(|| Rejection::from_code(&self.rejection).ok())
            .flatten()
    }
}

/// What a deduct came to, first time or replayed.
#[derive(Debug, PartialEq, Eq)]
pub enum DeductOutcome {
    Deducted(LedgerEntry),
    Rejected(LedgerEntry, Rejection),
    /// The key was refunded before this deduct: nothing is taken.
    RefundedBefore(LedgerEntry),
    /// The key was recorded with another amount.
    Conflict(LedgerEntry),
}

/// The balance a barrier guards, as SQL over the system's own table. Parameters: `$1` the
/// points, `$2` the time (ms), `$3` the party; `exists` takes the party as `$1`.
#[derive(Debug, Clone, Copy)]
pub struct Balance {
    /// Takes `$1` from the party's balance; must change no row when the balance is short.
    pub take: &'static str,
    /// Gives `$1` back to the party's balance.
    pub restore: &'static str,
    /// Selects a row when the party exists.
    pub exists: &'static str,
    /// The same balance's holds; `None` where the ledger does not hold points.
    pub hold: Option<HoldBalance>,
}

/// A ledger and the balance it guards. Deducts and refunds go to one writer task that commits
/// many in one transaction ([`crate::group_commit`]); reads go straight to the database.
#[derive(Debug, Clone)]
pub struct Barrier {
    ledger: Ledger,
    writer: Writer<Rules>,
    hold_ttl_ms: i64,
}

impl Barrier {
    /// `table` (with a `party` column) is a compile-time name, never input. Needs a Tokio
    /// runtime: it starts the writer task on `db`.
    pub fn new(table: &'static str, party: &'static str, balance: Balance, db: Database) -> Self {
        let ledger = Ledger::new(table, party);
        let rules = Rules {
            ledger: ledger.clone(),
            balance,
        };
        Self {
            ledger,
            writer: Writer::spawn(rules, db),
            hold_ttl_ms: hold::DEFAULT_TTL_MS,
        }
    }

    /// How long a hold lives before it lapses by itself.
    pub fn with_hold_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.hold_ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        self
    }

    pub fn hold_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.hold_ttl_ms).unwrap_or(0))
    }

    pub async fn get(
        &self,
        db: &Database,
        order_id: &str,
        party: &str,
    ) -> Result<Option<LedgerEntry>, sqlx::Error> {
        self.ledger.get(db.pool(), order_id, party).await
    }

    /// Deducts `points` for the key once; see the module docs for every case.
    pub async fn deduct(
        &self,
        order_id: &str,
        party: &str,
        points: i64,
    ) -> Result<DeductOutcome, sqlx::Error> {
        let op = BarrierOp::Deduct {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
            points,
        };
        match self.writer.call(op).await? {
            BarrierAnswer::Deducted(outcome) => Ok(outcome),
            _ => Err(mixed_up()),
        }
    }

    /// Refunds the key once and returns its ledger row.
    pub async fn refund(&self, order_id: &str, party: &str) -> Result<LedgerEntry, sqlx::Error> {
        let op = BarrierOp::Refund {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
        };
        match self.writer.call(op).await? {
            BarrierAnswer::Refunded(entry) => Ok(entry),
            _ => Err(mixed_up()),
        }
    }
}

/// The barrier's rules as SQL, applied by the writer in its transaction.
#[derive(Debug, Clone)]
struct Rules {
    ledger: Ledger,
    balance: Balance,
}

impl Rules {
    /// [`Barrier::deduct`] (or, with a hold's `taking`, [`Barrier::freeze`]) in the caller's
    /// transaction, which commits.
    async fn take_in(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        points: i64,
        taking: Taking,
        now: i64,
    ) -> Result<DeductOutcome, sqlx::Error> {
        let claim = self
            .ledger
            .claim_deduct(
                &mut *tx,
                order_id,
                party,
                points,
                taking.state,
                taking.expires_at_ms,
                now,
            )
            .await?;
        if let DeductClaim::Recorded(entry) = claim {
            return replay(entry, points, taking.state == LedgerState::Frozen);
        }
        if Self::shift(tx, taking.sql, points, party, now).await? {
            return Ok(DeductOutcome::Deducted(LedgerEntry {
                order_id: order_id.to_owned(),
                party: party.to_owned(),
                points,
                state: taking.state,
                rejection: String::new(),
                updated_at_ms: now,
                expires_at_ms: taking.expires_at_ms,
            }));
        }
        let known = sqlx::query(self.balance.exists)
            .bind(party)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let rejection = if known {
            Rejection::Insufficient
        } else {
            Rejection::UnknownParty
        };
        let entry = self
            .ledger
            .reject(&mut *tx, order_id, party, rejection.code(), now)
            .await?;
        Ok(DeductOutcome::Rejected(entry, rejection))
    }

    /// Moves the party's balance by `sql` (`$1` points, `$2` time, `$3` party); false when it
    /// changed no row (a balance too short, a party unknown).
    async fn shift(
        tx: &mut AnyConnection,
        sql: &str,
        points: i64,
        party: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(sql)
            .bind(points)
            .bind(now)
            .bind(party)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1)
    }

    /// [`Barrier::refund`] in the caller's transaction, which commits.
    async fn refund_in(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        now: i64,
    ) -> Result<LedgerEntry, sqlx::Error> {
        Ok(
            match self
                .ledger
                .claim_refund(&mut *tx, order_id, party, now)
                .await?
            {
                RefundClaim::Restore(entry) => {
                    if !Self::shift(tx, self.balance.restore, entry.points, party, now).await? {
                        // The party held these points a moment ago; without it they would be
                        // lost.
                        return Err(sqlx::Error::RowNotFound);
                    }
                    entry
                }
                RefundClaim::NullCompensation(entry) | RefundClaim::Recorded(entry) => entry,
            },
        )
    }
}

/// How a key takes points: the state it records (deducted, or frozen until `expires_at_ms`)
/// and the balance's SQL that takes them.
#[derive(Debug, Clone, Copy)]
struct Taking {
    state: LedgerState,
    expires_at_ms: i64,
    sql: &'static str,
}

/// A deduct or refund queued for group commit.
#[derive(Debug)]
enum BarrierOp {
    Deduct {
        order_id: String,
        party: String,
        points: i64,
    },
    Refund {
        order_id: String,
        party: String,
    },
    Hold(hold::HoldOp),
}

#[derive(Debug)]
enum BarrierAnswer {
    Deducted(DeductOutcome),
    Refunded(LedgerEntry),
    Confirmed(ConfirmOutcome),
    Expired(Vec<LedgerEntry>),
}

fn mixed_up() -> sqlx::Error {
    sqlx::Error::Protocol("the group-commit writer answered another kind of call".into())
}

impl Write for Rules {
    type Op = BarrierOp;
    type Answer = BarrierAnswer;
    type Staged = ();
    type Committed = ();

    async fn finish(&self, _tx: &mut AnyConnection, (): ()) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn apply(
        &self,
        tx: &mut AnyConnection,
        _staged: &mut (),
        op: &BarrierOp,
        now: i64,
    ) -> Result<BarrierAnswer, sqlx::Error> {
        match op {
            BarrierOp::Deduct {
                order_id,
                party,
                points,
            } => {
                let taking = Taking {
                    state: LedgerState::Deducted,
                    expires_at_ms: 0,
                    sql: self.balance.take,
                };
                self.take_in(tx, order_id, party, *points, taking, now)
                    .await
                    .map(BarrierAnswer::Deducted)
            }
            BarrierOp::Refund { order_id, party } => self
                .refund_in(tx, order_id, party, now)
                .await
                .map(BarrierAnswer::Refunded),
            BarrierOp::Hold(op) => self.hold_in(tx, op, now).await,
        }
    }
}

/// A deduct's (or, with `hold`, a freeze's) answer from the key's recorded row.
fn replay(entry: LedgerEntry, points: i64, hold: bool) -> Result<DeductOutcome, sqlx::Error> {
    let given_back = if hold {
        LedgerState::Cancelled
    } else {
        LedgerState::Refunded
    };
    Ok(match entry.state {
        state if state == given_back => DeductOutcome::RefundedBefore(entry),
        LedgerState::Rejected if entry.points == points => {
            let rejection = Rejection::from_code(&entry.rejection)?;
            DeductOutcome::Rejected(entry, rejection)
        }
        // A confirmed hold answers a repeated freeze with what it became.
        LedgerState::Frozen | LedgerState::Confirmed if hold && entry.points == points => {
            DeductOutcome::Deducted(entry)
        }
        LedgerState::Deducted if !hold && entry.points == points => DeductOutcome::Deducted(entry),
        // Another amount, or the key recorded by the other protocol.
        _ => DeductOutcome::Conflict(entry),
    })
}
