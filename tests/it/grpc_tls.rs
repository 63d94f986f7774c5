//! TLS and mutual TLS on every gRPC hop (DESIGN §11), with real certificates of a test CA: a
//! whole mesh runs over mutual TLS; a client without a certificate, or in plain text, is
//! refused; health answers over TLS; a rotated certificate is served without a restart.

use std::time::Duration;

use jifen_mesh::config::ShutdownArgs;
use jifen_mesh::tls::TlsArgs;
use jifen_mesh::tls_io::GrpcTarget;
use jifen_portal::{PortalApp, PortalConfig};
use jifen_proto::v1::ListChannelsRequest;
use jifen_proto::v1::OrderState;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::pki::TestPki;
use jifen_tests::services::{Running, TestTls};
use jifen_tests::{TestDatabase, TestMesh, TestNats, eventually};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Whether the portal at `endpoint` answers ListChannels to a client with `tls`.
async fn portal_answers(endpoint: &str, tls: Option<&TlsArgs>) -> Result<(), String> {
    let client_tls = match tls {
        Some(args) => args.client().map_err(|e| e.to_string())?,
        None => None,
    };
    let channel = GrpcTarget::new(endpoint, client_tls.as_ref())
        .map_err(|e| e.to_string())?
        .timeouts(Duration::from_secs(2), Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| jifen_mesh::telemetry::chain(&e))?;
    PortalServiceClient::new(channel)
        .list_channels(ListChannelsRequest {})
        .await
        .map(drop)
        .map_err(|s| s.to_string())
}

#[tokio::test]
async fn a_whole_mesh_runs_over_mutual_tls() {
    let pki = TestPki::new();
    let tls = TestTls::new(&pki);
    let mut mesh = TestMesh::start_with(
        TestNats::start().await,
        &["alpha", "beta"],
        &["alice"],
        Some(tls.clone()),
    )
    .await;
    mesh.submit("tls-1", &[("alpha", "alice", 300), ("beta", "alice", 200)])
        .await
        .unwrap();
    assert_eq!(mesh.settled("tls-1").await.state(), OrderState::Completed);
    assert_eq!(mesh.balance("alpha", "alice").await, START_POINTS - 300);
    assert_eq!(mesh.balance("beta", "alice").await, START_POINTS - 200);

    let portal = mesh.portal.server.endpoint();
    assert!(portal.starts_with("https://"), "{portal}");
    // With the service's certificate: served.
    portal_answers(&portal, Some(&tls.args)).await.unwrap();
    // Trusting the CA but presenting no certificate: refused under mutual TLS.
    let no_certificate = TlsArgs {
        tls_ca: Some(pki.ca_file.clone()),
        ..TlsArgs::default()
    };
    assert!(
        portal_answers(&portal, Some(&no_certificate))
            .await
            .is_err()
    );
    // Plain text to a TLS port: refused.
    let plain = portal.replace("https://", "http://");
    assert!(portal_answers(&plain, None).await.is_err());
    // A certificate of another CA: refused.
    let stranger = TestTls::new(&TestPki::new());
    let mut other = stranger.args.clone();
    other.tls_ca = Some(pki.ca_file.clone());
    assert!(portal_answers(&portal, Some(&other)).await.is_err());

    // Health answers over TLS (probes and grpcurl use it).
    let mut health = HealthClient::new(mesh.mall().server.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: "jifen.v1.MallService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");
}

#[tokio::test]
async fn an_expired_certificate_is_replaced_without_a_restart() {
    let pki = TestPki::new();
    let expired = pki.issue("portal", true);
    let db = TestDatabase::create("portal").await;
    let probes = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = PortalApp::build(PortalConfig {
        tls: TlsArgs {
            tls_cert: Some(expired.cert.clone()),
            tls_key: Some(expired.key.clone()),
            plain_health_listen: Some(probes),
            ..TlsArgs::default()
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url().to_owned(),
        db_max_connections: jifen_tests::services::TEST_POOL_SIZE,
        hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
        channels_file: None,
        shutdown: ShutdownArgs {
            shutdown_grace_secs: 0,
        },
    })
    .await
    .unwrap();
    let endpoint = format!("https://{}", app.local_addr());
    let mut server = Running::spawn(app.local_addr(), |token| app.run_until(token));
    let client = TlsArgs {
        tls_ca: Some(pki.ca_file.clone()),
        ..TlsArgs::default()
    };
    let refused = portal_answers(&endpoint, Some(&client)).await.unwrap_err();
    assert!(refused.to_lowercase().contains("expired"), "{refused}");
    // Kubelet's probes speak no TLS: the plain-text health port answers health, and only it.
    let plain = GrpcTarget::new(&format!("http://{probes}"), None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(plain.clone())
        .check(HealthCheckRequest {
            service: "jifen.v1.PortalService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");
    let not_there = PortalServiceClient::new(plain)
        .list_channels(ListChannelsRequest {})
        .await
        .unwrap_err();
    assert_eq!(not_there.code(), tonic::Code::Unimplemented);

    // The certificate is renewed in place, as cert-manager does with a Secret.
    pki.issue("portal", false);
    eventually("the renewed certificate", Duration::from_secs(15), || {
        let (endpoint, client) = (endpoint.clone(), client.clone());
        async move { portal_answers(&endpoint, Some(&client)).await.ok() }
    })
    .await;
    server.stop().await;
}
