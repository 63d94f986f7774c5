//! The barrier under concurrency: identical calls, racing deduct and refund, contention for
//! the last points, and random interleavings — the ledger must always add up.

use jifen_proto::v1::{DeductionState, GetDeductionRequest, QuotaDeductionState};
use jifen_tests::invariants::{assert_channel_consistent, assert_portal_consistent};
use jifen_tests::{TestChannel, TestPortal};
use tokio::task::JoinSet;
use tonic::Code;

use crate::channel_barrier::{balance, credit, deduct, refund};
use crate::portal_barrier::{self, quota, register};

#[tokio::test]
async fn fifty_concurrent_identical_deducts_deduct_once() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    let mut calls = JoinSet::new();
    for _ in 0..50 {
        let mut client = channel.client.clone();
        calls.spawn(async move { client.deduct_points(deduct("o-1", "alice", 30)).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = calls.join_next().await {
        answers.push(answer.unwrap().unwrap().into_inner().deduction.unwrap());
    }
    assert_eq!(answers.len(), 50);
    assert!(
        answers.iter().all(|d| d == &answers[0]),
        "one recorded outcome for all"
    );
    assert_eq!(answers[0].state(), DeductionState::Deducted);
    assert_eq!(balance(&mut channel, "alice").await, 970);
    assert_channel_consistent(&channel.ledger).await;
}

#[tokio::test]
async fn fifty_concurrent_identical_quota_deducts_deduct_once() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "alpha", 1_000).await;
    let mut calls = JoinSet::new();
    for _ in 0..50 {
        let mut client = portal.client.clone();
        calls.spawn(async move {
            client
                .deduct_quota(portal_barrier::deduct("o-1", "alpha", 30))
                .await
        });
    }
    while let Some(answer) = calls.join_next().await {
        let answer = answer
            .unwrap()
            .unwrap()
            .into_inner()
            .quota_deduction
            .unwrap();
        assert_eq!(
            (answer.state(), answer.points),
            (QuotaDeductionState::Deducted, 30)
        );
    }
    assert_eq!(quota(&mut portal, "alpha").await.used, 30);
    assert_portal_consistent(&portal.quotas).await;
}

#[tokio::test]
async fn racing_deduct_and_refund_always_end_refunded_with_the_balance_whole() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 10_000).await;
    let mut calls = JoinSet::new();
    for i in 0..30 {
        let order = format!("o-{i}");
        let mut deducter = channel.client.clone();
        let mut refunder = channel.client.clone();
        let (o1, o2) = (order.clone(), order);
        calls.spawn(async move {
            deducter
                .deduct_points(deduct(&o1, "alice", 7))
                .await
                .map(|_| ())
        });
        calls.spawn(async move {
            refunder
                .refund_points(refund(&o2, "alice"))
                .await
                .map(|_| ())
        });
    }
    while let Some(answer) = calls.join_next().await {
        match answer.unwrap() {
            Ok(()) => {}
            // The deduct lost the race to its refund: refused, nothing taken.
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    for i in 0..30 {
        let recorded = channel
            .client
            .get_deduction(GetDeductionRequest {
                order_id: format!("o-{i}"),
                user_id: "alice".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .deduction
            .unwrap();
        assert_eq!(recorded.state(), DeductionState::Refunded, "o-{i}");
    }
    assert_eq!(balance(&mut channel, "alice").await, 10_000);
    assert_channel_consistent(&channel.ledger).await;
}

#[tokio::test]
async fn concurrent_orders_never_overdraw_a_balance() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    let mut calls = JoinSet::new();
    for i in 0..25 {
        let mut client = channel.client.clone();
        calls.spawn(async move {
            client
                .deduct_points(deduct(&format!("o-{i}"), "alice", 100))
                .await
        });
    }
    let (mut deducted, mut rejected) = (0, 0);
    while let Some(answer) = calls.join_next().await {
        match answer.unwrap() {
            Ok(_) => deducted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                rejected += 1;
            }
        }
    }
    assert_eq!((deducted, rejected), (10, 15));
    assert_eq!(balance(&mut channel, "alice").await, 0);
    assert_channel_consistent(&channel.ledger).await;
}

#[tokio::test]
async fn concurrent_orders_never_overdraw_a_quota() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "alpha", 1_000).await;
    let mut calls = JoinSet::new();
    for i in 0..25 {
        let mut client = portal.client.clone();
        calls.spawn(async move {
            client
                .deduct_quota(portal_barrier::deduct(&format!("o-{i}"), "alpha", 100))
                .await
        });
    }
    let mut deducted = 0;
    while let Some(answer) = calls.join_next().await {
        match answer.unwrap() {
            Ok(_) => deducted += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(deducted, 10);
    let q = quota(&mut portal, "alpha").await;
    assert_eq!((q.used, q.remaining), (1_000, 0));
    assert_portal_consistent(&portal.quotas).await;
}

/// A small deterministic generator, so a failing interleaving can be replayed from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn random_interleavings_of_deducts_refunds_and_duplicates_keep_the_ledger_whole() {
    let mut channel = TestChannel::start("alpha").await;
    let users = ["u0", "u1", "u2"];
    for user in users {
        credit(&mut channel, user, 500).await;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut rng = SplitMix(seed);
    // Rounds of concurrent calls over a few keys: deducts (sometimes of amounts a balance
    // cannot pay), refunds, and repeats of both, in random order.
    for round in 0..8 {
        let mut calls = JoinSet::new();
        for _ in 0..24 {
            let order = format!("o-{}", rng.below(6));
            let user = users[rng.below(3) as usize];
            let points = [50, 120, 400][rng.below(3) as usize];
            let is_refund = rng.below(3) == 0;
            let mut client = channel.client.clone();
            calls.spawn(async move {
                let result = if is_refund {
                    client.refund_points(refund(&order, user)).await.map(|_| ())
                } else {
                    client
                        .deduct_points(deduct(&order, user, points))
                        .await
                        .map(|_| ())
                };
                (result, is_refund)
            });
        }
        while let Some(joined) = calls.join_next().await {
            let (result, is_refund) = joined.unwrap();
            if let Err(status) = result {
                let allowed: &[Code] = if is_refund {
                    &[]
                } else {
                    &[Code::FailedPrecondition, Code::Aborted, Code::AlreadyExists]
                };
                assert!(
                    allowed.contains(&status.code()),
                    "seed {seed} round {round}: unexpected {status:?}"
                );
            }
        }
        assert_channel_consistent(&channel.ledger).await;
    }
}
