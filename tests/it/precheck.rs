//! The pre-check's shared quota read (DESIGN §2, §6): concurrent orders at one channel share
//! one read of its quota at the portal, a failed read included, so that a portal that hangs
//! costs the checks waiting on it one deadline rather than one each in turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use jifen_mall::MallApp;
use jifen_proto::v1::OrderState;
use jifen_proto::v1::mall_service_client::MallServiceClient;
use jifen_tests::TestMesh;
use jifen_tests::mesh::{START_QUOTA, order_request};
use jifen_tests::services::Running;
use tonic::Code;

/// A portal that takes calls and never answers them, counting each by method.
async fn silent_portal() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let quota_reads = Arc::new(AtomicUsize::new(0));
    let counted = quota_reads.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                let mut unanswered = Vec::new();
                while let Some(Ok((request, respond))) = connection.accept().await {
                    if request.uri().path().ends_with("/GetChannelQuota") {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    unanswered.push(respond);
                }
            });
        }
    });
    (endpoint, quota_reads)
}

#[tokio::test]
async fn orders_waiting_on_a_silent_portal_share_one_quota_read_and_fail_together() {
    let mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let (portal, quota_reads) = silent_portal().await;
    let mut config = mesh.mall_config();
    config.portal_endpoint = portal;
    config.call_timeout = Duration::from_millis(500);
    let app = MallApp::build(config).await.unwrap();
    let server = Running::spawn(app.local_addr(), |token| app.run_until(token));
    let client = MallServiceClient::new(server.channel().await);
    let answers = join_all((0..8).map(|i| {
        let mut client = client.clone();
        async move {
            client
                .submit_order(order_request(
                    &format!("silent-{i}"),
                    &[("alpha", "u1", 10)],
                ))
                .await
        }
    }))
    .await;
    for answer in &answers {
        let status = answer
            .as_ref()
            .expect_err("no order passes a silent portal");
        assert!(
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{status:?}"
        );
    }
    assert_eq!(
        quota_reads.load(Ordering::SeqCst),
        1,
        "the eight checks asked the portal for alpha's quota once"
    );
}

#[tokio::test]
async fn a_short_quota_read_is_read_again_before_it_refuses_an_order() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.portal
        .client
        .deduct_quota(jifen_proto::v1::DeductQuotaRequest {
            order_id: "elsewhere".into(),
            channel_id: "alpha".into(),
            points: START_QUOTA - 5,
        })
        .await
        .unwrap();
    let refused = mesh
        .submit("q-1", &[("alpha", "u1", 10)])
        .await
        .expect_err("the portal holds 5 of alpha's quota, the order needs 10");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("quota"), "{refused:?}");
    // The shared read says 5; a grant lands right after it. The next order is not refused on
    // the shared read but on one made after it arrived, which finds the grant.
    mesh.portal
        .client
        .grant_quota(jifen_proto::v1::GrantQuotaRequest {
            request_id: "more".into(),
            channel_id: "alpha".into(),
            points: 100,
        })
        .await
        .unwrap();
    mesh.submit("q-2", &[("alpha", "u1", 10)])
        .await
        .expect("taken on a read made after the grant");
    assert_eq!(mesh.settled("q-2").await.state(), OrderState::Completed);
}
