//! The portal's registry, grants and quota barrier (DESIGN §3) observed over gRPC.

use jifen_proto::v1::{
    DeductQuotaRequest, GetChannelQuotaRequest, GetChannelQuotaResponse, GetQuotaDeductionRequest,
    GrantQuotaRequest, ListChannelsRequest, QuotaDeductionState, RefundQuotaRequest,
    RegisterChannelRequest,
};
use jifen_tests::TestPortal;
use jifen_tests::invariants::assert_portal_consistent;
use tonic::Code;

use crate::assert_status;

pub async fn register(portal: &mut TestPortal, channel_id: &str, quota: i64) {
    portal
        .client
        .register_channel(RegisterChannelRequest {
            channel_id: channel_id.to_owned(),
            name: format!("{channel_id} points"),
            endpoint: "http://127.0.0.1:1".to_owned(),
            kind: 0,
        })
        .await
        .unwrap();
    if quota > 0 {
        portal
            .client
            .grant_quota(GrantQuotaRequest {
                request_id: format!("grant-{channel_id}"),
                channel_id: channel_id.to_owned(),
                points: quota,
            })
            .await
            .unwrap();
    }
}

pub async fn quota(portal: &mut TestPortal, channel_id: &str) -> GetChannelQuotaResponse {
    portal
        .client
        .get_channel_quota(GetChannelQuotaRequest {
            channel_id: channel_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

pub fn deduct(order: &str, channel_id: &str, points: i64) -> DeductQuotaRequest {
    DeductQuotaRequest {
        order_id: order.to_owned(),
        channel_id: channel_id.to_owned(),
        points,
    }
}

pub fn refund(order: &str, channel_id: &str) -> RefundQuotaRequest {
    RefundQuotaRequest {
        order_id: order.to_owned(),
        channel_id: channel_id.to_owned(),
    }
}

#[tokio::test]
async fn registered_channels_are_listed_with_their_quota_and_can_be_updated() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "beta", 0).await;
    register(&mut portal, "alpha", 500).await;
    let updated = portal
        .client
        .register_channel(RegisterChannelRequest {
            channel_id: "alpha".into(),
            name: "Alpha Air".into(),
            endpoint: "http://10.0.0.7:50061".into(),
            kind: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    assert_eq!((updated.name.as_str(), updated.total), ("Alpha Air", 500));

    let channels = portal
        .client
        .list_channels(ListChannelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .channels;
    let listed: Vec<_> = channels
        .iter()
        .map(|c| {
            (
                c.channel_id.as_str(),
                c.endpoint.as_str(),
                c.total,
                c.remaining,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("alpha", "http://10.0.0.7:50061", 500, 500),
            ("beta", "http://127.0.0.1:1", 0, 0)
        ]
    );
}

#[tokio::test]
async fn grants_are_idempotent_by_request_id() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "alpha", 0).await;
    let grant = GrantQuotaRequest {
        request_id: "g-1".into(),
        channel_id: "alpha".into(),
        points: 700,
    };
    for _ in 0..3 {
        let after = portal
            .client
            .grant_quota(grant.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!((after.total, after.used, after.remaining), (700, 0, 700));
    }
    assert_status(
        portal
            .client
            .grant_quota(GrantQuotaRequest {
                points: 1,
                ..grant.clone()
            })
            .await,
        Code::AlreadyExists,
        "g-1",
    );
    assert_status(
        portal
            .client
            .grant_quota(GrantQuotaRequest {
                request_id: "g-2".into(),
                channel_id: "nope".into(),
                points: 1,
            })
            .await,
        Code::NotFound,
        "unknown channel nope",
    );
    assert_eq!(quota(&mut portal, "alpha").await.total, 700);
}

#[tokio::test]
async fn quota_deducts_once_refunds_once_and_refuses_a_hanging_deduct() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "alpha", 1_000).await;

    let first = portal
        .client
        .deduct_quota(deduct("o-1", "alpha", 400))
        .await
        .unwrap();
    let first = first.into_inner().quota_deduction.unwrap();
    assert_eq!(first.state(), QuotaDeductionState::Deducted);
    let again = portal
        .client
        .deduct_quota(deduct("o-1", "alpha", 400))
        .await
        .unwrap();
    assert_eq!(again.into_inner().quota_deduction.unwrap(), first);
    let q = quota(&mut portal, "alpha").await;
    assert_eq!((q.total, q.used, q.remaining), (1_000, 400, 600));

    for _ in 0..2 {
        let refunded = portal
            .client
            .refund_quota(refund("o-1", "alpha"))
            .await
            .unwrap();
        let refunded = refunded.into_inner().quota_deduction.unwrap();
        assert_eq!(
            (refunded.state(), refunded.points),
            (QuotaDeductionState::Refunded, 400)
        );
    }
    assert_eq!(quota(&mut portal, "alpha").await.used, 0);
    assert_status(
        portal
            .client
            .deduct_quota(deduct("o-1", "alpha", 400))
            .await,
        Code::Aborted,
        "already refunded",
    );

    // Null compensation, then the late deduct.
    let null = portal
        .client
        .refund_quota(refund("o-2", "alpha"))
        .await
        .unwrap();
    assert_eq!(null.into_inner().quota_deduction.unwrap().points, 0);
    assert_status(
        portal.client.deduct_quota(deduct("o-2", "alpha", 1)).await,
        Code::Aborted,
        "o-2",
    );
    assert_eq!(quota(&mut portal, "alpha").await.used, 0);
    assert_portal_consistent(&portal.quotas).await;
}

#[tokio::test]
async fn short_quota_and_unknown_channels_are_rejected_and_recorded() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "alpha", 100).await;

    assert_status(
        portal
            .client
            .deduct_quota(deduct("o-1", "alpha", 101))
            .await,
        Code::FailedPrecondition,
        "too little quota",
    );
    let recorded = portal
        .client
        .get_quota_deduction(GetQuotaDeductionRequest {
            order_id: "o-1".into(),
            channel_id: "alpha".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .quota_deduction
        .unwrap();
    assert_eq!(recorded.state(), QuotaDeductionState::Rejected);
    assert_eq!(recorded.reason, "insufficient quota");

    assert_status(
        portal.client.deduct_quota(deduct("o-1", "ghost", 1)).await,
        Code::NotFound,
        "unknown channel ghost",
    );
    assert_status(
        portal
            .client
            .get_channel_quota(GetChannelQuotaRequest {
                channel_id: "ghost".into(),
            })
            .await,
        Code::NotFound,
        "ghost",
    );
    // Exactly the remaining quota fits.
    portal
        .client
        .deduct_quota(deduct("o-2", "alpha", 100))
        .await
        .unwrap();
    let q = quota(&mut portal, "alpha").await;
    assert_eq!((q.used, q.remaining), (100, 0));
    assert_status(
        portal.client.deduct_quota(deduct("o-2", "alpha", 50)).await,
        Code::AlreadyExists,
        "100 points",
    );
    assert_portal_consistent(&portal.quotas).await;
}

#[tokio::test]
async fn a_declared_registry_is_applied_idempotently_and_its_quota_is_a_floor() {
    use jifen_mesh::domain::{ChannelId, DisplayName, Endpoint, Points};
    use jifen_portal::bootstrap::{DeclaredChannel, apply};
    let portal = TestPortal::start().await;
    let alpha = ChannelId::parse("channel_id", "alpha").unwrap();
    let declared = |quota: i64| {
        vec![DeclaredChannel {
            channel_id: alpha.clone(),
            name: DisplayName::parse("name", "Alpha").unwrap(),
            endpoint: Endpoint::parse("endpoint", "http://alpha:50061").unwrap(),
            quota: Some(Points::parse("quota", quota).unwrap()),
            kind: jifen_portal::quota::ChannelKind::Grpc,
        }]
    };
    apply(&portal.quotas, &declared(1_000)).await.unwrap();
    // A restart, or a second replica, applies the same file: nothing more is granted.
    apply(&portal.quotas, &declared(1_000)).await.unwrap();
    let record = portal.quotas.channel(&alpha).await.unwrap();
    assert_eq!(
        (record.total, record.endpoint.as_str()),
        (1_000, "http://alpha:50061")
    );
    // A grant by hand on top, then a file that asks for less: the total stays.
    apply(&portal.quotas, &declared(500)).await.unwrap();
    assert_eq!(portal.quotas.channel(&alpha).await.unwrap().total, 1_000);
    // A file that asks for more: the difference, once.
    apply(&portal.quotas, &declared(2_500)).await.unwrap();
    apply(&portal.quotas, &declared(2_500)).await.unwrap();
    assert_eq!(portal.quotas.channel(&alpha).await.unwrap().total, 2_500);
}
