//! Operations that run themselves (issue 18): a ledger's health from its connector's calls,
//! redrive after recovery, pauses and maintenance windows, continuous reconciliation — over the
//! real admin API, the console and a real nats-server.

use std::time::Duration;

use async_nats::jetstream;
use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::subjects::{CMD_STREAM, RETRIES_EXHAUSTED, health_subject};
use jifen_proto::v1::admin_service_client::AdminServiceClient;
use jifen_proto::v1::{
    ChannelHealth, GetDeadLetterRequest, ListChannelHealthRequest, OrderState, PauseChannelRequest,
    ResumeChannelRequest, SetAutoRedriveRequest,
};
use jifen_tests::mesh::ADMIN_TOKEN;
use jifen_tests::{TestMesh, eventually};
use reqwest::StatusCode;
use tonic::Code;
use tonic::transport::Channel;

use crate::admin::{admin, authed, dead_letter_alpha};
use crate::assert_status;
use crate::console::Browser;

async fn health_of(admin: &AdminServiceClient<Channel>, channel_id: &str) -> ChannelHealth {
    admin
        .clone()
        .list_channel_health(authed(ListChannelHealthRequest {}))
        .await
        .unwrap()
        .into_inner()
        .channels
        .into_iter()
        .find(|c| c.channel_id == channel_id)
        .unwrap_or_else(|| panic!("{channel_id} is listed"))
}

async fn health_becomes(admin: &AdminServiceClient<Channel>, channel_id: &str, wanted: &str) {
    eventually(
        &format!("{channel_id} {wanted}"),
        Duration::from_secs(40),
        || async move { (health_of(admin, channel_id).await.health == wanted).then_some(()) },
    )
    .await;
}

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

/// Whether the server holds `consumer` paused.
async fn paused_at_server(js: &jetstream::Context, consumer: &str) -> bool {
    js.get_stream(CMD_STREAM)
        .await
        .unwrap()
        .consumer_info(consumer)
        .await
        .unwrap()
        .paused
}

#[tokio::test]
async fn a_paused_channel_takes_no_commands_refuses_orders_and_resumes() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    let mut admin = admin(&mut mesh).await;
    let js = jetstream::new(mesh.nats.connect_as(&Identity::Ops).await.unwrap());
    assert_status(
        admin
            .pause_channel(authed(PauseChannelRequest {
                channel_id: "alpha".into(),
                note: " ".into(),
                starts_at_unix_ms: 0,
                ends_at_unix_ms: 0,
            }))
            .await,
        Code::InvalidArgument,
        "note",
    );
    assert_status(
        admin
            .pause_channel(authed(PauseChannelRequest {
                channel_id: "zeta".into(),
                note: "no such channel".into(),
                starts_at_unix_ms: 0,
                ends_at_unix_ms: 0,
            }))
            .await,
        Code::NotFound,
        "zeta",
    );
    // An order already taken waits on the bus while the channel is paused.
    mesh.stop_connector("alpha").await;
    mesh.submit("p-1", &[("alpha", "u1", 100)]).await.unwrap();
    admin
        .pause_channel(authed(PauseChannelRequest {
            channel_id: "alpha".into(),
            note: "partner maintenance MNT-7".into(),
            starts_at_unix_ms: 0,
            ends_at_unix_ms: 0,
        }))
        .await
        .unwrap();
    let refused = mesh.submit("p-2", &[("alpha", "u1", 10)]).await;
    assert_status(refused, Code::Unavailable, "MNT-7");
    // Other channels take orders as before.
    mesh.submit("p-3", &[("beta", "u1", 10)]).await.unwrap();
    assert_eq!(mesh.settled("p-3").await.state(), OrderState::Completed);
    eventually("alpha's consumer paused", Duration::from_secs(20), || {
        let js = js.clone();
        async move { paused_at_server(&js, "channel-alpha").await.then_some(()) }
    })
    .await;
    // A connector starting meanwhile does not lift the pause for long.
    mesh.start_connector("alpha").await;
    eventually(
        "alpha's consumer still paused",
        Duration::from_secs(20),
        || {
            let js = js.clone();
            async move { paused_at_server(&js, "channel-alpha").await.then_some(()) }
        },
    )
    .await;
    let listed = health_of(&admin, "alpha").await;
    let pause = listed.pause.expect("the pause is listed");
    assert_eq!(pause.note, "partner maintenance MNT-7");
    assert_eq!(mesh.order("p-1").await.state(), OrderState::Pending);

    admin
        .resume_channel(authed(ResumeChannelRequest {
            channel_id: "alpha".into(),
            note: "MNT-7 over".into(),
        }))
        .await
        .unwrap();
    assert_eq!(mesh.settled("p-1").await.state(), OrderState::Completed);
    mesh.submit("p-4", &[("alpha", "u1", 10)]).await.unwrap();
    assert_eq!(mesh.settled("p-4").await.state(), OrderState::Completed);
    assert!(!paused_at_server(&js, "channel-alpha").await);
}

