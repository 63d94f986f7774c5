//! Statement reconciliation (issue 18): a partner's daily statement — the CSV file partners
//! send for reconciliation — read with the channel's [`StatementFormat`], then compared key by
//! key with Jifen's books for that channel and day ([`compare`]). The file crosses a boundary:
//! a row that does not read is reported as such (with its line), never skipped in silence.

pub mod compare;

use std::collections::BTreeMap;

pub use jifen_adapter::config::StatementFormat;

/// Largest statement taken (a gRPC message; a day of a busy channel is far less).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// What the statement says for one key: points deducted (summed over its rows), and whether a
/// reversal is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stated {
    pub deducted: i64,
    pub deductions: u32,
    pub refunded: bool,
    /// The first line that named the key.
    pub line: u64,
}

/// A row the format could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: u64,
    pub why: String,
}

/// A statement read: by `(order_id, user_id)` (user empty when it has no user column).
#[derive(Debug, Default)]
pub struct Statement {
    pub keys: BTreeMap<(String, String), Stated>,
    pub rows: u64,
    pub unreadable: Vec<Unreadable>,
}

/// Why a statement cannot be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementError {
    #[error("the statement is larger than {MAX_BYTES} bytes: split it")]
    TooLarge,
    #[error("the statement's format: {0}")]
    Format(String),
    #[error("the statement has no column {0:?} (its header: {1})")]
    MissingColumn(String, String),
    #[error("the statement cannot be read: {0}")]
    Csv(String),
}

fn column(headers: &csv::StringRecord, name: &str) -> Result<Option<usize>, StatementError> {
    if name.is_empty() || name == "-" {
        return Ok(None);
    }
    headers
        .iter()
        .position(|h| h.trim().trim_start_matches('\u{feff}') == name)
        .map(Some)
        .ok_or_else(|| {
            StatementError::MissingColumn(
                name.to_owned(),
                headers.iter().collect::<Vec<_>>().join(","),
            )
        })
}

/// Reads `bytes` as `format` says.
pub fn read(bytes: &[u8], format: &StatementFormat) -> Result<Statement, StatementError> {
    if bytes.len() > MAX_BYTES {
        return Err(StatementError::TooLarge);
    }
    format.check().map_err(StatementError::Format)?;
    let delimiter = format.delimiter_byte().map_err(StatementError::Format)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| StatementError::Csv(e.to_string()))?
        .clone();
    let order = column(&headers, &format.order_column)?
        .ok_or_else(|| StatementError::Format("no order column".to_owned()))?;
    let points = column(&headers, &format.points_column)?
        .ok_or_else(|| StatementError::Format("no points column".to_owned()))?;
    let user = column(&headers, &format.user_column)?;
    let state = column(&headers, &format.state_column)?;
    let mut statement = Statement::default();
    for (index, record) in reader.records().enumerate() {
        // The header is line 1.
        let line = index as u64 + 2;
        statement.rows += 1;
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                statement.unreadable.push(Unreadable {
                    line,
                    why: error.to_string(),
                });
                continue;
            }
        };
        let field = |i: usize| record.get(i).map(str::trim).unwrap_or_default();
        let order_id = field(order);
        if order_id.is_empty() {
            statement.unreadable.push(Unreadable {
                line,
                why: format!("no {}", format.order_column),
            });
            continue;
        }
        let Ok(amount) = field(points).parse::<i64>() else {
            statement.unreadable.push(Unreadable {
                line,
                why: format!(
                    "{} {:?} is not a whole number",
                    format.points_column,
                    field(points)
                ),
            });
            continue;
        };
        let refund = match state.map(field) {
            None => false,
            Some(s) if format.deducted.iter().any(|d| d.eq_ignore_ascii_case(s)) => false,
            Some(s) if format.refunded.iter().any(|r| r.eq_ignore_ascii_case(s)) => true,
            Some(other) => {
                statement.unreadable.push(Unreadable {
                    line,
                    why: format!("state {other:?} is neither deducted nor refunded in the format"),
                });
                continue;
            }
        };
        let key = (
            order_id.to_owned(),
            user.map(field).unwrap_or_default().to_owned(),
        );
        let stated = statement.keys.entry(key).or_insert_with(|| Stated {
            line,
            ..Stated::default()
        });
        if refund {
            stated.refunded = true;
        } else {
            stated.deducted = stated.deducted.saturating_add(amount.abs());
            stated.deductions = stated.deductions.saturating_add(1);
        }
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_by_key_and_bad_ones_named_by_line() {
        let csv = "order_id,user_id,points,state\n\
                   o-1,u1,100,SUCCESS\n\
                   o-2,u1,50,DEDUCTED\n\
                   o-2,u1,50,REFUNDED\n\
                   o-3,u1,ten,SUCCESS\n\
                   ,u1,10,SUCCESS\n\
                   o-4,u1,10,FROZEN\n";
        let read = read(csv.as_bytes(), &StatementFormat::default()).unwrap();
        assert_eq!(read.rows, 6);
        assert_eq!(read.keys.len(), 2);
        let o2 = &read.keys[&("o-2".to_owned(), "u1".to_owned())];
        assert!(o2.refunded && o2.deducted == 50);
        let lines: Vec<u64> = read.unreadable.iter().map(|u| u.line).collect();
        assert_eq!(lines, vec![5, 6, 7]);
    }

    #[test]
    fn a_partner_format_is_read_as_configured() {
        let format = StatementFormat {
            order_column: "out_trade_no".into(),
            user_column: "-".into(),
            points_column: "amount".into(),
            state_column: String::new(),
            delimiter: ";".into(),
            ..StatementFormat::default()
        };
        let read = read(b"\xef\xbb\xbfout_trade_no;amount\no-1;7\no-1;7\n", &format).unwrap();
        let o1 = &read.keys[&("o-1".to_owned(), String::new())];
        assert_eq!((o1.deducted, o1.deductions), (14, 2));
        assert!(matches!(
            super::read(b"a;b\n", &format),
            Err(StatementError::MissingColumn(..))
        ));
    }
}
