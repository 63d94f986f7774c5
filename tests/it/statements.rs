//! Statement reconciliation (issue 18): a partner's daily statement with a planted difference
//! of each kind is reported exactly — over the admin API and through the console's upload.

use jifen_proto::v1::{
    GetStatementReportRequest, ListStatementReportsRequest, OrderState, ReconcileStatementRequest,
    StatementFormat, StatementReport,
};
use jifen_tests::TestMesh;
use jifen_tests::mesh::ADMIN_TOKEN;
use reqwest::StatusCode;
use tonic::Code;

use crate::admin::{admin, authed};
use crate::assert_status;
use crate::console::Browser;

fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// The partner's file: `;`-separated, its own column names, one difference of each kind.
const STATEMENT: &str = "out_trade_no;member;amount;status\n\
                         s-1;u1;100;SUCCESS\n\
                         s-3;u2;35;SUCCESS\n\
                         s-4;u1;10;SUCCESS\n\
                         s-4;u1;10;REVERSED\n\
                         x-9;u1;5;SUCCESS\n\
                         s-1;u1;lots;SUCCESS\n";

fn partner_format() -> StatementFormat {
    StatementFormat {
        order_column: "out_trade_no".into(),
        user_column: "member".into(),
        points_column: "amount".into(),
        state_column: "status".into(),
        deducted_states: vec!["SUCCESS".into()],
        refunded_states: vec!["REVERSED".into()],
        delimiter: ";".into(),
    }
}

fn kinds(report: &StatementReport) -> Vec<(String, String)> {
    report
        .differences
        .iter()
        .map(|d| (d.kind.clone(), d.order_id.clone()))
        .collect()
}

#[tokio::test]
async fn a_statement_with_planted_differences_is_reported_exactly_and_kept() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1", "u2"]).await;
    for (id, user, points) in [
        ("s-1", "u1", 100),
        ("s-2", "u1", 40),
        ("s-3", "u2", 30),
        ("s-4", "u1", 10),
    ] {
        mesh.submit(id, &[("alpha", user, points)]).await.unwrap();
        assert_eq!(mesh.settled(id).await.state(), OrderState::Completed);
    }
    let mut admin = admin(&mut mesh).await;
    let request = |statement: &str, format: StatementFormat| ReconcileStatementRequest {
        channel_id: "alpha".into(),
        date: today(),
        statement: statement.as_bytes().to_vec(),
        format: Some(format),
        utc_offset_minutes: 0,
        file_name: "alpha-statement.csv".into(),
    };
    let report = admin
        .reconcile_statement(authed(request(STATEMENT, partner_format())))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(
        kinds(&report),
        [
            ("jifen_only", "s-2"),
            ("amount_differs", "s-3"),
            ("state_differs", "s-4"),
            ("statement_only", "x-9"),
            ("unreadable", ""),
        ]
        .map(|(k, o)| (k.to_owned(), o.to_owned()))
    );
    assert_eq!(
        (report.matched, report.statement_rows, report.jifen_lines),
        (1, 6, 4)
    );
    let amount = &report.differences[1];
    assert_eq!(
        (amount.jifen.as_str(), amount.statement.as_str()),
        ("deducted 30", "deducted 35")
    );
    assert!(!amount.action.is_empty());
    assert_eq!(report.differences[4].line, 7);

    // Kept, and readable again.
    let listed = admin
        .list_statement_reports(authed(ListStatementReportsRequest {
            channel_id: "alpha".into(),
            page_size: 10,
        }))
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].difference_count, 5);
    let kept = admin
        .get_statement_report(authed(GetStatementReportRequest { id: report.id }))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(kinds(&kept), kinds(&report));

    // A clean statement in the default format: no differences.
    let clean = "order_id,user_id,points,state\n\
                 s-1,u1,100,DEDUCTED\ns-2,u1,40,DEDUCTED\ns-3,u2,30,DEDUCTED\ns-4,u1,10,DEDUCTED\n";
    let clean = admin
        .reconcile_statement(authed(request(clean, StatementFormat::default())))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!((clean.difference_count, clean.matched), (0, 4));

    // A file the format cannot read at all says why.
    assert_status(
        admin
            .reconcile_statement(authed(request("a,b\n1,2\n", StatementFormat::default())))
            .await,
        Code::InvalidArgument,
        "no column \"order_id\"",
    );
    assert_status(
        admin
            .reconcile_statement(authed(ReconcileStatementRequest {
                date: "05/12/2026".into(),
                ..request(STATEMENT, partner_format())
            }))
            .await,
        Code::InvalidArgument,
        "YYYY-MM-DD",
    );

    // The console: upload, then the report's page.
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let boundary = "jifen-test-boundary";
    let mut body = String::new();
    for (name, value) in [
        ("csrf", csrf.as_str()),
        ("channel", "alpha"),
        ("date", &today()),
        ("offset", "0"),
        ("order_column", "out_trade_no"),
        ("user_column", "member"),
        ("points_column", "amount"),
        ("state_column", "status"),
        ("delimiter", ";"),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"statement\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\n{STATEMENT}\r\n--{boundary}--\r\n"
    ));
    let response = browser
        .request(reqwest::Method::POST, "/statements")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let to = response
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(to.starts_with("/statements/") && to.contains("ok="), "{to}");
    let (status, page) = browser.get(&to).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("amount_differs") && page.contains("statement_only") && page.contains("x-9"),
        "{page}"
    );
    let (_, list) = browser.get("/statements").await;
    assert!(list.contains("alpha-statement.csv"), "{list}");
}
