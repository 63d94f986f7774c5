//! What a connector does with one command, by what its ledger guarantees ([`Capabilities`]):
//! check-back before repeating a call whose first try may have happened (when the ledger can be
//! asked), no blind repeat of a deduct at a ledger that can neither repeat it safely nor be
//! asked (outcome unknown), a refund by hand at a ledger without a refund call; and how a
//! ledger's status codes are read.

use tonic::{Code, Status};

use super::pending::Wait;
use super::{Connector, LedgerCommand, LedgerEndpoint, Recorded, is_pending};
use crate::barrier::LedgerState;
use crate::bus::consume::Disposition;
use crate::bus::subjects::Step;
use crate::capabilities::Capabilities;

/// What a connector learned about a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Recorded(Recorded),
    /// The ledger holds these points for the key and cannot give them back by itself.
    RefundByHand {
        points: i64,
    },
}

/// Waits between the calls of a deduct that must not be repeated blindly, while the ledger
/// says it did not apply it (it was unreachable, or asked to be called later).
const NOT_APPLIED_RETRIES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
];

/// How long before its hold lapses a confirm stops being retried: a confirm that lands after
/// the lapse finds nothing to spend, so it becomes an operator's task while the hold still
/// stands.
const CONFIRM_MARGIN_MS: i64 = 5_000;

/// Whether a failed call certainly did not reach the ledger's books: it could not be sent, or
/// the ledger answered "later" (an adapter maps connection failures and declared transient
/// answers here). Anything else — a timeout, a lost answer, a 5xx — may have been applied.
fn not_applied(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::ResourceExhausted)
}

/// Whether the status is the ledger's definite answer (applied or refused), not a failure.
fn definite(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::FailedPrecondition
            | Code::NotFound
            | Code::Aborted
            | Code::InvalidArgument
            | Code::AlreadyExists
    )
}

impl<E: LedgerEndpoint> Connector<E> {
    pub(super) async fn outcome(
        &self,
        command: &LedgerCommand,
        delivered: i64,
        command_id: &str,
    ) -> Result<Answer, Disposition> {
        let capabilities = self.endpoint.capabilities();
        if command.step.is_hold() && self.endpoint.hold_ttl().is_none() {
            return self.no_holds(command);
        }
        if command.step == Step::Refund && !capabilities.refund {
            return self.refund_by_hand(command, capabilities).await;
        }
        let guarded =
            command.step.takes() && !capabilities.idempotent_deduct && !capabilities.query;
        if delivered > 1 {
            if capabilities.query {
                // Check-back: the earlier call may have happened before its answer was lost.
                match self.endpoint.get(command).await {
                    Ok(recorded) if answers(command.step, &recorded) => {
                        return Ok(Answer::Recorded(recorded));
                    }
                    Ok(_) => {}
                    Err(status) if status.code() == Code::NotFound => {}
                    Err(status) => return Err(self.failed(command, command_id, status)),
                }
            } else if guarded {
                // An earlier delivery was not settled (the connector stopped mid-call): it
                // may have deducted, and nothing can tell.
                return Err(Disposition::OutcomeUnknown(format!(
                    "{}: delivered again (delivery {delivered}) after an attempt that did not \
                     settle; the channel's deducts are not idempotent and it cannot be asked \
                     what it recorded: look at the channel and record the outcome",
                    describe(command)
                )));
            }
        }
        let called = match command.step {
            _ if guarded => self.deduct_once(command).await?,
            Step::Deduct => self.endpoint.deduct(command).await,
            Step::Refund => self.endpoint.refund(command).await,
            Step::Freeze => self.endpoint.freeze(command).await,
            Step::Confirm => self.endpoint.confirm(command).await,
            Step::Cancel => self.endpoint.cancel(command).await,
        };
        let recorded = match called {
            Ok(recorded) => recorded,
            Err(status) if is_pending(&status) => {
                return Err(self.failed(command, command_id, status));
            }
            Err(status) => match status.code() {
                Code::FailedPrecondition | Code::NotFound if command.step.takes() => {
                    Recorded::inferred(LedgerState::Rejected, command.points, &status)
                }
                // A hold that is no longer there to spend (cancelled, expired, never placed):
                // what the ledger recorded says which, else nothing is held.
                Code::FailedPrecondition | Code::NotFound if command.step == Step::Confirm => {
                    match self.endpoint.get(command).await {
                        Ok(recorded) if recorded.state != LedgerState::Frozen => recorded,
                        Ok(_) => return Err(self.failed(command, command_id, status)),
                        Err(_) if !capabilities.query => {
                            Recorded::inferred(LedgerState::Cancelled, 0, &status)
                        }
                        Err(found) if found.code() == Code::NotFound => {
                            Recorded::inferred(LedgerState::Cancelled, 0, &status)
                        }
                        Err(other) => return Err(self.failed(command, command_id, other)),
                    }
                }
                // Refunding (cancelling) something the endpoint never heard of gives nothing
                // back. (A ledger without null compensation may still take a late deduct: the
                // mall refunds it again when that deduct's outcome arrives.)
                Code::NotFound => Recorded::inferred(given_back(command.step), 0, &status),
                // The ledger cannot give these points back by itself (a reversal that needs
                // what only the lost deduct answer held): an operator's task.
                Code::Unimplemented
                    if command.step == Step::Refund && !command.user_id.is_empty() =>
                {
                    return Ok(Answer::RefundByHand {
                        points: command.points,
                    });
                }
                Code::Aborted if !capabilities.query => {
                    Recorded::inferred(given_back(command.step), 0, &status)
                }
                Code::Aborted => match self.endpoint.get(command).await {
                    Ok(recorded) => recorded,
                    Err(status) if status.code() == Code::NotFound => {
                        Recorded::inferred(given_back(command.step), 0, &status)
                    }
                    Err(status) => return Err(self.failed(command, command_id, status)),
                },
                _ => return Err(self.failed(command, command_id, status)),
            },
        };
        let hold_expires_at_ms = match (recorded.state, self.endpoint.hold_ttl()) {
            // A ledger that does not say when its hold lapses: it lapses no later than its TTL
            // from now, since the hold was placed before this answer.
            (LedgerState::Frozen, Some(ttl)) if recorded.hold_expires_at_ms == 0 => {
                crate::time::now_unix_ms()
                    .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
            }
            _ => recorded.hold_expires_at_ms,
        };
        Ok(Answer::Recorded(Recorded {
            // Nothing to give back proves nothing where the ledger may still take the deduct
            // that is on its way: the mall waits for that deduct's outcome (DESIGN §9).
            deduct_may_follow: command.step.gives_back()
                && recorded.state == given_back(command.step)
                && recorded.points == 0
                && !(capabilities.anti_hanging && capabilities.null_compensation),
            hold_expires_at_ms,
            ..recorded
        }))
    }

