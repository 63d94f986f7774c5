//! What a partner's answers mean, as a config maps them: a failure's meaning, and the states
//! of a deduction or a hold as Jifen reads them.

use serde::Deserialize;

/// What a failed call means, as the config maps it (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// A business refusal (too few points, account frozen): the deduct is rejected.
    Rejected,
    /// The user has no account: the deduct is rejected.
    UnknownUser,
    /// Nothing is recorded for the key (a query, a refund of a key never deducted).
    NotFound,
    /// Not applied; try again later.
    Transient,
    /// The request can never succeed (a bug, a misconfiguration).
    Invalid,
    /// The key was refunded before this deduct arrived.
    Conflict,
    /// The key was used before with another amount (`ALREADY_EXISTS`).
    OtherAmount,
    /// Not a failure but a state: the key is already deducted (a "duplicate order" code
    /// answering a repeated deduct).
    Deducted,
    /// Not a failure but a state: the key is already refunded ("already reversed").
    Refunded,
    /// Not a failure but a state: accepted, still processing (`[pending]` polls it).
    Pending,
    /// Not a failure but a state: the key's points are already held (a repeated freeze).
    Frozen,
    /// Not a failure but a state: the hold is already captured (a repeated confirm).
    Confirmed,
    /// Not a failure but a state: the hold is already released (a repeated cancel).
    Cancelled,
}

/// One state of a deduction as Jifen reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerState {
    Deducted,
    Refunded,
    Rejected,
    /// Accepted, not final: asked again on the `[pending]` schedule.
    Pending,
    /// Held (TCC): out of the user's balance, not spent.
    Frozen,
    /// A hold captured: spent.
    Confirmed,
    /// A hold released, voided or lapsed.
    Cancelled,
}
