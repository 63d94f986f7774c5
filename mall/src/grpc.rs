//! The `MallService` edge: requests become a validated [`NewOrder`], orders become messages,
//! errors become statuses.

use std::sync::Arc;
use std::time::Duration;

use jifen_mesh::domain::{InvalidField, OrderId};
use jifen_proto::v1::mall_service_server::MallService;
use jifen_proto::v1::{
    GetOrderRequest, GetOrderResponse, ListOrdersRequest, ListOrdersResponse, OrderEvent,
    OrderLine, QuotaLine, SubmitOrderRequest, SubmitOrderResponse, WatchOrderRequest,
    WatchOrderResponse,
};
use tokio::sync::{Notify, mpsc};

use crate::changes::OrderChanges;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use crate::error::MallError;
use crate::order::{NewOrder, Order, OrderState, Protocol, StepState};
use crate::precheck::Registry;
use crate::store::{Inserted, OrderStore, Selection};

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

/// The mall's gRPC face.
#[derive(Debug, Clone)]
pub struct Mall {
    pub(crate) store: OrderStore,
    pub(crate) registry: Arc<Registry>,
    pub(crate) relay: Arc<Notify>,
    pub(crate) changes: OrderChanges,
    /// Cancelled when the mall starts shutting down: open watches end, so that the server's
    /// graceful close does not wait for streams that would never finish by themselves.
    pub(crate) shutdown: CancellationToken,
    /// The watches' tasks, drained at shutdown.
    pub(crate) tasks: TaskTracker,
    /// Pauses and maintenance windows: a paused channel takes no new orders.
    pub(crate) pauses: Arc<crate::routine::pauses::PauseBoard>,
    /// The connectors' reports: which channels hold points (TCC).
    pub(crate) health: Arc<crate::ledger_health::HealthBoard>,
}

/// How often a watch reads its order besides being told of changes by this process.
const WATCH_POLL: Duration = Duration::from_millis(500);

pub fn order_message(order: Order) -> jifen_proto::v1::Order {
    use jifen_proto::v1::{OrderState as Wire, Protocol as WireProtocol, StepState as WireStep};
    let state = match order.state {
        OrderState::Pending => Wire::Pending,
        OrderState::Confirming => Wire::Confirming,
        OrderState::Compensating => Wire::Compensating,
        OrderState::Completed => Wire::Completed,
        OrderState::Cancelled => Wire::Cancelled,
    };
    let step = |s: StepState| -> i32 {
        match s {
            StepState::Waiting => WireStep::Waiting,
            StepState::Pending => WireStep::Pending,
            StepState::Deducted => WireStep::Deducted,
            StepState::Rejected => WireStep::Rejected,
            StepState::Refunding => WireStep::Refunding,
            StepState::Refunded => WireStep::Refunded,
            StepState::Skipped => WireStep::Skipped,
            StepState::ManualRefund => WireStep::ManualRefund,
            StepState::Frozen => WireStep::Frozen,
            StepState::Confirming => WireStep::Confirming,
            StepState::Confirmed => WireStep::Confirmed,
            StepState::Cancelling => WireStep::Cancelling,
            StepState::Cancelled => WireStep::Cancelled,
        }
        .into()
    };
    let protocol = |p: Protocol| -> i32 {
        match p {
            Protocol::Saga => WireProtocol::Saga,
            Protocol::Tcc => WireProtocol::Tcc,
        }
        .into()
    };
    jifen_proto::v1::Order {
        order_id: order.order_id,
        customer_id: order.customer_id,
        state: state.into(),
        needs_attention: order.needs_attention,
        reason: order.reason,
        lines: order
            .lines
            .into_iter()
            .map(|l| OrderLine {
                channel_id: l.channel_id,
                user_id: l.user_id,
                points: l.points,
                state: step(l.state),
                captured: l.captured.into_iter().collect(),
                protocol: protocol(l.protocol),
            })
            .collect(),
        quotas: order
            .quotas
            .into_iter()
            .map(|q| QuotaLine {
                channel_id: q.channel_id,
                points: q.points,
                state: step(q.state),
                protocol: protocol(q.protocol),
            })
            .collect(),
        history: order
            .history
            .into_iter()
            .map(|h| OrderEvent {
                at_unix_ms: h.at_ms,
                kind: h.kind,
                detail: h.detail,
                actor: h.actor,
            })
            .collect(),
        created_at_unix_ms: order.created_at_ms,
        updated_at_unix_ms: order.updated_at_ms,
        trace_id: order.trace_id,
    }
}