    /// A deduct at a channel that cannot repeat it safely nor be asked about it: called again
    /// only while the channel says it did not apply it; any answer that may hide an applied
    /// deduct makes the outcome unknown.
    async fn deduct_once(
        &self,
        command: &LedgerCommand,
    ) -> Result<Result<Recorded, Status>, Disposition> {
        let mut waits = NOT_APPLIED_RETRIES.iter();
        loop {
            let taken = if command.step == Step::Freeze {
                self.endpoint.freeze(command).await
            } else {
                self.endpoint.deduct(command).await
            };
            let status = match taken {
                Ok(recorded) => return Ok(Ok(recorded)),
                Err(status) if is_pending(&status) => return Ok(Err(status)),
                Err(status) if definite(&status) => return Ok(Err(status)),
                Err(status) => status,
            };
            if !not_applied(&status) {
                return Err(Disposition::OutcomeUnknown(format!(
                    "{}: {:?} {} — the deduct may have been applied, and the channel can \
                     neither repeat it safely nor be asked: look at the channel and record \
                     the outcome",
                    describe(command),
                    status.code(),
                    status.message()
                )));
            }
            match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                // Certainly not applied: a redrive sends it afresh once the channel is back.
                None => {
                    return Err(Disposition::Poison(format!(
                        "{}: {:?} {} ({} attempts); nothing was deducted: redrive it once the \
                         channel is back",
                        describe(command),
                        status.code(),
                        status.message(),
                        NOT_APPLIED_RETRIES.len() + 1
                    )));
                }
            }
        }
    }

    /// A refund at a channel without a refund call. What the key holds decides: nothing (never
    /// deducted, refused) settles the refund; points held, or a channel that cannot be asked,
    /// make it an operator's task.
    async fn refund_by_hand(
        &self,
        command: &LedgerCommand,
        capabilities: Capabilities,
    ) -> Result<Answer, Disposition> {
        if !capabilities.query {
            return Ok(Answer::RefundByHand { points: 0 });
        }
        match self.endpoint.get(command).await {
            Ok(recorded) if recorded.state == LedgerState::Deducted => Ok(Answer::RefundByHand {
                points: recorded.points,
            }),
            Ok(recorded) => Ok(Answer::Recorded(recorded)),
            Err(status) if status.code() == Code::NotFound => Ok(Answer::Recorded(
                Recorded::inferred(LedgerState::Refunded, 0, &status),
            )),
            Err(status) => Err(self.failed(command, "", status)),
        }
    }
}

