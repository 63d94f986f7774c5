//! `[statement]`: how the partner's daily statement (CSV) reads, for
//! `jifen admin reconcile-statement` and the console's upload (issue 18). Flags override it.

use serde::Deserialize;

/// The columns and values of a partner's statement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatementFormat {
    /// The column holding Jifen's order id (the partner's `out_trade_no`, say).
    pub order_column: String,
    /// The column holding the user; empty when the statement has none (rows then match by
    /// order).
    pub user_column: String,
    /// The column holding the points deducted or given back.
    pub points_column: String,
    /// The column holding the row's state; empty when every row is a deduction.
    pub state_column: String,
    /// States that mean "deducted".
    pub deducted: Vec<String>,
    /// States that mean "given back" (a reversal of the order's deduction).
    pub refunded: Vec<String>,
    /// One character: `,`, `;`, `|` or `\t`.
    pub delimiter: String,
}

impl Default for StatementFormat {
    fn default() -> Self {
        Self {
            order_column: "order_id".to_owned(),
            user_column: "user_id".to_owned(),
            points_column: "points".to_owned(),
            state_column: "state".to_owned(),
            deducted: vec!["DEDUCTED".to_owned(), "SUCCESS".to_owned()],
            refunded: vec!["REFUNDED".to_owned(), "REVERSED".to_owned()],
            delimiter: ",".to_owned(),
        }
    }
}

impl StatementFormat {
    /// The delimiter as a byte; why not, for one that is not a single ASCII character.
    pub fn delimiter_byte(&self) -> Result<u8, String> {
        match self.delimiter.as_str() {
            "\\t" | "\t" => Ok(b'\t'),
            one if one.len() == 1 && one.is_ascii() => Ok(one.as_bytes()[0]),
            other => Err(format!("delimiter {other:?} must be one ASCII character")),
        }
    }

    /// Why the format cannot read a statement.
    pub fn check(&self) -> Result<(), String> {
        self.delimiter_byte()?;
        if self.order_column.trim().is_empty() || self.points_column.trim().is_empty() {
            return Err("order_column and points_column are needed".to_owned());
        }
        if !self.state_column.is_empty() && self.deducted.is_empty() {
            return Err("with a state_column, name the states that mean deducted".to_owned());
        }
        Ok(())
    }
}
