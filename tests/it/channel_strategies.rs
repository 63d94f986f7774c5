//! Third-party REST channels through the adapter, end to end (DESIGN §9): orders flowing with
//! faults injected, and each capability strategy — an outcome nobody can know goes to an
//! operator, a channel without a refund call makes the refund an operator's task, a channel
//! without anti-hanging keeps nothing of a cancelled order.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jifen_mesh::capabilities::Capabilities;
use jifen_proto::v1::{
    Order, OrderState, RecordDeductOutcomeRequest, RecordManualRefundRequest, StepState,
};
use jifen_tests::http_channel::TestPointsApi;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::{TestMesh, eventually};
use tonic::Code;

use crate::admin::{admin, authed, dead_letters, one_dead_letter};

/// A mesh with channel alpha and a REST channel delta that lacks `lacking`.
async fn mesh_with_rest_channel(users: &[&str], lacking: &[&str]) -> (TestMesh, TestPointsApi) {
    let mut mesh = TestMesh::start(&["alpha"], users).await;
    let api = TestPointsApi::start(users, START_POINTS).await;
    let capabilities = Capabilities::without(lacking).unwrap();
    api.guarantee(capabilities);
    let config = api.config("delta", capabilities, "2s");
    let base_url = api.base_url.clone();
    mesh.attach_http_channel("delta", &base_url, config).await;
    (mesh, api)
}

fn line_state(order: &Order, channel_id: &str) -> StepState {
    order
        .lines
        .iter()
        .find(|l| l.channel_id == channel_id)
        .map(|l| l.state())
        .unwrap_or_default()
}

