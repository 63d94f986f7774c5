//! The operator's order-level tools over the admin API: stuck orders, reconciliation against
//! the ledgers, and re-sending an order's open commands.

use std::time::Duration;

use jifen_proto::v1::{GetOrderRequest, ListStuckOrdersRequest, OrderState, ReconcileRequest};
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::{TestMesh, eventually};
use tonic::Code;

use crate::admin::{admin, authed};
use crate::assert_status;

/// Waits until the overdue sweeper has flagged `order_id`.
async fn flagged_by_the_sweeper(mesh: &mut TestMesh, order_id: &str) {
    let client = mesh.mall().client.clone();
    eventually(
        &format!("the sweeper flags {order_id}"),
        Duration::from_secs(10),
        || {
            let mut client = client.clone();
            async move {
                let order = client
                    .get_order(GetOrderRequest {
                        order_id: order_id.into(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .order?;
                order.needs_attention.then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn stuck_orders_are_listed_and_flagged_after_their_deadline() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.stop_mall().await;
    mesh.stuck_after = Duration::from_millis(300);
    mesh.start_mall().await;
    mesh.submit("o-1", &[("alpha", "u1", 5)]).await.unwrap();
    // Its quota is not asked for before its line is deducted: the API says so as the console
    // does.
    let waiting = mesh.order("o-1").await;
    assert_eq!(
        waiting.quotas[0].state(),
        jifen_proto::v1::StepState::Waiting,
        "{waiting:?}"
    );
    let mut admin = admin(&mut mesh).await;
    let stuck = admin
        .list_stuck_orders(authed(ListStuckOrdersRequest {
            older_than_seconds: 0,
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(
        stuck
            .iter()
            .map(|o| o.order_id.as_str())
            .collect::<Vec<_>>(),
        ["o-1"]
    );
    flagged_by_the_sweeper(&mut mesh, "o-1").await;
    let later = admin
        .list_stuck_orders(authed(ListStuckOrdersRequest {
            older_than_seconds: 3600,
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert!(later.is_empty());
    mesh.start_connector("alpha").await;
    // Settled by itself: nothing needs an operator, so the flag goes, and the history says so.
    let settled = mesh.settled("o-1").await;
    assert_eq!(settled.state(), OrderState::Completed);
    assert!(!settled.needs_attention, "{settled:?}");
    assert!(
        settled
            .history
            .iter()
            .any(|h| h.kind == "attention_cleared"),
        "{:?}",
        settled.history
    );
    eventually(
        "the needs-attention gauge to drop",
        Duration::from_secs(15),
        || async { (jifen_mesh::metrics::ORDERS_NEEDING_ATTENTION.get() == 0).then_some(()) },
    )
    .await;
}

/// Reconciles one order, or every order with `""`.
async fn reconcile(
    admin: &mut jifen_proto::v1::admin_service_client::AdminServiceClient<
        tonic::transport::Channel,
    >,
    order_id: &str,
) -> jifen_proto::v1::ReconcileResponse {
    admin
        .reconcile(authed(ReconcileRequest {
            order_id: order_id.into(),
            from_unix_ms: 0,
            to_unix_ms: 0,
        }))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn reconcile_finds_a_mismatch_planted_in_a_channel_database() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.submit("o-1", &[("alpha", "u1", 10), ("beta", "u1", 20)])
        .await
        .unwrap();
    mesh.submit("o-2", &[("alpha", "u1", 1)]).await.unwrap();
    mesh.settled("o-1").await;
    mesh.settled("o-2").await;
    let mut admin = admin(&mut mesh).await;
    let clean = reconcile(&mut admin, "").await;
    assert_eq!((clean.orders_checked, clean.mismatches.len()), (2, 0));

    sqlx::query("UPDATE deductions SET state = 'REFUNDED' WHERE order_id = 'o-1'")
        .execute(mesh.channels["alpha"].ledger.database().pool())
        .await
        .unwrap();
    let found = reconcile(&mut admin, "o-1").await;
    assert_eq!(found.orders_checked, 1);
    assert_eq!(found.mismatches.len(), 1, "{:?}", found.mismatches);
    let mismatch = &found.mismatches[0];
    assert_eq!(
        (
            mismatch.order_id.as_str(),
            mismatch.system.as_str(),
            mismatch.key.as_str()
        ),
        ("o-1", "channel:alpha", "alpha/u1")
    );
    assert!(mismatch.actual.contains("REFUNDED"), "{mismatch:?}");

    // A channel that cannot be asked leaves its keys unchecked, said once; the rest is still
    // compared.
    mesh.channel("beta").stop().await;
    let partial = reconcile(&mut admin, "").await;
    assert_eq!(partial.orders_checked, 2);
    assert_eq!(partial.mismatches.len(), 1, "{:?}", partial.mismatches);
    assert_eq!(partial.unchecked.len(), 1, "{:?}", partial.unchecked);
    assert_eq!(
        (
            partial.unchecked[0].system.as_str(),
            partial.unchecked[0].keys
        ),
        ("channel:beta", 1)
    );
}

#[tokio::test]
async fn retry_order_sends_the_open_commands_again_and_they_take_effect_once() {
    use jifen_proto::v1::RetryOrderRequest;
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("o-1", &[("alpha", "u1", 40)]).await.unwrap();
    let mut admin = admin(&mut mesh).await;
    let order = admin
        .retry_order(authed(RetryOrderRequest {
            order_id: "o-1".into(),
            note: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert!(
        order
            .history
            .iter()
            .any(|h| h.kind == "admin_retry" && h.detail == "1 open command(s) sent again")
    );
    // The original deduct and its re-sent copy both reach alpha: the barrier takes it once.
    mesh.start_connector("alpha").await;
    assert_eq!(mesh.settled("o-1").await.state(), OrderState::Completed);
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 40);
    assert_status(
        admin
            .retry_order(authed(RetryOrderRequest {
                order_id: "o-1".into(),
                note: String::new(),
            }))
            .await,
        Code::FailedPrecondition,
        "COMPLETED",
    );
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn an_operator_clears_a_flag_with_a_note_and_only_a_flag() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.stop_mall().await;
    mesh.stuck_after = Duration::from_millis(300);
    mesh.start_mall().await;
    mesh.submit("o-flag", &[("alpha", "u1", 5)]).await.unwrap();
    let mut admin = admin(&mut mesh).await;
    flagged_by_the_sweeper(&mut mesh, "o-flag").await;
    let clear = |note: &str| {
        authed(jifen_proto::v1::ClearAttentionRequest {
            order_id: "o-flag".into(),
            note: note.into(),
        })
    };
    assert_status(
        admin.clear_attention(clear("  ")).await,
        Code::InvalidArgument,
        "note",
    );
    let cleared = admin
        .clear_attention(clear("alpha's outage is known, ticket OPS-7"))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert!(!cleared.needs_attention);
    let entry = cleared
        .history
        .iter()
        .find(|h| h.kind == "attention_cleared")
        .expect("a history line");
    assert!(entry.detail.contains("OPS-7"), "{entry:?}");
    assert!(!entry.actor.is_empty(), "the operator is named: {entry:?}");
    assert_status(
        admin.clear_attention(clear("again")).await,
        Code::FailedPrecondition,
        "not flagged",
    );
    mesh.start_connector("alpha").await;
    assert_eq!(mesh.settled("o-flag").await.state(), OrderState::Completed);
}
