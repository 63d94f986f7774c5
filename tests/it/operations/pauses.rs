//! Pauses and maintenance windows: the connector takes nothing, new orders are refused, and it ends.

use std::time::Duration;

use async_nats::jetstream;
use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::subjects::CMD_STREAM;
use jifen_proto::v1::{OrderState, PauseChannelRequest, ResumeChannelRequest};
use jifen_tests::mesh::ADMIN_TOKEN;
use jifen_tests::{TestMesh, eventually};
use reqwest::StatusCode;
use tonic::Code;

use super::health_of;
use crate::admin::{admin, authed};
use crate::assert_status;
use crate::console::Browser;

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
