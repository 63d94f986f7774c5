//! `jifen channel-check` (issue "third-party channels"): run against live channels, it names
//! exactly the guarantees each lacks and gives back everything it took.

use jifen_channel::check::{self, GUARANTEES, Report};
use jifen_tests::TestChannel;
use jifen_tests::weak_channel::WeakChannel;

use crate::channel_barrier::credit;

#[tokio::test]
async fn the_reference_channel_gives_all_six_guarantees_and_gets_its_points_back() {
    let mut channel = TestChannel::start("check-ref").await;
    credit(&mut channel, "tester", 50).await;
    let report = check::run(&channel.server.endpoint(), "tester", 7, "check-a-")
        .await
        .expect("the check runs");
    let names: Vec<_> = report.findings.iter().map(|f| f.guarantee).collect();
    assert_eq!(names, GUARANTEES);
    assert!(report.all_hold(), "{:#?}", report.findings);
    assert_eq!((report.balance_before, report.balance_after), (50, 50));
    assert!(report.capabilities().iter().all(|(_, declared)| *declared));
}

#[tokio::test]
async fn a_channel_without_null_compensation_or_anti_hanging_is_named_for_exactly_those() {
    let weak = WeakChannel::start("check-weak", &["tester"], 50).await;
    let report = check::run(&weak.endpoint(), "tester", 5, "check-b-")
        .await
        .expect("the check runs");
    // The fake also takes a deduct of zero points, so its status codes do not hold either.
    assert_eq!(
        report.missing(),
        ["null_compensation", "anti_hanging", "status_codes"],
        "{:#?}",
        report.findings
    );
    // The hanging deduct it let through was given back.
    assert_eq!(weak.balance("tester"), 50);
    assert_eq!(report.balance_after, 50);
    let capabilities = report.capabilities();
    assert!(capabilities.contains(&("refund", true)));
    assert!(capabilities.contains(&("null_compensation", false)));
}

#[tokio::test]
async fn a_channel_that_cannot_be_reached_or_an_unknown_user_stops_the_check() {
    let unreachable = check::run("http://127.0.0.1:1", "tester", 1, "check-c-").await;
    assert!(
        matches!(unreachable, Err(check::CheckError::Unreachable(_))),
        "{unreachable:?}"
    );
    let weak = WeakChannel::start("check-unknown", &["tester"], 3).await;
    let unknown = check::run(&weak.endpoint(), "nobody", 1, "check-d-").await;
    assert!(
        matches!(unknown, Err(check::CheckError::UnknownUser(_))),
        "{unknown:?}"
    );
    let poor = check::run(&weak.endpoint(), "tester", 4, "check-e-").await;
    assert!(
        matches!(
            poor,
            Err(check::CheckError::TooFewPoints {
                balance: 3,
                needed: 4
            })
        ),
        "{poor:?}"
    );
    let zero = check::run(&weak.endpoint(), "tester", 0, "check-f-").await;
    assert!(
        matches!(zero, Err(check::CheckError::Points(0))),
        "{zero:?}"
    );
}

/// A third party that gives every guarantee but `lacking`.
async fn lacking(lacking: &str) -> WeakChannel {
    use std::sync::atomic::Ordering::Relaxed;
    let weak = WeakChannel::start(&format!("check-{lacking}"), &["tester"], 50).await;
    let faults = &weak.faults;
    faults.null_compensation.store(true, Relaxed);
    faults.strict_points.store(true, Relaxed);
    match lacking {
        "idempotent_deduct" => faults.deducts_not_idempotent.store(true, Relaxed),
        "query" => faults.no_query.store(true, Relaxed),
        "refund_once" => faults.refunds_repeat.store(true, Relaxed),
        "null_compensation" => {
            faults.null_compensation.store(false, Relaxed);
            faults.tombstones.store(true, Relaxed);
        }
        "anti_hanging" => faults.hanging_deducts.store(true, Relaxed),
        "status_codes" => faults.strict_points.store(false, Relaxed),
        other => panic!("no such guarantee {other}"),
    }
    weak
}

