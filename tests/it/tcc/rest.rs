//! TCC over a REST hold API nobody here wrote (docs/examples/holds-json.toml): authorize,
//! capture, void by the partner's own hold ids, an answer lost on the way.

use std::sync::atomic::Ordering;

use jifen_proto::v1::{OrderState, Protocol, StepState};
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::partner::holds::{HoldsApi, Status};

use super::holding;

#[tokio::test]
async fn orders_over_a_rest_hold_api_are_captured_when_whole_and_voided_when_not() {
    let (api, served) = HoldsApi::start(&["u1", "u2"], START_POINTS).await;
    let mut mesh = TestMesh::start(&["alpha"], &["u1", "u2"]).await;
    mesh.attach_http_channel("eta", &served.base_url, served.config.clone())
        .await;
    holding(&mut mesh, "eta").await;

    // A hold whose answer is lost on the way: the connector asks by our reference and finds
    // it; one hold, captured once.
    api.faults.lose_answer.store(1, Ordering::SeqCst);
    mesh.submit("eta-1", &[("eta", "u1", 120), ("alpha", "u1", 10)])
        .await
        .unwrap();
    let done = mesh.settled("eta-1").await;
    assert_eq!(done.state(), OrderState::Completed, "{done:?}");
    let eta = done.lines.iter().find(|l| l.channel_id == "eta").unwrap();
    assert_eq!(eta.protocol(), Protocol::Tcc);
    assert_eq!(eta.state(), StepState::Confirmed);
    assert!(
        eta.captured
            .get("hold_id")
            .is_some_and(|id| id.starts_with("hx_")),
        "the partner's hold id is kept with the line: {eta:?}"
    );
    let entry = api.entry("eta-1:u1").expect("the partner's hold");
    assert_eq!((entry.status, entry.points), (Status::Captured, 120));
    assert_eq!(api.available("u1"), Some(START_POINTS - 120));

    // Alpha refuses its line after the partner's hold stood: the hold is voided, never
    // captured, and the member's points are as before.
    mesh.submit_doomed("eta", "eta-2", "u2", 300).await;
    let failed = mesh.settled("eta-2").await;
    assert_eq!(failed.state(), OrderState::Cancelled, "{failed:?}");
    let entry = api.entry("eta-2:u2").expect("the partner's hold");
    assert_eq!(entry.status, Status::Voided);
    assert_eq!(api.available("u2"), Some(START_POINTS));
    assert_eq!(api.standing(), 0, "no hold is left standing at the partner");
    assert_mesh_consistent(&mesh).await;
}