impl<E: LedgerEndpoint> Connector<E> {
    /// A hold's command at a ledger that declares no holds (the mall judged by an older
    /// declaration): a freeze is refused, so the order gives up; a cancel finds nothing held; a
    /// confirm cannot be, which is an operator's task.
    fn no_holds(&self, command: &LedgerCommand) -> Result<Answer, Disposition> {
        let why = Status::failed_precondition("the channel declares no holds (freeze)");
        match command.step {
            Step::Freeze => Ok(Answer::Recorded(Recorded::inferred(
                LedgerState::Rejected,
                command.points,
                &why,
            ))),
            Step::Cancel => Ok(Answer::Recorded(Recorded::inferred(
                LedgerState::Cancelled,
                0,
                &why,
            ))),
            _ => Err(Disposition::Poison(format!(
                "{}: {}",
                describe(command),
                why.message()
            ))),
        }
    }

    /// A failed call: "processing" waits on the poll schedule; anything else as its code says.
    /// A confirm that fails within [`CONFIRM_MARGIN_MS`] of its hold's lapse is an operator's.
    fn failed(&self, command: &LedgerCommand, command_id: &str, status: Status) -> Disposition {
        if command.step == Step::Confirm
            && command.hold_expires_at_ms > 0
            && crate::time::now_unix_ms().saturating_add(CONFIRM_MARGIN_MS)
                >= command.hold_expires_at_ms
            && !definite(&status)
        {
            return Disposition::HoldExpiring(format!(
                "{}: {:?} {} — the hold lapses at {} ms and the confirm cannot land before \
                 it: look at the channel; redrive it if the hold is still there",
                describe(command),
                status.code(),
                status.message(),
                command.hold_expires_at_ms
            ));
        }
        if !is_pending(&status) {
            return classify_failure(command, status);
        }
        let what = describe(command);
        let Some(schedule) = self.endpoint.poll_schedule() else {
            return Disposition::OutcomeUnknown(format!(
                "{what}: the channel answered processing ({}) and gives no way to learn the \
                 result: look at the channel and record the outcome",
                status.message()
            ));
        };
        let partner_key = self.endpoint.partner_key(command);
        match self
            .pending
            .wait(command, command_id, partner_key, &schedule)
        {
            Wait::After(delay) => Disposition::RetryAfter(
                delay,
                format!("{what}: processing at the channel; asked again in {delay:?}"),
            ),
            Wait::Expired(waited) if command.step.takes() => Disposition::OutcomeUnknown(format!(
                "{what}: still processing at the channel after {waited:?}, past the \
                     deadline: look at the channel and record the outcome"
            )),
            Wait::Expired(waited) => Disposition::Poison(format!(
                "{what}: still processing at the channel after {waited:?}, past the deadline: \
                 redrive it once the channel has settled it"
            )),
        }
    }
}

pub(super) fn describe(command: &LedgerCommand) -> String {
    format!(
        "{} {} for order {}",
        command.step.as_str(),
        command.channel_id,
        command.order_id
    )
}

/// Whether a recorded entry is the answer to a command: any record answers a deduct or a
/// freeze; a refund is answered once the key is no longer deducted, a confirm or a cancel once
/// it is no longer frozen.
pub fn answers(step: Step, recorded: &Recorded) -> bool {
    match step {
        Step::Deduct | Step::Freeze => true,
        Step::Refund => recorded.state != LedgerState::Deducted,
        Step::Confirm | Step::Cancel => recorded.state != LedgerState::Frozen,
    }
}

/// The state a key is left in when a command gives back what it never took.
fn given_back(step: Step) -> LedgerState {
    if step.is_hold() {
        LedgerState::Cancelled
    } else {
        LedgerState::Refunded
    }
}

fn classify_failure(command: &LedgerCommand, status: Status) -> Disposition {
    let what = format!(
        "{}: {:?} {}",
        describe(command),
        status.code(),
        status.message()
    );
    match status.code() {
        Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition => {
            Disposition::Poison(what)
        }
        _ => Disposition::Retry(what),
    }
}
