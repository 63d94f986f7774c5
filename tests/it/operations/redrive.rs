//! A channel's health from its connector's calls, and the redrive after its recovery.

use std::time::Duration;

use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::subjects::{RETRIES_EXHAUSTED, health_subject};
use jifen_proto::v1::{GetDeadLetterRequest, OrderState, SetAutoRedriveRequest};
use jifen_tests::mesh::ADMIN_TOKEN;
use jifen_tests::{TestMesh, eventually};
use tonic::Code;

use super::{health_becomes, health_of};
use crate::admin::{admin, authed, dead_letter_alpha};
use crate::assert_status;
use crate::console::Browser;

#[tokio::test]
async fn a_partner_outage_from_start_to_recovery_needs_nobody() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.routine.auto_redrive_after = Duration::from_secs(1);
    mesh.stop_mall().await;
    mesh.start_mall().await;
    let admin = admin(&mut mesh).await;
    health_becomes(&admin, "alpha", "up").await;

    // Alpha goes away: its commands are dead-lettered, as ones that surely did not apply.
    let (letter, _) = dead_letter_alpha(&mut mesh).await;
    assert_eq!(letter.kind, RETRIES_EXHAUSTED, "{letter:?}");
    health_becomes(&admin, "alpha", "down").await;
    let down = health_of(&admin, "alpha").await;
    assert!(down.failed >= 3, "{down:?}");
    assert!(!down.last_error.is_empty(), "{down:?}");
    assert_eq!(down.open_dead_letters, 1, "{down:?}");
    assert_eq!(down.answering_since_unix_ms, 0, "{down:?}");
    // The console shows it, and the page refreshes itself.
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;
    let (_, page) = browser.get("/channels").await;
    assert!(
        page.contains("h-down") && page.contains("http-equiv=\"refresh\"") && page.contains("<svg"),
        "{page}"
    );
    // Nothing is redriven while it is down.
    let still = mesh.order("o-1").await;
    assert_eq!(still.state(), OrderState::Pending);

    // Alpha is back: the connector's probe sees it, and the mall redrives by itself.
    mesh.channel("alpha").restart().await;
    let done = mesh.settled("o-1").await;
    assert_eq!(done.state(), OrderState::Completed);
    let redrive = done
        .history
        .iter()
        .find(|h| h.kind == "admin_redrive")
        .expect("the redrive is in the order's history");
    assert!(redrive.actor.contains("auto-redrive"), "{redrive:?}");
    assert!(redrive.detail.contains("automatic"), "{redrive:?}");
    let closed = admin
        .clone()
        .get_dead_letter(authed(GetDeadLetterRequest {
            id: letter.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .dead_letter
        .unwrap();
    assert_eq!(closed.state, "REDRIVEN");
    health_becomes(&admin, "alpha", "degraded").await;
    let recovered = health_of(&admin, "alpha").await;
    assert!(recovered.answering_since_unix_ms > 0, "{recovered:?}");
    assert_eq!(recovered.open_dead_letters, 0, "{recovered:?}");
}

#[tokio::test]
async fn automatic_redrive_can_be_switched_off_per_channel() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.routine.auto_redrive_after = Duration::from_secs(1);
    mesh.stop_mall().await;
    mesh.start_mall().await;
    let mut admin = admin(&mut mesh).await;
    assert_status(
        admin
            .set_auto_redrive(authed(SetAutoRedriveRequest {
                channel_id: "alpha".into(),
                enabled: false,
                note: String::new(),
            }))
            .await,
        Code::InvalidArgument,
        "note",
    );
    admin
        .set_auto_redrive(authed(SetAutoRedriveRequest {
            channel_id: "alpha".into(),
            enabled: false,
            note: "alpha double-books on retries, OPS-9".into(),
        }))
        .await
        .unwrap();
    assert!(!health_of(&admin, "alpha").await.auto_redrive);
    let (letter, _) = dead_letter_alpha(&mut mesh).await;
    mesh.channel("alpha").restart().await;
    // Answering again, and long enough for a redrive — which does not come.
    eventually("alpha answering for 3 s", Duration::from_secs(40), || {
        let admin = admin.clone();
        async move {
            let since = health_of(&admin, "alpha").await.answering_since_unix_ms;
            (since > 0 && jifen_mesh::time::now_unix_ms() - since > 3_000).then_some(())
        }
    })
    .await;
    let open = admin
        .get_dead_letter(authed(GetDeadLetterRequest { id: letter.id }))
        .await
        .unwrap()
        .into_inner()
        .dead_letter
        .unwrap();
    assert_eq!(open.state, "OPEN");
}

#[tokio::test]
async fn a_compensating_orders_deduct_is_never_redriven_automatically() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.routine.auto_redrive_after = Duration::from_secs(1);
    mesh.stop_mall().await;
    mesh.start_mall().await;
    let mut admin = admin(&mut mesh).await;
    let (deduct, _) = dead_letter_alpha(&mut mesh).await;
    // The order compensates and stays so: beta's refund waits for its connector.
    mesh.stop_connector("beta").await;
    admin
        .compensate_order(authed(jifen_proto::v1::CompensateOrderRequest {
            order_id: "o-1".into(),
            reason: "customer gave up while alpha was down".into(),
        }))
        .await
        .unwrap();
    // alpha is back and answers long enough for the automatic redrive to run a few rounds.
    mesh.channel("alpha").restart().await;
    eventually("alpha answering for 6 s", Duration::from_secs(40), || {
        let admin = admin.clone();
        async move {
            let since = health_of(&admin, "alpha").await.answering_since_unix_ms;
            (since > 0 && jifen_mesh::time::now_unix_ms() - since > 6_000).then_some(())
        }
    })
    .await;
    assert_eq!(mesh.order("o-1").await.state(), OrderState::Compensating);
    let letter = admin
        .get_dead_letter(authed(GetDeadLetterRequest {
            id: deduct.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .dead_letter
        .unwrap();
    assert_eq!(letter.state, "OPEN", "{letter:?}");
    mesh.start_connector("beta").await;
    assert_eq!(mesh.settled("o-1").await.state(), OrderState::Cancelled);
}

#[tokio::test]
async fn a_connector_speaks_only_for_its_own_health() {
    use futures_util::StreamExt as _;
    let mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    let ops = mesh.nats.connect_as(&Identity::Ops).await.unwrap();
    let mut reports = ops.subscribe("jifen.health.>").await.unwrap();
    ops.flush().await.unwrap();
    let alpha = mesh
        .nats
        .connect_as(&Identity::channel("alpha").unwrap())
        .await
        .unwrap();
    // A forged report for beta, then a marker on alpha's own subject: the server delivers one
    // publisher's messages in order, so the forgery would arrive before the marker.
    alpha
        .publish(health_subject("channel-beta"), b"forged".as_ref().into())
        .await
        .unwrap();
    alpha
        .publish(health_subject("channel-alpha"), b"marker".as_ref().into())
        .await
        .unwrap();
    alpha.flush().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        let mut forged = false;
        while let Some(message) = reports.next().await {
            if message.payload.as_ref() == b"forged" {
                forged = true;
            }
            if message.payload.as_ref() == b"marker" {
                return forged;
            }
        }
        panic!("the subscription ended");
    })
    .await
    .expect("alpha's own report arrives");
    assert!(!seen, "a connector published another's health");
}

#[tokio::test]
async fn a_waiting_line_shows_its_attempt_last_error_and_next_try() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("r-1", &[("alpha", "u1", 100)]).await.unwrap();
    mesh.channel("alpha").stop().await;
    mesh.start_connector("alpha").await;
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;
    let page = eventually(
        "the line's retry on its page",
        Duration::from_secs(30),
        || {
            let browser = &browser;
            async move {
                let (_, page) = browser.get("/orders/r-1").await;
                (page.contains("attempt ") && page.contains("last error:")).then_some(page)
            }
        },
    )
    .await;
    assert!(page.contains(" of 50, next "), "{page}");
    mesh.channel("alpha").restart().await;
    assert_eq!(mesh.settled("r-1").await.state(), OrderState::Completed);
}