fn order_filter(raw: i32) -> Result<Option<OrderState>, InvalidField> {
    use jifen_proto::v1::OrderState as Wire;
    match Wire::try_from(raw) {
        Ok(Wire::Unspecified) => Ok(None),
        Ok(Wire::Pending) => Ok(Some(OrderState::Pending)),
        Ok(Wire::Confirming) => Ok(Some(OrderState::Confirming)),
        Ok(Wire::Compensating) => Ok(Some(OrderState::Compensating)),
        Ok(Wire::Completed) => Ok(Some(OrderState::Completed)),
        Ok(Wire::Cancelled) => Ok(Some(OrderState::Cancelled)),
        Err(_) => Err(InvalidField::new(
            "state",
            format!("unknown order state {raw}"),
        )),
    }
}

/// Page size from a request: the default when 0, at most [`MAX_PAGE_SIZE`].
pub fn page_size(raw: i32) -> Result<i64, InvalidField> {
    match raw {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1.. => Ok(i64::from(raw).min(MAX_PAGE_SIZE)),
        _ => Err(InvalidField::new("page_size", "must not be negative")),
    }
}

/// A page token is the position of the last order returned: `<created_at_ms>:<order_id>`.
pub fn parse_page_token(raw: &str) -> Result<Option<(i64, String)>, InvalidField> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || InvalidField::new("page_token", "is not a token this server returned");
    let (ms, id) = raw.split_once(':').ok_or_else(bad)?;
    let ms = ms.parse().map_err(|_| bad())?;
    Ok(Some((
        ms,
        OrderId::parse("page_token", id)
            .map_err(|_| bad())?
            .into_string(),
    )))
}

pub fn page_token(orders: &[Order], limit: i64) -> String {
    match orders.last() {
        Some(last) if i64::try_from(orders.len()).unwrap_or(0) == limit => {
            format!("{}:{}", last.created_at_ms, last.order_id)
        }
        _ => String::new(),
    }
}

impl Mall {
    async fn submit(&self, mut order: NewOrder) -> Result<Order, MallError> {
        let order_id = order.order_id.to_string();
        // Each channel's lines are taken as its connector declares (DESIGN §12).
        order.holding = order
            .lines
            .iter()
            .map(|line| &line.channel_id)
            .filter(|channel| {
                self.health
                    .hold_ttl(&jifen_mesh::bus::subjects::channel_consumer(
                        channel.as_str(),
                    ))
                    .is_some()
            })
            .cloned()
            .collect();
        // A resubmission answers with the stored order, even if its points are spent since.
        if let Some(fingerprint) = self.store.fingerprint(&order_id).await? {
            return self.existing(&order, &fingerprint).await;
        }
        self.refuse_paused(&order)?;
        self.registry.check(&order).await?;
        match self.store.insert(&order).await? {
            Inserted::New(stored) => {
                self.relay.notify_one();
                self.changes.announce(&order_id);
                tracing::debug!(%order_id, lines = order.lines.len(), "order submitted");
                Ok(*stored)
            }
            Inserted::Existing(fingerprint) => self.existing(&order, &fingerprint).await,
        }
    }

    /// Refuses an order for a channel paused now, saying why and until when.
    fn refuse_paused(&self, order: &NewOrder) -> Result<(), MallError> {
        let now = jifen_mesh::time::now_unix_ms();
        for line in &order.lines {
            let channel_id = line.channel_id.as_str();
            let consumer = jifen_mesh::bus::subjects::channel_consumer(channel_id);
            if let Some(pause) = self.pauses.in_force(&consumer, now) {
                return Err(MallError::ChannelPaused {
                    channel_id: channel_id.to_owned(),
                    until: if pause.ends_at_ms == 0 {
                        "an operator resumes it".to_owned()
                    } else {
                        jifen_mesh::time::format_utc(pause.ends_at_ms)
                    },
                    note: pause.note,
                });
            }
        }
        Ok(())
    }

