//! The worked examples of docs/channels.md, each a partner API nobody here would design, run
//! through the very config file the docs show (DESIGN §9): orders end to end with faults, and
//! `channel-check` against each. The shared run lives here; the cases by concern below.

mod checks;
mod pending;
mod signed;

use std::sync::atomic::Ordering;

use jifen_adapter::{AdapterConfig, CallKey, HttpChannel};
use jifen_channel::check;
use jifen_proto::v1::{Order, OrderState};
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::partner::gateway::Gateway;
use jifen_tests::partner::hmac_json::HmacApi;
use jifen_tests::partner::oauth::OauthApi;
use jifen_tests::partner::xml_api::XmlApi;
use jifen_tests::partner::{Book, Faults, Served, TradeState};
use tonic::Code;

const EVERYONE: [&str; 6] = ["u1", "u2", "u3", "u4", "d1", "d2"];

fn key<'a>(order_id: &'a str, user_id: &'a str, points: i64) -> CallKey<'a> {
    CallKey {
        order_id,
        user_id,
        points,
        captured: None,
    }
}

/// Runs a dozen orders over `channel` (a partner API with faults armed) beside alpha, and two
/// that alpha's rejection cancels after the partner deducted; checks that each completed order
/// holds exactly its points at the partner, each cancelled one nothing, and returns the
/// completed orders.
async fn orders_through(channel: &str, served: &Served, book: &Book) -> Vec<Order> {
    orders_through_with(channel, served, book, None, &|| {}).await
}

/// [`orders_through`], the connector taking notifications at `notify`, with `mid_run` done
/// halfway through the orders.
async fn orders_through_with(
    channel: &str,
    served: &Served,
    book: &Book,
    notify: Option<std::net::SocketAddr>,
    mid_run: &dyn Fn(),
) -> Vec<Order> {
    let users = ["u1", "u2", "u3", "u4"];
    let doomed = ["d1", "d2"];
    let everyone = [&users[..], &doomed[..]].concat();
    let mut mesh = TestMesh::start(&["alpha"], &everyone).await;
    if let Some(addr) = notify {
        mesh.notify.insert(channel.to_owned(), addr);
    }
    mesh.attach_http_channel(channel, &served.base_url, served.config.clone())
        .await;
    let mut spent = [0_i64; 4];
    for i in 0..12_usize {
        if i == 6 {
            mid_run();
        }
        let points = 125 + i64::try_from(i).unwrap();
        mesh.submit(
            &format!("{channel}-{i}"),
            &[(channel, users[i % 4], points), ("alpha", users[i % 4], 10)],
        )
        .await
        .unwrap();
        spent[i % 4] += points;
    }
    for (i, user) in doomed.iter().enumerate() {
        mesh.submit_doomed(channel, &format!("{channel}-doomed-{i}"), user, 300)
            .await;
    }
    let mut completed = Vec::new();
    for i in 0..12 {
        let order = mesh.settled(&format!("{channel}-{i}")).await;
        assert_eq!(order.state(), OrderState::Completed, "{order:?}");
        completed.push(order);
    }
    for (i, user) in doomed.iter().enumerate() {
        let order = mesh.settled(&format!("{channel}-doomed-{i}")).await;
        assert_eq!(order.state(), OrderState::Cancelled, "{order:?}");
        assert_eq!(
            book.points_of(user),
            Some(START_POINTS),
            "{user} got it back"
        );
    }
    let faults = &book.faults;
    assert_eq!(
        faults.unavailable.load(Ordering::SeqCst),
        0,
        "503s were met"
    );
    assert_eq!(
        faults.lose_answer.load(Ordering::SeqCst),
        0,
        "answers were lost"
    );
    assert_eq!(
        faults.slow.load(Ordering::SeqCst),
        0,
        "answers came too late"
    );
    assert_eq!(faults.too_many.load(Ordering::SeqCst), 0, "429s were met");
    for (user, spent) in users.iter().zip(spent) {
        assert_eq!(
            book.points_of(user),
            Some(START_POINTS - spent),
            "{user}: nothing taken twice, every cancelled order's points back"
        );
    }
    assert_eq!(book.held(), spent.iter().sum::<i64>());
    assert_mesh_consistent(&mesh).await;
    assert_evidence_kept(&mesh, channel).await;
    completed
}

/// Every completed line's exchanges are kept with its order — the faults among them — and
/// none shows a secret, a token or a signature.
async fn assert_evidence_kept(mesh: &TestMesh, channel: &str) {
    use sqlx::Row;
    let pool = mesh.mall_db_pool().await;
    let rows = sqlx::query(
        "SELECT order_id, call, status, request, answer FROM partner_exchanges WHERE channel_id = $1",
    )
    .bind(channel)
    .fetch_all(&pool)
    .await
    .unwrap();
    let statuses: Vec<i64> = rows.iter().map(|r| r.try_get("status").unwrap()).collect();
    assert!(
        statuses.contains(&200) || statuses.contains(&202),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| *s == 503 || *s == 502),
        "the faults are in the evidence: {statuses:?}"
    );
    let deducts = rows
        .iter()
        .filter(|r| r.try_get::<String, _>("call").unwrap() == "deduct")
        .map(|r| r.try_get::<String, _>("order_id").unwrap())
        .collect::<std::collections::HashSet<_>>();
    assert!(
        deducts.len() >= 12,
        "each order's deduct is kept: {deducts:?}"
    );
    for row in &rows {
        let request: String = row.try_get("request").unwrap();
        for secret in ["secret-for-tests", "Bearer tok-"] {
            assert!(!request.contains(secret), "{request}");
        }
        for signed in ["sign=", "X-Signature: ", "x-signature: "] {
            if let Some(at) = request.find(signed) {
                assert!(
                    request[at + signed.len()..].starts_with("<redacted>"),
                    "{request}"
                );
            }
        }
    }
}

fn arm(faults: &Faults) {
    faults.unavailable.store(3, Ordering::SeqCst);
    faults.lose_answer.store(3, Ordering::SeqCst);
    faults.delay_ms.store(20, Ordering::SeqCst);
    faults.too_many.store(3, Ordering::SeqCst);
    // Two answers come after the caller gave up (the examples' timeout is 3 s).
    faults.slow_ms.store(3_500, Ordering::SeqCst);
    faults.slow.store(2, Ordering::SeqCst);
}