#[tokio::test]
async fn orders_flow_through_a_rest_channel_with_faults_and_nothing_is_lost() {
    let users = ["u1", "u2", "u3", "u4"];
    let (mut mesh, api) = mesh_with_rest_channel(&users, &[]).await;
    let faults = &api.api.faults;
    faults.unavailable.store(4, Ordering::SeqCst);
    faults.lose_answer.store(4, Ordering::SeqCst);
    faults.delay_ms.store(30, Ordering::SeqCst);
    let mut expected_spent = [0_i64; 4];
    for i in 0..24_usize {
        let user = users[i % 4];
        // Every sixth order asks more than the user holds at alpha: rejected at the pre-check.
        let alpha = if i % 6 == 5 { START_POINTS + 1 } else { 10 };
        let submitted = mesh
            .submit(
                &format!("rest-{i}"),
                &[("delta", user, 100), ("alpha", user, alpha)],
            )
            .await;
        if submitted.is_ok() {
            expected_spent[i % 4] += 100;
        }
    }
    for i in 0..24 {
        if i % 6 != 5 {
            let settled = mesh.settled(&format!("rest-{i}")).await;
            assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
        }
    }
    assert_eq!(
        faults.unavailable.load(Ordering::SeqCst),
        0,
        "the 503s were met"
    );
    assert_eq!(
        faults.lose_answer.load(Ordering::SeqCst),
        0,
        "answers were lost"
    );
    for (user, spent) in users.iter().zip(expected_spent) {
        assert_eq!(
            api.api.points_of(user),
            Some(START_POINTS - spent),
            "{user}: lost answers and redeliveries took nothing twice"
        );
    }
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_lost_answer_at_a_channel_that_cannot_repeat_or_be_asked_waits_for_the_operator() {
    let (mut mesh, api) = mesh_with_rest_channel(&["u1"], &["idempotent_deduct", "query"]).await;
    api.api.faults.lose_answer.store(1, Ordering::SeqCst);
    mesh.submit("unknown-1", &[("delta", "u1", 250), ("alpha", "u1", 10)])
        .await
        .unwrap();

    let mut admin = admin(&mut mesh).await;
    let letter = one_dead_letter(&admin, "unknown-1").await;
    assert_eq!(letter.kind, "outcome_unknown", "{letter:?}");
    assert!(letter.subject.ends_with("delta.deduct"), "{letter:?}");
    let flagged = mesh.order("unknown-1").await;
    assert!(flagged.needs_attention, "{flagged:?}");
    assert_eq!(flagged.state(), OrderState::Pending);
    assert_eq!(line_state(&flagged, "delta"), StepState::Pending);
    // Never sent again blindly: the one applied deduct stays the only one.
    assert_eq!(api.api.applied_deducts.load(Ordering::SeqCst), 1);
    assert_eq!(api.api.points_of("u1"), Some(START_POINTS - 250));

    // A redrive would be the blind repeat: refused.
    let redrive = admin
        .redrive_dead_letter(authed(jifen_proto::v1::RedriveDeadLetterRequest {
            id: letter.id.clone(),
            note: "the channel is back".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(redrive.code(), Code::FailedPrecondition, "{redrive:?}");
    // The operator looks at the channel, sees the deduct, and records it.
    let missing_note = admin
        .record_deduct_outcome(authed(RecordDeductOutcomeRequest {
            order_id: "unknown-1".into(),
            channel_id: "delta".into(),
            user_id: "u1".into(),
            deducted: true,
            note: "  ".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing_note.code(), Code::InvalidArgument);
    admin
        .record_deduct_outcome(authed(RecordDeductOutcomeRequest {
            order_id: "unknown-1".into(),
            channel_id: "delta".into(),
            user_id: "u1".into(),
            deducted: true,
            note: "deduction 4711 seen in the Delta back office".into(),
        }))
        .await
        .unwrap();
    let done = mesh.settled("unknown-1").await;
    assert_eq!(done.state(), OrderState::Completed, "{done:?}");
    assert!(!done.needs_attention);
    assert!(
        done.history
            .iter()
            .any(|h| h.kind == "admin_deduct_outcome" && h.detail.contains("4711"))
    );
    assert!(
        dead_letters(&mut admin, "unknown-1").await.is_empty(),
        "closed"
    );
    // Recorded once: a second call finds the line settled.
    let again = admin
        .record_deduct_outcome(authed(RecordDeductOutcomeRequest {
            order_id: "unknown-1".into(),
            channel_id: "delta".into(),
            user_id: "u1".into(),
            deducted: false,
            note: "changed my mind".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert_eq!(api.api.applied_deducts.load(Ordering::SeqCst), 1);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn an_unknown_outcome_the_operator_finds_not_deducted_cancels_the_order() {
    let (mut mesh, api) = mesh_with_rest_channel(&["u1"], &["idempotent_deduct", "query"]).await;
    // The request is lost before the API's books: no answer within the adapter's 2 s, so the
    // connector cannot know — though in truth nothing was taken.
    api.api.faults.swallow.store(1, Ordering::SeqCst);
    mesh.submit("unknown-2", &[("delta", "u1", 250), ("alpha", "u1", 10)])
        .await
        .unwrap();
    let mut admin = admin(&mut mesh).await;
    let letter = one_dead_letter(&admin, "unknown-2").await;
    assert_eq!(letter.kind, "outcome_unknown", "{letter:?}");
    assert!(letter.last_error.contains("DeadlineExceeded"), "{letter:?}");
    assert_eq!(api.api.points_of("u1"), Some(START_POINTS));
    admin
        .record_deduct_outcome(authed(RecordDeductOutcomeRequest {
            order_id: "unknown-2".into(),
            channel_id: "delta".into(),
            user_id: "u1".into(),
            deducted: false,
            note: "no deduction for unknown-2 in the back office".into(),
        }))
        .await
        .unwrap();
    let settled = mesh.settled("unknown-2").await;
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    assert!(!settled.needs_attention);
    assert!(settled.reason.contains("not deducted"), "{settled:?}");
    assert_eq!(line_state(&settled, "delta"), StepState::Rejected);
    assert!(dead_letters(&mut admin, "unknown-2").await.is_empty());
    assert_eq!(api.api.points_of("u1"), Some(START_POINTS));
    assert_eq!(api.api.applied_deducts.load(Ordering::SeqCst), 0);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_channel_without_a_refund_call_waits_for_a_manual_refund_then_settles() {
    let (mut mesh, api) = mesh_with_rest_channel(&["u1"], &["refund"]).await;
    mesh.submit_doomed("delta", "manual-1", "u1", 300).await;
    let waiting = mesh
        .order_when("manual-1", "to wait for a manual refund", |o| {
            line_state(o, "delta") == StepState::ManualRefund
        })
        .await;
    assert_eq!(
        waiting.state(),
        OrderState::Compensating,
        "it must not settle yet"
    );
    assert!(waiting.needs_attention);
    assert!(waiting.reason.contains("manual refund"), "{waiting:?}");
    assert_eq!(
        api.api.points_of("u1"),
        Some(START_POINTS - 300),
        "still held"
    );

    let mut admin = admin(&mut mesh).await;
    let not_waiting = admin
        .record_manual_refund(authed(RecordManualRefundRequest {
            order_id: "manual-1".into(),
            channel_id: "alpha".into(),
            user_id: "u1".into(),
            note: "wrong line".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        not_waiting.code(),
        Code::FailedPrecondition,
        "{not_waiting:?}"
    );

    // The operator gives the points back at the channel, then records it.
    api.api.credit_direct("u1", 300);
    let recorded = admin
        .record_manual_refund(authed(RecordManualRefundRequest {
            order_id: "manual-1".into(),
            channel_id: "delta".into(),
            user_id: "u1".into(),
            note: "credited 300 by hand, ticket OPS-12".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(recorded.state(), OrderState::Cancelled, "{recorded:?}");
    assert!(!recorded.needs_attention);
    assert_eq!(line_state(&recorded, "delta"), StepState::Refunded);
    assert!(
        recorded
            .history
            .iter()
            .any(|h| h.kind == "admin_manual_refund" && h.detail.contains("OPS-12"))
    );
    assert_eq!(api.api.points_of("u1"), Some(START_POINTS));
    assert_mesh_consistent(&mesh).await;
    // The channel still shows its deduction (it knows nothing of the hand refund): Reconcile
    // says who settled it, and reports no mismatch.
    let reconciled = admin
        .reconcile(authed(jifen_proto::v1::ReconcileRequest {
            order_id: "manual-1".into(),
            from_unix_ms: 0,
            to_unix_ms: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(reconciled.mismatches.is_empty(), "{reconciled:?}");
    assert_eq!(reconciled.operator_settled.len(), 1, "{reconciled:?}");
    assert_eq!(reconciled.operator_settled[0].key, "delta/u1");
    assert!(!reconciled.operator_settled[0].operator.is_empty());
}

#[tokio::test]
async fn a_rest_channel_without_anti_hanging_keeps_nothing_of_a_cancelled_order() {
    let users = ["u1"];
    let mut mesh = TestMesh::start(&["alpha"], &users).await;
    let api = TestPointsApi::start(&users, START_POINTS).await;
    let capabilities = Capabilities::without(&["null_compensation", "anti_hanging"]).unwrap();
    api.guarantee(capabilities);
    let config = api.config("delta", capabilities, "2s");
    // The deduct's first try meets a 503 and waits 3 s: the refund overtakes it.
    mesh.retry.backoff = vec![Duration::from_secs(3), Duration::from_millis(300)];
    let base_url = api.base_url.clone();
    mesh.attach_http_channel("delta", &base_url, config).await;
    api.api.faults.unavailable.store(1, Ordering::SeqCst);
    mesh.submit_doomed("delta", "hang-1", "u1", 300).await;
    let cancelled = mesh.settled("hang-1").await;
    assert_eq!(cancelled.state(), OrderState::Cancelled);
    eventually(
        "the late deduct to be refunded",
        Duration::from_secs(30),
        || async {
            (api.api.applied_deducts.load(Ordering::SeqCst) == 1
                && api.api.held_by("hang-1:") == 0
                && api.api.points_of("u1") == Some(START_POINTS))
            .then_some(())
        },
    )
    .await;
    let healed = mesh
        .order_when("hang-1", "the corrective refund to settle", |o| {
            line_state(o, "delta") == StepState::Refunded
        })
        .await;
    assert_eq!(healed.state(), OrderState::Cancelled);
    // The refund that found nothing did not cancel the order: the deduct on its way could
    // still land (it did), so the order was cancelled only once that deduct was given back.
    let position = |wanted: &str| {
        healed
            .history
            .iter()
            .position(|h| h.kind == wanted || h.detail.contains(wanted))
            .unwrap_or_else(|| panic!("{wanted} in {:?}", healed.history))
    };
    assert!(position("its outcome decides") < position("corrective_refund"));
    assert!(position("corrective_refund") < position("cancelled"));
    assert_mesh_consistent(&mesh).await;
}

/// The connector's handler on one delivery of a command for delta, as the consumer would
/// call it (`delivered` is the server's delivery count).
async fn handle(
    nats: &jifen_tests::TestNats,
    api: &TestPointsApi,
    capabilities: Capabilities,
    step: jifen_mesh::bus::subjects::Step,
    delivered: i64,
) -> jifen_mesh::bus::consume::Disposition {
    use jifen_mesh::bus::consume::{Delivery, Handler};
    use jifen_mesh::bus::publish::Publisher;
    use jifen_mesh::connector::Connector;
    let config =
        jifen_channel::adapter::AdapterConfig::load(&api.config("delta", capabilities, "2s"))
            .unwrap();
    let endpoint = jifen_channel::adapter::HttpChannel::new(config).unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bus = jifen_mesh::config::BusArgs::anonymous(nats.url(), 1);
    bus.topology().ensure(&js).await.unwrap();
    let connector = Connector::new(endpoint, Publisher::new(js));
    let command = jifen_mall::commands::points(step, "o-9", "delta", "u1", 40, "", 0);
    connector
        .handle(&Delivery {
            subject: command.subject.clone(),
            payload: command.payload.clone(),
            headers: None,
            delivered,
            stream_sequence: 1,
            span: tracing::Span::none(),
        })
        .await
}

#[tokio::test]
async fn a_deduct_redelivered_after_a_crash_is_never_repeated_blindly() {
    use jifen_mesh::bus::consume::Disposition;
    use jifen_mesh::bus::subjects::Step;
    let nats = jifen_tests::TestNats::start().await;
    let api = TestPointsApi::start(&["u1"], START_POINTS).await;
    let weak = Capabilities::without(&["idempotent_deduct", "query"]).unwrap();
    api.guarantee(weak);
    // A second delivery means an earlier attempt did not settle (the connector died mid-call):
    // it may have deducted, and nothing can tell.
    let second = handle(&nats, &api, weak, Step::Deduct, 2).await;
    assert!(
        matches!(&second, Disposition::OutcomeUnknown(why) if why.contains("delivered again")),
        "{second:?}"
    );
    assert_eq!(
        api.api.applied_deducts.load(Ordering::SeqCst),
        0,
        "not sent"
    );

    // Where the channel can be asked, the redelivery checks back and sends only if nothing is
    // recorded; where deducts are idempotent, sending again is safe.
    for lacking in [&["idempotent_deduct"][..], &["query"][..]] {
        let capabilities = Capabilities::without(lacking).unwrap();
        api.guarantee(capabilities);
        let answered = handle(&nats, &api, capabilities, Step::Deduct, 2).await;
        assert_eq!(answered, Disposition::Ack, "{lacking:?}");
    }
    assert_eq!(
        api.api.applied_deducts.load(Ordering::SeqCst),
        1,
        "taken once"
    );

    // A 503 is surely not applied: tried again in place, then a plain dead letter.
    api.guarantee(weak);
    api.api.faults.unavailable.store(2, Ordering::SeqCst);
    let retried = handle(&nats, &api, weak, Step::Deduct, 1).await;
    assert_eq!(retried, Disposition::Ack, "the third try went through");
    assert_eq!(api.api.points_of("u1"), Some(START_POINTS - 80));
}
