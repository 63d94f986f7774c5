//! `jifen admin reconcile-statement` and `jifen admin statements`: a partner's daily statement
//! against Jifen's books, and the reports kept.

use std::path::PathBuf;

use jifen_proto::v1::{
    GetStatementReportRequest, ListStatementReportsRequest, ReconcileStatementRequest,
    StatementFormat, StatementReport,
};
use serde_json::json;
use tonic::Status;

use super::{AdminError, Clients};

#[derive(Debug, clap::Args)]
pub(super) struct StatementArgs {
    /// The channel whose statement it is.
    #[arg(long)]
    channel: String,
    /// The statement's day (YYYY-MM-DD).
    #[arg(long)]
    date: String,
    /// The partner's zone: the day runs from its midnight (`+08:00`, `-05:00`; UTC without).
    #[arg(long, default_value = "+00:00")]
    utc_offset: String,
    /// The column of Jifen's order id (default: the adapter config's `[statement]`, else
    /// `order_id`).
    #[arg(long)]
    order_column: Option<String>,
    /// The user column; `-` when the statement has none.
    #[arg(long)]
    user_column: Option<String>,
    #[arg(long)]
    points_column: Option<String>,
    /// The state column; `-` when every row is a deduction.
    #[arg(long)]
    state_column: Option<String>,
    /// States meaning "deducted" (comma-separated).
    #[arg(long, value_delimiter = ',')]
    deducted: Vec<String>,
    /// States meaning "reversed" (comma-separated).
    #[arg(long, value_delimiter = ',')]
    refunded: Vec<String>,
    #[arg(long)]
    delimiter: Option<String>,
    /// The CSV file.
    file: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum StatementsCommand {
    /// The reports kept, newest first.
    List {
        #[arg(long, default_value = "")]
        channel: String,
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// One report with its differences.
    Show { id: i64 },
}

fn offset_minutes(raw: &str) -> Result<i32, AdminError> {
    let bad = || AdminError::Input(format!("--utc-offset {raw:?}: use +HH:MM or -HH:MM"));
    let (sign, rest) = match raw.as_bytes().first() {
        Some(b'+') => (1, &raw[1..]),
        Some(b'-') => (-1, &raw[1..]),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    let hours: i32 = hours.parse().map_err(|_| bad())?;
    let minutes: i32 = minutes.parse().map_err(|_| bad())?;
    Ok(sign * (hours * 60 + minutes))
}

/// Compares the file; `Ok(false)` when differences were found.
pub(super) async fn reconcile(
    args: &StatementArgs,
    clients: &Clients,
    json: bool,
) -> Result<Result<bool, Status>, AdminError> {
    let statement = std::fs::read(&args.file)
        .map_err(|e| AdminError::Input(format!("cannot read {}: {e}", args.file.display())))?;
    let format = StatementFormat {
        order_column: args.order_column.clone().unwrap_or_default(),
        user_column: args.user_column.clone().unwrap_or_default(),
        points_column: args.points_column.clone().unwrap_or_default(),
        state_column: args.state_column.clone().unwrap_or_default(),
        deducted_states: args.deducted.clone(),
        refunded_states: args.refunded.clone(),
        delimiter: args.delimiter.clone().unwrap_or_default(),
    };
    eprintln!(
        "jifen admin: comparing {} ({} bytes) with {}'s books of {}…",
        args.file.display(),
        statement.len(),
        args.channel,
        args.date
    );
    let mut admin = clients.admin.clone().max_encoding_message_size(usize::MAX);
    Ok(admin
        .reconcile_statement(
            clients.authed(ReconcileStatementRequest {
                channel_id: args.channel.clone(),
                date: args.date.clone(),
                statement,
                format: Some(format),
                utc_offset_minutes: offset_minutes(&args.utc_offset)?,
                file_name: args
                    .file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            })?,
        )
        .await
        .map(|r| {
            let report = r.into_inner().report.unwrap_or_default();
            print(&report, json);
            report.difference_count == 0
        }))
}

pub(super) async fn execute(
    command: &StatementsCommand,
    clients: &Clients,
    json: bool,
) -> Result<Result<bool, Status>, AdminError> {
    let mut admin = clients.admin.clone();
    Ok(match command {
        StatementsCommand::List { channel, limit } => admin
            .list_statement_reports(clients.authed(ListStatementReportsRequest {
                channel_id: channel.clone(),
                page_size: *limit,
            })?)
            .await
            .map(|r| {
                let reports = r.into_inner().reports;
                if json {
                    let list: Vec<_> = reports.iter().map(summary_json).collect();
                    super::render::print_json(&json!(list));
                } else {
                    for report in &reports {
                        println!("{}", summary(report));
                    }
                }
                true
            }),
        StatementsCommand::Show { id } => admin
            .get_statement_report(clients.authed(GetStatementReportRequest { id: *id })?)
            .await
            .map(|r| {
                let report = r.into_inner().report.unwrap_or_default();
                print(&report, json);
                report.difference_count == 0
            }),
    })
}

fn summary(report: &StatementReport) -> String {
    format!(
        "report {}: {} {} — {} statement rows, {} Jifen lines, {} matched, {} in flight, {} difference(s) ({} by {})",
        report.id,
        report.channel_id,
        report.date,
        report.statement_rows,
        report.jifen_lines,
        report.matched,
        report.in_flight,
        report.difference_count,
        jifen_mesh::time::format_utc(report.created_at_unix_ms),
        report.operator
    )
}

fn summary_json(report: &StatementReport) -> serde_json::Value {
    json!({
        "id": report.id, "channel_id": report.channel_id, "date": report.date,
        "utc_offset_minutes": report.utc_offset_minutes,
        "created_at_unix_ms": report.created_at_unix_ms, "operator": report.operator,
        "file_name": report.file_name, "statement_rows": report.statement_rows,
        "jifen_lines": report.jifen_lines, "matched": report.matched,
        "in_flight": report.in_flight, "difference_count": report.difference_count,
    })
}

fn print(report: &StatementReport, as_json: bool) {
    if as_json {
        let mut value = summary_json(report);
        value["differences"] = report
            .differences
            .iter()
            .map(|d| {
                json!({
                    "kind": d.kind, "order_id": d.order_id, "user_id": d.user_id,
                    "jifen": d.jifen, "statement": d.statement, "action": d.action, "line": d.line,
                })
            })
            .collect();
        super::render::print_json(&value);
        return;
    }
    println!("{}", summary(report));
    if report.differences.is_empty() {
        println!("no differences");
        return;
    }
    println!(
        "{:<15} {:<20} {:<10} {:<22} {:<26} ACTION",
        "KIND", "ORDER", "USER", "JIFEN", "STATEMENT"
    );
    for d in &report.differences {
        let order = if d.line > 0 {
            format!("{} (line {})", d.order_id, d.line)
        } else {
            d.order_id.clone()
        };
        println!(
            "{:<15} {:<20} {:<10} {:<22} {:<26} {}",
            d.kind, order, d.user_id, d.jifen, d.statement, d.action
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_as_minutes() {
        assert_eq!(offset_minutes("+08:00").unwrap(), 480);
        assert_eq!(offset_minutes("-05:30").unwrap(), -330);
        assert!(offset_minutes("8").is_err());
    }
}
