//! Partners' statements on the console (issue 18): upload a day's CSV for a channel, read the
//! report — each difference by kind with what to do — and the reports kept before.

use axum::extract::{Multipart, Path, State};
use axum::response::Response;
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{
    GetStatementReportRequest, ListStatementReportsRequest, ReconcileStatementRequest,
    StatementFormat, StatementReport,
};
use maud::{Markup, html};

use super::Console;
use super::actions::back;
use super::pages::{Params, flash};
use super::session::{Session, redirect};
use super::views::{Flash, csrf, forbidden, page, time};

fn summary(report: &StatementReport) -> Markup {
    html! {
        (report.statement_rows) " statement rows, " (report.jifen_lines) " Jifen lines: "
        strong { (report.matched) " matched" } ", " (report.in_flight) " in flight, "
        @if report.difference_count == 0 { span.badge.h-up { "no differences" } }
        @else { span.badge.h-down { (report.difference_count) " difference(s)" } }
    }
}

pub async fn statements(
    State(console): State<Console>,
    session: Session,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let listed = AdminService::list_statement_reports(
        &console.admin,
        session.request(ListStatementReportsRequest {
            channel_id: String::new(),
            page_size: 50,
        }),
    )
    .await;
    let reports = match listed {
        Ok(r) => r.into_inner().reports,
        Err(status) => return console.error_page(&session, status.message()),
    };
    let content = html! {
        h1 { "Statements" }
        p.muted { "A partner's daily statement (CSV, header row first) compared with Jifen's books for that channel and day. Columns and states come from the channel's adapter config ([statement]) unless given here; the defaults are order_id, user_id, points, state (DEDUCTED/SUCCESS, REFUNDED/REVERSED)." }
        form.upload method="post" action="/statements" enctype="multipart/form-data" {
            (csrf(&session))
            div.row {
                label { "Channel " input type="text" name="channel" required; }
                label { "Day " input type="date" name="date" required; }
                label { "UTC offset (minutes) " input type="number" name="offset" value="0" min="-840" max="840"; }
            }
            div.row {
                label { "Order column " input type="text" name="order_column" placeholder="order_id"; }
                label { "User column " input type="text" name="user_column" placeholder="user_id, or -"; }
                label { "Points column " input type="text" name="points_column" placeholder="points"; }
                label { "State column " input type="text" name="state_column" placeholder="state, or -"; }
                label { "Delimiter " input type="text" name="delimiter" placeholder="," maxlength="2" size="2"; }
            }
            div.row {
                input type="file" name="statement" accept=".csv,text/csv" required;
                button type="submit" { "Compare" }
            }
        }
        h2 { "Reports" }
        @if reports.is_empty() { p.muted { "None yet." } } @else {
            div.wrap { table {
                thead { tr { th { "Report" } th { "Channel" } th { "Day" } th { "File" } th { "Result" } th { "When (UTC)" } th { "By" } } }
                tbody { @for r in &reports { tr {
                    td { a href={ "/statements/" (r.id) } { (r.id) } }
                    td { (r.channel_id) } td { (r.date) } td { (r.file_name) }
                    td { (summary(r)) }
                    td { (time(r.created_at_unix_ms)) } td { (r.operator) }
                } } }
            } }
            @if reports.len() == 50 { p.muted { "The newest 50 are shown; older ones: jifen admin statements list --limit N." } }
        }
    };
    page("Statements", &session, &flash, content)
}

pub async fn report(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<i64>,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let found = AdminService::get_statement_report(
        &console.admin,
        session.request(GetStatementReportRequest { id }),
    )
    .await;
    let report = match found {
        Ok(r) => r.into_inner().report.unwrap_or_default(),
        Err(status) => return console.error_page(&session, status.message()),
    };
    let content = html! {
        h1 { "Statement report " (report.id) }
        p { (report.channel_id) ", " (report.date) " (UTC offset " (report.utc_offset_minutes) " min), " (report.file_name) " — by " (report.operator) " at " (time(report.created_at_unix_ms)) }
        p { (summary(&report)) }
        @if !report.differences.is_empty() {
            div.wrap { table {
                thead { tr { th { "Kind" } th { "Order" } th { "User" } th { "Jifen" } th { "Statement" } th { "Line" } th { "What to do" } } }
                tbody { @for d in &report.differences { tr {
                    td { span.badge.h-degraded { (d.kind) } }
                    td { @if d.order_id.is_empty() { "—" } @else { a href={ "/orders/" (super::views::enc(&d.order_id)) } { (d.order_id) } } }
                    td { (d.user_id) } td { (d.jifen) } td { (d.statement) }
                    td.num { @if d.line > 0 { (d.line) } }
                    td { (d.action) }
                } } }
            } }
        }
        p { a href="/statements" { "← Statements" } }
    };
    page("Statement report", &session, &flash, content)
}

/// The upload: a multipart form with the session's CSRF token, read whole (the body limit of
/// this route is the statement's).
pub async fn upload(
    State(console): State<Console>,
    session: Session,
    mut multipart: Multipart,
) -> Response {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut statement = Vec::new();
    let mut file_name = String::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                if name == "statement" {
                    file_name = field.file_name().unwrap_or_default().to_owned();
                    match field.bytes().await {
                        Ok(bytes) => statement = bytes.to_vec(),
                        Err(error) => return bad_upload(&session, &error.to_string()),
                    }
                } else {
                    match field.text().await {
                        Ok(text) => fields.push((name, text)),
                        Err(error) => return bad_upload(&session, &error.to_string()),
                    }
                }
            }
            Ok(None) => break,
            Err(error) => return bad_upload(&session, &error.to_string()),
        }
    }
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    if !session.csrf_ok(&get("csrf")) {
        return forbidden();
    }
    let Ok(offset) = get("offset").parse::<i32>().or_else(|e| {
        if get("offset").is_empty() {
            Ok(0)
        } else {
            Err(e)
        }
    }) else {
        return bad_upload(&session, "the UTC offset is a whole number of minutes");
    };
    let result = AdminService::reconcile_statement(
        &console.admin,
        session.request(ReconcileStatementRequest {
            channel_id: get("channel"),
            date: get("date"),
            statement,
            format: Some(StatementFormat {
                order_column: get("order_column"),
                user_column: get("user_column"),
                points_column: get("points_column"),
                state_column: get("state_column"),
                delimiter: get("delimiter"),
                ..StatementFormat::default()
            }),
            utc_offset_minutes: offset,
            file_name,
        }),
    )
    .await;
    match result {
        Ok(answer) => {
            let id = answer.into_inner().report.map(|r| r.id).unwrap_or_default();
            redirect(&format!(
                "/statements/{id}?{}",
                Flash::query(&session, true, "Statement compared; the report is kept.")
            ))
        }
        Err(status) => back(&session, "/statements", Err::<(), _>(status), ""),
    }
}

fn bad_upload(session: &Session, why: &str) -> Response {
    back(
        session,
        "/statements",
        Err::<(), _>(tonic::Status::invalid_argument(format!(
            "the upload could not be read: {why}"
        ))),
        "",
    )
}
