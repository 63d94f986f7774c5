//! The bus as an attacker inside the network sees it (DESIGN §11): a real nats-server with one
//! NKEY identity per process and the permissions `jifen nats-config` writes.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::subjects::{CMD_STREAM, MISMATCHED_EVENT, ORDER_ID_HEADER};
use jifen_proto::v1::{Deduction, DeductionState, OrderState, PointsOutcomeEvent, StepState};
use jifen_tests::mesh::START_POINTS;
use jifen_tests::{TestMesh, TestNats};
use prost::Message;

use crate::admin::{admin, authed, one_dead_letter};

/// A JetStream context that gives up on an unanswered request soon: a publish the server
/// refuses is never acknowledged.
async fn jetstream_as(nats: &TestNats, identity: &Identity) -> jetstream::Context {
    let client = nats
        .connect_as(identity)
        .await
        .unwrap_or_else(|e| panic!("{} connects: {e}", identity.name()));
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_millis(750));
    js
}

/// Publishes as a connector would (with the order's header); true once JetStream stored it.
async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) -> bool {
    let order_id = PointsOutcomeEvent::decode(payload.as_slice())
        .ok()
        .and_then(|e| e.deduction)
        .map(|d| d.order_id)
        .unwrap_or_default();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ORDER_ID_HEADER, order_id.as_str());
    match js
        .publish_with_headers(subject.to_owned(), headers, payload.into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

fn deducted(order_id: &str, channel_id: &str, points: i64) -> Vec<u8> {
    PointsOutcomeEvent {
        deduction: Some(Deduction {
            order_id: order_id.into(),
            channel_id: channel_id.into(),
            user_id: "alice".into(),
            points,
            state: DeductionState::Deducted.into(),
            reason: String::new(),
            updated_at_unix_ms: 0,
            hold_expires_at_unix_ms: 0,
        }),
        deduct_may_follow: false,
        captured: Default::default(),
        exchanges: Vec::new(),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn a_client_without_an_identity_is_refused() {
    let nats = TestNats::start_secured(&["alpha"]).await;
    let refused = jifen_mesh::bus::connect(&nats.url()).await;
    match refused {
        Err(jifen_mesh::bus::BusError::Connect { source, .. }) => assert_eq!(
            source.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation
        ),
        other => panic!("expected an authorization violation, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connector_identity_is_held_to_its_own_channel() {
    let nats = TestNats::start_secured(&["alpha", "beta"]).await;
    let mall = jetstream_as(&nats, &Identity::Mall).await;
    jifen_mesh::bus::topology::Topology::default()
        .ensure(&mall)
        .await
        .unwrap();
    let alpha = jetstream_as(&nats, &Identity::channel("alpha").unwrap()).await;

    assert!(
        publish(
            &alpha,
            "jifen.evt.channel.alpha.deducted",
            deducted("o", "alpha", 1)
        )
        .await,
        "alpha speaks for alpha"
    );
    assert!(
        !publish(
            &alpha,
            "jifen.evt.channel.beta.deducted",
            deducted("o", "beta", 1)
        )
        .await,
        "alpha cannot speak for beta"
    );
    assert!(
        !publish(&alpha, "jifen.cmd.channel.beta.deduct", b"x".to_vec()).await,
        "alpha cannot send commands"
    );
    assert!(
        !publish(&alpha, "jifen.dlq.JIFEN_CMD.channel-beta", b"x".to_vec()).await,
        "alpha cannot dead-letter beta's commands"
    );

    // A command for beta waits in the stream; alpha can neither read beta's group nor make a
    // group of its own name that filters on beta.
    assert!(publish(&mall, "jifen.cmd.channel.beta.deduct", b"beta's".to_vec()).await);
    let stream = alpha.get_stream(CMD_STREAM).await.unwrap();
    let as_beta = pull::Config {
        durable_name: Some("channel-beta".into()),
        filter_subject: "jifen.cmd.channel.beta.*".into(),
        ..Default::default()
    };
    assert!(stream.create_consumer(as_beta).await.is_err());
    let own_name_other_filter = pull::Config {
        durable_name: Some("channel-alpha".into()),
        filter_subject: "jifen.cmd.channel.beta.*".into(),
        ..Default::default()
    };
    assert!(stream.create_consumer(own_name_other_filter).await.is_err());
    let own = pull::Config {
        durable_name: Some("channel-alpha".into()),
        filter_subject: "jifen.cmd.channel.alpha.*".into(),
        ..Default::default()
    };
    assert!(stream.create_consumer(own).await.is_ok(), "its own group");

    // Nothing deletes or purges a stream, or another's consumer.
    assert!(alpha.delete_stream(CMD_STREAM).await.is_err());
    assert!(stream.purge().await.is_err());
    assert!(mall.delete_stream(CMD_STREAM).await.is_err());
    assert!(
        mall.get_stream(CMD_STREAM)
            .await
            .unwrap()
            .delete_consumer("channel-alpha")
            .await
            .is_err()
    );
    let mut kept = mall.get_stream(CMD_STREAM).await.unwrap();
    assert_eq!(
        kept.info().await.unwrap().state.messages,
        1,
        "beta's command is still there"
    );
}

#[tokio::test]
async fn a_forged_outcome_never_settles_a_line_it_does_not_own() {
    let nats = TestNats::start_secured(&["alpha", "beta"]).await;
    let mut mesh = TestMesh::start_on(nats, &["alpha", "beta"], &["alice"]).await;
    // Beta's real deduct is held.
    mesh.stop_connector("beta").await;
    mesh.submit("held-1", &[("alpha", "alice", 300), ("beta", "alice", 200)])
        .await
        .unwrap();
    mesh.order_when("held-1", "to have alpha's line deducted", |order| {
        order
            .lines
            .iter()
            .any(|l| l.channel_id == "alpha" && l.state() == StepState::Deducted)
    })
    .await;

    let alpha = jetstream_as(&mesh.nats, &Identity::channel("alpha").unwrap()).await;
    assert!(
        !publish(
            &alpha,
            "jifen.evt.channel.beta.deducted",
            deducted("held-1", "beta", 200)
        )
        .await,
        "the server refuses alpha on beta's subject"
    );
    // On its own subject alpha can say anything: the saga checks that it fits.
    assert!(
        publish(
            &alpha,
            "jifen.evt.channel.alpha.deducted",
            deducted("held-1", "beta", 200)
        )
        .await
    );
    let admin_client = admin(&mut mesh).await;
    let letter = one_dead_letter(&admin_client, "held-1").await;
    assert_eq!(letter.kind, MISMATCHED_EVENT, "{letter:?}");
    let redrive = admin_client
        .clone()
        .redrive_dead_letter(authed(jifen_proto::v1::RedriveDeadLetterRequest {
            id: letter.id.clone(),
            note: "the channel is back".into(),
        }))
        .await;
    assert_eq!(
        redrive.map(|_| ()).unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    let order = mesh.order("held-1").await;
    assert_eq!(order.state(), OrderState::Pending);
    assert!(
        order
            .lines
            .iter()
            .any(|l| l.channel_id == "beta" && l.state() != StepState::Deducted),
        "{order:?}"
    );
    assert_eq!(mesh.balance("beta", "alice").await, START_POINTS);

    // Beta's connector comes back: the real deduct settles the order.
    mesh.start_connector("beta").await;
    let order = mesh.settled("held-1").await;
    assert_eq!(order.state(), OrderState::Completed);
    assert_eq!(mesh.balance("alpha", "alice").await, START_POINTS - 300);
    assert_eq!(mesh.balance("beta", "alice").await, START_POINTS - 200);
}

#[tokio::test]
async fn over_tls_a_client_needs_the_cas_certificate_besides_its_identity() {
    let pki = jifen_tests::pki::TestPki::new();
    let nats = TestNats::start_secured_tls(&["alpha"], &pki).await;
    // As the prod overlay runs it: an NKEY, the CA, a client certificate.
    let mall = jetstream_as(&nats, &Identity::Mall).await;
    jifen_mesh::bus::topology::Topology::default()
        .ensure(&mall)
        .await
        .unwrap();
    assert!(publish(&mall, "jifen.cmd.channel.alpha.deduct", b"x".to_vec()).await);
    // The identity without the certificate: refused at the handshake.
    let mut without = nats.bus_for(&Identity::Mall);
    without.auth.nats_tls_cert = None;
    without.auth.nats_tls_key = None;
    assert!(jifen_mesh::bus::connect_as(&without, "mall").await.is_err());
    // The certificate without the identity: refused too.
    let mut anonymous = nats.bus_for(&Identity::Mall);
    anonymous.auth.nats_nkey = None;
    assert!(
        jifen_mesh::bus::connect_as(&anonymous, "mall")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_new_channel_is_one_command_and_a_reload_away() {
    let mut nats = TestNats::start_secured(&["alpha"]).await;
    let mall = jetstream_as(&nats, &Identity::Mall).await;
    jifen_mesh::bus::topology::Topology::default()
        .ensure(&mall)
        .await
        .unwrap();
    let alpha = jetstream_as(&nats, &Identity::channel("alpha").unwrap()).await;
    let gamma = Identity::channel("gamma").unwrap();
    assert!(nats.connect_as(&gamma).await.is_err(), "no identity yet");

    nats.add_channel_identity("gamma").await;
    let gamma = nats.connect_as(&gamma).await.unwrap();
    let mut gamma = jetstream::new(gamma);
    gamma.set_timeout(Duration::from_millis(750));
    assert!(
        publish(
            &gamma,
            "jifen.evt.channel.gamma.deducted",
            deducted("o", "gamma", 1)
        )
        .await,
        "the new connector speaks for its channel"
    );
    assert!(
        !publish(
            &gamma,
            "jifen.evt.channel.alpha.deducted",
            deducted("o", "alpha", 1)
        )
        .await,
        "and for no other"
    );
    assert!(
        publish(
            &alpha,
            "jifen.evt.channel.alpha.deducted",
            deducted("o", "alpha", 1)
        )
        .await,
        "alpha's connection went on through the reload"
    );
}