    async fn existing(&self, order: &NewOrder, fingerprint: &str) -> Result<Order, MallError> {
        if fingerprint != order.fingerprint() {
            return Err(MallError::Conflict(order.order_id.to_string()));
        }
        self.load(order.order_id.as_str()).await
    }

    async fn load(&self, order_id: &str) -> Result<Order, MallError> {
        self.store
            .find(order_id)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))
    }
}

type WatchStream = ReceiverStream<Result<WatchOrderResponse, Status>>;

#[tonic::async_trait]
impl MallService for Mall {
    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn submit_order(
        &self,
        request: Request<SubmitOrderRequest>,
    ) -> Result<Response<SubmitOrderResponse>, Status> {
        let order = NewOrder::parse(request.into_inner()).map_err(MallError::from)?;
        let order = self.submit(order).await?;
        Ok(Response::new(SubmitOrderResponse {
            order: Some(order_message(order)),
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let order_id =
            OrderId::parse("order_id", request.into_inner().order_id).map_err(MallError::from)?;
        let order = self.load(order_id.as_str()).await?;
        Ok(Response::new(GetOrderResponse {
            order: Some(order_message(order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let request = request.into_inner();
        let state = order_filter(request.state).map_err(MallError::from)?;
        let limit = page_size(request.page_size).map_err(MallError::from)?;
        let after = parse_page_token(&request.page_token).map_err(MallError::from)?;
        let orders = self
            .store
            .list_flagged(
                state.map_or(Selection::All, Selection::In),
                request.needs_attention,
                None,
                after,
                limit,
            )
            .await
            .map_err(MallError::from)?;
        let next_page_token = page_token(&orders, limit);
        Ok(Response::new(ListOrdersResponse {
            orders: orders.into_iter().map(order_message).collect(),
            next_page_token,
        }))
    }

    type WatchOrderStream = WatchStream;

    async fn watch_order(
        &self,
        request: Request<WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let order_id =
            OrderId::parse("order_id", request.into_inner().order_id).map_err(MallError::from)?;
        let order_id = order_id.into_string();
        // Subscribe before the first read: a change committed in between is then announced.
        let mut changes = self.changes.subscribe(&order_id);
        let first = self.load(&order_id).await?;
        let (tx, rx) = mpsc::channel(8);
        let mall = self.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let mut version = first.version;
            let mut terminal = first.state.is_terminal();
            if tx
                .send(Ok(WatchOrderResponse {
                    order: Some(order_message(first)),
                }))
                .await
                .is_err()
            {
                return;
            }
            // Changes made by this process are announced; other replicas' are caught by a poll
            // on a fixed schedule, which other orders' announcements never postpone.
            let mut poll = tokio::time::interval(WATCH_POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            poll.tick().await;
            while !terminal {
                tokio::select! {
                    () = changes.changed() => {}
                    // A poll reads the version only; the order when it moved.
                    _ = poll.tick() => match mall.store.version(&order_id).await {
                        Ok(Some(now)) if now == version => continue,
                        _ => {}
                    },
                    () = tx.closed() => return,
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the mall is shutting down; watch again"))).await;
                        return;
                    }
                }
                let order = match mall.load(&order_id).await {
                    Ok(order) => order,
                    Err(error) => {
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                };
                if order.version == version {
                    continue;
                }
                version = order.version;
                terminal = order.state.is_terminal();
                if tx
                    .send(Ok(WatchOrderResponse {
                        order: Some(order_message(order)),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_page_token(""), Ok(None));
        assert_eq!(parse_page_token("17:o-1"), Ok(Some((17, "o-1".to_owned()))));
        for bad in ["x", "x:o-1", "17:", "17:a b"] {
            assert_eq!(
                parse_page_token(bad).unwrap_err().field,
                "page_token",
                "{bad}"
            );
        }
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(10_000), Ok(MAX_PAGE_SIZE));
        assert!(page_size(-1).is_err());
    }
}