#[tokio::test]
async fn each_missing_guarantee_is_named_alone() {
    for guarantee in GUARANTEES {
        let weak = lacking(guarantee).await;
        let report = check::run(&weak.endpoint(), "tester", 5, "check-g-")
            .await
            .expect("the check runs");
        assert_eq!(report.missing(), [guarantee], "{:#?}", report.findings);
    }
}

async fn check_rest_api(lacking: &[&str], config_declares_all: bool) -> Report {
    let kept = if lacking.contains(&"refund") { 5 } else { 0 };
    let api = jifen_tests::http_channel::TestPointsApi::start(&["tester"], 100).await;
    let lacks = jifen_mesh::capabilities::Capabilities::without(lacking).unwrap();
    api.guarantee(lacks);
    // The operator's config may declare more than the API gives: the check looks for itself.
    let declared = if config_declares_all {
        jifen_mesh::capabilities::Capabilities::FULL
    } else {
        lacks
    };
    let target = check::Target::http(&api.config("delta", declared, "2s")).unwrap();
    let report = check::run_on(target, "tester", 5, "check-h-")
        .await
        .unwrap();
    // Without a refund call the first deduct cannot be given back (the table says so).
    assert_eq!(report.balance_after, 100 - kept, "{report:?}");
    report
}

#[tokio::test]
async fn a_rest_api_is_checked_through_its_adapter_config() {
    let report = check_rest_api(&[], true).await;
    assert!(report.all_hold(), "{report:#?}");
    let report = check_rest_api(&["null_compensation", "anti_hanging"], true).await;
    assert_eq!(report.missing(), vec!["null_compensation", "anti_hanging"]);
    // An API whose deducts are not idempotent and which has no lookups, declared honestly.
    let report = check_rest_api(&["idempotent_deduct", "query"], false).await;
    assert_eq!(report.missing(), vec!["idempotent_deduct", "query"]);
    let report = check_rest_api(&["refund"], false).await;
    assert!(!report.refund_call);
    assert!(report.missing().contains(&"refund_once"), "{report:#?}");
}

#[tokio::test]
async fn a_rest_api_that_refuses_the_credentials_is_said_to_refuse_not_to_be_unreachable() {
    let api = jifen_tests::http_channel::TestPointsApi::start(&["tester"], 100).await;
    let config = api.config("delta", jifen_mesh::capabilities::Capabilities::FULL, "2s");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(jifen_tests::http_channel::API_KEY));
    std::fs::write(
        &config,
        text.replace(jifen_tests::http_channel::API_KEY, "not-the-key"),
    )
    .unwrap();
    let target = check::Target::http(&config).unwrap();
    match check::run_on(target, "tester", 5, "check-k-").await {
        Err(check::CheckError::Refused(why)) => assert!(why.contains("401"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_reference_channels_holds_give_all_six_hold_guarantees() {
    let mut channel = TestChannel::start("check-holds").await;
    credit(&mut channel, "tester", 50).await;
    let target = check::Target::grpc(&channel.server.endpoint(), None)
        .await
        .expect("the channel is reachable");
    let holds = check::holds_on(target, "tester", 7, "check-i-")
        .await
        .expect("the check runs")
        .expect("the reference channel holds points");
    let names: Vec<_> = holds.iter().map(|f| f.guarantee).collect();
    assert_eq!(names, check::HOLD_GUARANTEES);
    assert!(holds.iter().all(|f| f.holds), "{holds:#?}");
    // The confirmed hold is spent; everything else was given back.
    let user = jifen_mesh::domain::UserId::parse("user_id", "tester").unwrap();
    assert_eq!(channel.ledger.balance(&user).await.unwrap(), 43);
}

#[tokio::test]
async fn a_channel_without_holds_says_so() {
    let weak = WeakChannel::start("check-noholds", &["tester"], 50).await;
    let target = check::Target::grpc(&weak.endpoint(), None)
        .await
        .expect("the channel is reachable");
    let holds = check::holds_on(target, "tester", 5, "check-j-")
        .await
        .expect("the check runs");
    assert_eq!(holds, None);
    assert_eq!(weak.balance("tester"), 50);
}