#[tokio::test]
async fn a_maintenance_window_declared_ahead_applies_and_ends_by_itself() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let mut admin = admin(&mut mesh).await;
    let now = jifen_mesh::time::now_unix_ms();
    let (starts, ends) = (now + 3_000, now + 8_000);
    assert_status(
        admin
            .pause_channel(authed(PauseChannelRequest {
                channel_id: "alpha".into(),
                note: "window".into(),
                starts_at_unix_ms: starts,
                ends_at_unix_ms: starts - 1,
            }))
            .await,
        Code::InvalidArgument,
        "ends_at",
    );
    admin
        .pause_channel(authed(PauseChannelRequest {
            channel_id: "alpha".into(),
            note: "announced window W-1".into(),
            starts_at_unix_ms: starts,
            ends_at_unix_ms: ends,
        }))
        .await
        .unwrap();
    assert_eq!(health_of(&admin, "alpha").await.windows_ahead.len(), 1);
    // Before the window: taken.
    if jifen_mesh::time::now_unix_ms() < starts - 500 {
        mesh.submit("w-1", &[("alpha", "u1", 10)]).await.unwrap();
    }
    // In it: refused, saying until when.
    let mut n = 0;
    let refused = eventually(
        "an order refused in the window",
        Duration::from_secs(20),
        || {
            n += 1;
            let id = format!("w-in-{n}");
            let mut client = mesh.mall().client.clone();
            async move {
                let request = jifen_tests::mesh::order_request(&id, &[("alpha", "u1", 10)]);
                client.submit_order(request).await.err()
            }
        },
    )
    .await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("W-1") && refused.message().contains("UTC"),
        "{refused:?}"
    );
    // After it: taken again, with nobody resuming anything.
    let mut m = 0;
    eventually(
        "an order taken after the window",
        Duration::from_secs(30),
        || {
            m += 1;
            let id = format!("w-after-{m}");
            let mut client = mesh.mall().client.clone();
            async move {
                let request = jifen_tests::mesh::order_request(&id, &[("alpha", "u1", 10)]);
                client.submit_order(request).await.ok()
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_pause_needs_a_confirmation_on_the_console() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let (status, asked) = browser
        .post(
            "/channels/alpha/pause",
            &[
                ("csrf", &csrf),
                ("note", "MNT-8"),
                ("starts", ""),
                ("ends", ""),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        asked.contains("Yes, pause") && asked.contains("refused"),
        "{asked}"
    );
    let admin = admin(&mut mesh).await;
    assert!(health_of(&admin, "alpha").await.pause.is_none());
    let (status, to) = browser
        .post(
            "/channels/alpha/pause",
            &[
                ("csrf", &csrf),
                ("note", "MNT-8"),
                ("starts", ""),
                ("ends", "2099-01-01T00:00"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.contains("ok="), "{to}");
    let (_, page) = browser.get("/channels").await;
    assert!(
        page.contains("MNT-8") && page.contains("2099-01-01 00:00:00 UTC"),
        "{page}"
    );
    let pause = health_of(&admin, "alpha").await.pause.unwrap();
    assert_eq!(pause.operator, "admin");
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
async fn a_drift_between_the_books_and_a_ledger_is_flagged_without_asking() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.routine.reconcile_after = Duration::from_millis(500);
    mesh.stop_mall().await;
    mesh.start_mall().await;
    mesh.submit("d-1", &[("alpha", "u1", 100)]).await.unwrap();
    assert_eq!(mesh.settled("d-1").await.state(), OrderState::Completed);
    // The partner reverses the deduction on its own: the books now differ.
    mesh.channel("alpha")
        .client
        .refund_points(jifen_proto::v1::RefundPointsRequest {
            order_id: "d-1".into(),
            user_id: "u1".into(),
        })
        .await
        .unwrap();
    let flagged = mesh
        .order_when("d-1", "flagged by the continuous reconciliation", |o| {
            o.needs_attention
        })
        .await;
    assert!(flagged.reason.contains("books differ"), "{flagged:?}");
    assert!(
        flagged.history.iter().any(|h| h.kind == "books_differ"),
        "{flagged:?}"
    );
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

#[tokio::test]
async fn a_deleted_stream_comes_back_and_the_orders_it_held_complete() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("z-1", &[("alpha", "u1", 100)]).await.unwrap();
    let js = jetstream::new(mesh.nats.connect_as(&Identity::Ops).await.unwrap());
    eventually("z-1's deduct on the bus", Duration::from_secs(20), || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream(CMD_STREAM).await.ok()?;
            let info = stream.info().await.ok()?;
            (info.state.messages >= 1).then_some(())
        }
    })
    .await;
    // Someone deletes the command stream with z-1's deduct in it.
    js.delete_stream(CMD_STREAM).await.unwrap();
    mesh.start_connector("alpha").await;
    let done = mesh.settled("z-1").await;
    assert_eq!(done.state(), OrderState::Completed);
    assert!(
        done.history.iter().any(|h| h.kind == "streams_recreated"),
        "{:?}",
        done.history
    );
    // Later orders go through the new stream.
    mesh.submit("z-2", &[("alpha", "u1", 10)]).await.unwrap();
    assert_eq!(mesh.settled("z-2").await.state(), OrderState::Completed);
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
