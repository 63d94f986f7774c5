//! The worked examples of docs/channels.md, each a partner API nobody here would design, run
//! through the very config file the docs show (DESIGN §9): orders end to end with faults, and
//! `channel-check` against each.

use std::sync::atomic::Ordering;

use jifen_adapter::{AdapterConfig, CallKey, HttpChannel};
use jifen_channel::check;
use jifen_proto::v1::{DeductPointsRequest, OrderState};
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::partner::TradeState;
use jifen_tests::partner::gateway::Gateway;
use tonic::Code;

fn key<'a>(order_id: &'a str, user_id: &'a str, points: i64) -> CallKey<'a> {
    CallKey {
        order_id,
        user_id,
        points,
        captured: None,
    }
}

/// Cancels an order after its gamma line was deducted: alpha's connector waits while the user
/// spends all their alpha points elsewhere, so alpha rejects its line.
async fn submit_doomed(mesh: &mut TestMesh, order_id: &str, user: &str, gamma_points: i64) {
    mesh.stop_connector("alpha").await;
    mesh.submit(
        order_id,
        &[("gamma", user, gamma_points), ("alpha", user, 6_000)],
    )
    .await
    .unwrap();
    mesh.channel("alpha")
        .client
        .deduct_points(DeductPointsRequest {
            order_id: format!("elsewhere-{order_id}"),
            user_id: user.into(),
            points: START_POINTS,
        })
        .await
        .unwrap();
    mesh.start_connector("alpha").await;
}

#[tokio::test]
async fn a_signed_form_gateway_refunds_by_its_own_trade_no_through_faults() {
    let users = ["u1", "u2", "u3", "u4"];
    let doomed = ["d1", "d2"];
    let everyone = [&users[..], &doomed[..]].concat();
    let (gateway, served) = Gateway::start(&everyone, START_POINTS).await;
    let mut mesh = TestMesh::start(&["alpha"], &everyone).await;
    mesh.attach_http_channel("gamma", &served.base_url, served.config.clone())
        .await;
    let faults = &gateway.book.faults;
    faults.unavailable.store(3, Ordering::SeqCst);
    faults.lose_answer.store(3, Ordering::SeqCst);
    faults.delay_ms.store(20, Ordering::SeqCst);
    let mut spent = [0_i64; 4];
    for i in 0..12_usize {
        let points = 125 + i64::try_from(i).unwrap();
        mesh.submit(
            &format!("gw-{i}"),
            &[("gamma", users[i % 4], points), ("alpha", users[i % 4], 10)],
        )
        .await
        .unwrap();
        spent[i % 4] += points;
    }
    // Cancelled after gamma deducted: the reversal needs the gateway's trade_no.
    for (i, user) in doomed.iter().enumerate() {
        submit_doomed(&mut mesh, &format!("gw-doomed-{i}"), user, 300).await;
    }
    for i in 0..12 {
        let order = mesh.settled(&format!("gw-{i}")).await;
        assert_eq!(order.state(), OrderState::Completed, "{order:?}");
        let line = order
            .lines
            .iter()
            .find(|l| l.channel_id == "gamma")
            .unwrap();
        let trade_no = line.captured.get("trade_no").expect("the trade_no is kept");
        let trade = gateway.book.query_by_trade_no(trade_no).unwrap();
        assert_eq!(trade.state, TradeState::Done);
        assert_eq!(trade.points, line.points, "1.25 yuan is 125 points");
    }
    for (i, user) in doomed.iter().enumerate() {
        let order = mesh.settled(&format!("gw-doomed-{i}")).await;
        assert_eq!(order.state(), OrderState::Cancelled, "{order:?}");
        assert_eq!(
            gateway.book.points_of(user),
            Some(START_POINTS),
            "{user} got it back"
        );
    }
    assert_eq!(
        faults.unavailable.load(Ordering::SeqCst),
        0,
        "503s were met"
    );
    assert_eq!(
        faults.lose_answer.load(Ordering::SeqCst),
        0,
        "answers were lost"
    );
    for (user, spent) in users.iter().zip(spent) {
        assert_eq!(
            gateway.book.points_of(user),
            Some(START_POINTS - spent),
            "{user}: nothing taken twice, every cancelled order's points back"
        );
    }
    assert_eq!(gateway.book.held(), spent.iter().sum::<i64>());
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_refund_whose_deduct_answer_was_lost_learns_the_trade_no_from_the_query() {
    let (gateway, served) = Gateway::start(&["u1"], 1_000).await;
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    gateway.book.faults.lose_answer.store(1, Ordering::SeqCst);
    let lost = channel.deduct(key("o-lost", "u1", 250)).await.unwrap_err();
    assert_eq!(lost.code(), Code::Unknown, "{lost:?}");
    assert_eq!(gateway.book.points_of("u1"), Some(750), "it was applied");
    // The refund carries no trade_no: the query by our order number gives it.
    let refunded = channel.refund(key("o-lost", "u1", 250)).await.unwrap();
    assert_eq!(refunded.state, jifen_mesh::barrier::LedgerState::Refunded);
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
    // A refund of an order the gateway never saw gives nothing back, and says so.
    let never = channel.refund(key("o-never", "u1", 100)).await.unwrap_err();
    assert_eq!(never.code(), Code::NotFound, "{never:?}");
    // An order number is 32 characters there, whatever our ids: the key is hashed to fit.
    let long_order = "o-".repeat(60);
    let deducted = channel.deduct(key(&long_order, "u1", 100)).await.unwrap();
    assert_eq!(deducted.points, 100);
    assert!(deducted.captured.contains_key("trade_no"), "{deducted:?}");
}

#[tokio::test]
async fn a_request_signed_with_another_secret_or_stale_is_refused_not_applied() {
    let (gateway, served) = Gateway::start(&["u1"], 1_000).await;
    let text = std::fs::read_to_string(&served.config).unwrap();
    let dir = served.config.parent().unwrap();
    std::fs::write(dir.join("gateway-md5.key"), "another-secret").unwrap();
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    let refused = channel.deduct(key("o-1", "u1", 100)).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unknown,
        "an unmapped refusal is never a success"
    );
    assert!(refused.message().contains("40004"), "{refused:?}");
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
    // Stamped an hour off: the gateway refuses it, nothing is taken.
    std::fs::write(
        dir.join("gateway-md5.key"),
        jifen_tests::partner::gateway::SECRET,
    )
    .unwrap();
    let stale = text.replace("utc_offset = \"+08:00\"", "utc_offset = \"+09:00\"");
    std::fs::write(&served.config, stale).unwrap();
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    assert!(channel.deduct(key("o-2", "u1", 100)).await.is_err());
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
}

#[tokio::test]
async fn channel_check_passes_against_the_gateway_and_names_what_it_lacks() {
    let (_gateway, served) = Gateway::start(&["tester"], 10_000).await;
    let target = check::Target::http(&served.config).unwrap();
    let report = check::run_on(target, "tester", 5, "check-k-")
        .await
        .unwrap();
    let missing: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| !f.holds)
        .map(|f| f.guarantee)
        .collect();
    assert_eq!(
        missing,
        vec!["null_compensation", "anti_hanging"],
        "exactly what the example declares it lacks: {report:#?}"
    );
}
