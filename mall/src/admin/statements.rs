//! `ReconcileStatement` (issue 18): a partner's daily statement against Jifen's books for that
//! channel and day; the report is kept.

use std::collections::HashSet;

use jifen_mesh::domain::{ChannelId, InvalidField};
use jifen_mesh::time::now_unix_ms;
use jifen_proto::v1::{
    GetStatementReportRequest, GetStatementReportResponse, ListStatementReportsRequest,
    ListStatementReportsResponse, ReconcileStatementRequest, ReconcileStatementResponse,
    StatementReport,
};
use tonic::{Request, Response, Status};

use crate::grpc::page_size;

use super::Admin;
use crate::error::MallError;
use crate::statement::{self, StatementFormat, compare};
use crate::store::statements;

/// Fills `format` from the request's non-empty fields.
fn format_for(
    base: StatementFormat,
    wire: Option<&jifen_proto::v1::StatementFormat>,
) -> StatementFormat {
    let Some(wire) = wire else {
        return base;
    };
    let pick = |given: &str, kept: String| {
        if given.is_empty() {
            kept
        } else {
            given.to_owned()
        }
    };
    StatementFormat {
        order_column: pick(&wire.order_column, base.order_column),
        user_column: pick(&wire.user_column, base.user_column),
        points_column: pick(&wire.points_column, base.points_column),
        state_column: pick(&wire.state_column, base.state_column),
        deducted: if wire.deducted_states.is_empty() {
            base.deducted
        } else {
            wire.deducted_states.clone()
        },
        refunded: if wire.refunded_states.is_empty() {
            base.refunded
        } else {
            wire.refunded_states.clone()
        },
        delimiter: pick(&wire.delimiter, base.delimiter),
    }
}

/// The day's first millisecond, UTC, of `date` at `offset_minutes` from UTC.
fn day_start(date: &str, offset_minutes: i32) -> Result<i64, InvalidField> {
    let format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
        .map_err(|e| InvalidField::new("date", e.to_string()))?;
    let day = time::Date::parse(date.trim(), &format)
        .map_err(|_| InvalidField::new("date", format!("{date:?} is not YYYY-MM-DD")))?;
    if offset_minutes.abs() > 14 * 60 {
        return Err(InvalidField::new(
            "utc_offset_minutes",
            "must be within ±14 hours",
        ));
    }
    let midnight = day.midnight().assume_utc().unix_timestamp() * 1000;
    Ok(midnight - i64::from(offset_minutes) * 60_000)
}

impl Admin {
    pub(crate) async fn reconcile_statement(
        &self,
        request: &ReconcileStatementRequest,
        actor: &str,
    ) -> Result<StatementReport, MallError> {
        let channel = ChannelId::parse("channel_id", request.channel_id.clone())?;
        let from = day_start(&request.date, request.utc_offset_minutes)?;
        let format = format_for(
            self.registry
                .statement_format(channel.as_str())
                .unwrap_or_default(),
            request.format.as_ref(),
        );
        let read = statement::read(&request.statement, &format)
            .map_err(|e| InvalidField::new("statement", e.to_string()))?;
        let db = self.store.database();
        let day = statements::day_lines(db, channel.as_str(), from, from + 86_400_000).await?;
        let known: HashSet<&str> = day.iter().map(|l| l.order_id.as_str()).collect();
        let others: Vec<String> = read
            .keys
            .keys()
            .map(|(order_id, _)| order_id.clone())
            .filter(|id| !known.contains(id.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let elsewhere = statements::lines_of(db, channel.as_str(), &others).await?;
        let by_user = !(format.user_column.is_empty() || format.user_column == "-");
        let found = compare::compare(&read, &day, &elsewhere, by_user);
        let mut report = StatementReport {
            id: 0,
            channel_id: channel.to_string(),
            date: request.date.trim().to_owned(),
            utc_offset_minutes: request.utc_offset_minutes,
            created_at_unix_ms: now_unix_ms(),
            operator: actor.to_owned(),
            file_name: request.file_name.chars().take(200).collect(),
            statement_rows: read.rows,
            jifen_lines: day.len() as u64,
            matched: found.matched,
            in_flight: found.in_flight,
            difference_count: found.differences.len() as u64,
            differences: found.differences,
        };
        report.id = statements::save(db, &report).await?;
        Ok(report)
    }
}

/// The gRPC calls (`AdminService` delegates here): check, act, audit.
impl Admin {
    pub(super) async fn reconcile_statement_call(
        &self,
        request: Request<ReconcileStatementRequest>,
    ) -> Result<Response<ReconcileStatementResponse>, Status> {
        const ACTION: &str = "ReconcileStatement";
        let target = format!(
            "{} {}",
            request.get_ref().channel_id,
            request.get_ref().date
        );
        // It reads the books and keeps a report: an operator's act, audited.
        let caller = self.acting(&request, ACTION, &target).await?;
        let request = request.into_inner();
        let result = self
            .reconcile_statement(&request, &caller.operator.name)
            .await;
        let report = self
            .audited(&caller, ACTION, &target, &request.file_name, result)
            .await?;
        Ok(Response::new(ReconcileStatementResponse {
            report: Some(report),
        }))
    }

    pub(super) async fn list_statement_reports_call(
        &self,
        request: Request<ListStatementReportsRequest>,
    ) -> Result<Response<ListStatementReportsResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size).map_err(MallError::from)?;
        let reports =
            crate::store::statements::list(self.store.database(), &request.channel_id, limit)
                .await
                .map_err(MallError::from)?;
        Ok(Response::new(ListStatementReportsResponse { reports }))
    }

    pub(super) async fn get_statement_report_call(
        &self,
        request: Request<GetStatementReportRequest>,
    ) -> Result<Response<GetStatementReportResponse>, Status> {
        let id = request.into_inner().id;
        let report = crate::store::statements::get(self.store.database(), id)
            .await
            .map_err(MallError::from)?
            .ok_or_else(|| Status::not_found(format!("no statement report {id}")))?;
        Ok(Response::new(GetStatementReportResponse {
            report: Some(report),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_midnight_in_its_zone() {
        assert_eq!(day_start("1970-01-02", 0), Ok(86_400_000));
        assert_eq!(day_start("1970-01-02", 480), Ok(86_400_000 - 8 * 3_600_000));
        assert!(day_start("02/01/1970", 0).is_err());
        assert!(day_start("1970-01-02", 15 * 60).is_err());
    }
}
