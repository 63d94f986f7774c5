//! `[pending]`: the poll schedule of answers that say "processing".

use std::time::Duration;

use serde::Deserialize;

/// `[pending]`: when a call answered "processing" is asked again, and until when.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPending {
    /// Waits before each query, comma-separated; the last repeats (`1s,2s,5s,10s,30s`).
    poll: String,
    /// Past this, from the first "processing", the outcome is an operator's.
    deadline: String,
}

impl RawPending {
    pub(super) fn build(self) -> Result<jifen_mesh::connector::PollSchedule, (String, String)> {
        let delays = self
            .poll
            .split(',')
            .map(|d| jifen_mesh::config::parse_duration(d.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ("pending.poll".to_owned(), m))?;
        if delays.is_empty() || delays.iter().any(Duration::is_zero) {
            return Err((
                "pending.poll".into(),
                "give waits above zero, e.g. \"1s,2s,5s\"".into(),
            ));
        }
        let deadline = jifen_mesh::config::parse_duration(&self.deadline)
            .map_err(|m| ("pending.deadline".to_owned(), m))?;
        if deadline < delays[0] {
            return Err((
                "pending.deadline".into(),
                "is shorter than the first wait".into(),
            ));
        }
        Ok(jifen_mesh::connector::PollSchedule { delays, deadline })
    }
}
