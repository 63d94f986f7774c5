//! The adapter as the connector drives it ([`LedgerEndpoint`]): commands decoded, calls made,
//! each record handed over with the line's exchanges.

use jifen_mesh::bus::subjects::Step;
use jifen_mesh::capabilities::Capabilities;
use jifen_mesh::connector::{LedgerCommand, LedgerEndpoint, Recorded};
use tonic::Status;

use crate::{CallKey, HttpChannel};

impl LedgerEndpoint for HttpChannel {
    fn decode(&self, step: Step, payload: &[u8]) -> Result<LedgerCommand, String> {
        jifen_mesh::wire::decode_points_command(self.channel_id(), step, payload)
    }

    async fn deduct(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let recorded = HttpChannel::deduct(self, call_key(command)).await;
        self.with_evidence(command, recorded)
    }

    async fn refund(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let recorded = HttpChannel::refund(self, call_key(command)).await;
        self.with_evidence(command, recorded)
    }

    async fn freeze(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let recorded = HttpChannel::freeze(self, call_key(command)).await;
        self.with_evidence(command, recorded)
    }

    async fn confirm(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let recorded = HttpChannel::confirm(self, call_key(command)).await;
        self.with_evidence(command, recorded)
    }

    async fn cancel(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let recorded = HttpChannel::cancel(self, call_key(command)).await;
        self.with_evidence(command, recorded)
    }

    fn hold_ttl(&self) -> Option<std::time::Duration> {
        HttpChannel::hold_ttl(self)
    }

    async fn get(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let recorded = self.query(call_key(command)).await;
        self.with_evidence(command, recorded)
    }

    fn event(&self, command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
        jifen_mesh::wire::points_event(command, recorded)
    }

    fn capabilities(&self) -> Capabilities {
        self.config.capabilities
    }

    fn poll_schedule(&self) -> Option<jifen_mesh::connector::PollSchedule> {
        self.config.poll.clone()
    }

    fn partner_key(&self, command: &LedgerCommand) -> Option<String> {
        Some(self.idempotency_key(call_key(command)))
    }

    fn manual_refund_event(
        &self,
        command: &LedgerCommand,
        points: i64,
    ) -> Option<(String, Vec<u8>)> {
        Some(jifen_mesh::wire::manual_refund_event(command, points))
    }
}

impl HttpChannel {
    /// A record carries the line's exchanges so far; a failure leaves them for the outcome.
    fn with_evidence(
        &self,
        command: &LedgerCommand,
        recorded: Result<Recorded, Status>,
    ) -> Result<Recorded, Status> {
        recorded.map(|recorded| Recorded {
            exchanges: self.evidence.take(&command.order_id, &command.user_id),
            ..recorded
        })
    }
}

fn call_key(command: &LedgerCommand) -> CallKey<'_> {
    CallKey {
        order_id: &command.order_id,
        user_id: &command.user_id,
        points: command.points,
        captured: Some(&command.captured),
    }
}
