//! A partner's holds (TCC, DESIGN §12): `capabilities.freeze` with `hold_ttl` and the
//! `[freeze]`, `[confirm]`, `[cancel]` calls — all of them, or none.

use std::time::Duration;

use super::AdapterConfigError;
use super::call::{Call, RawCall};

/// A partner's hold calls: hold, capture, release; with how long a hold lives there.
#[derive(Debug, Clone)]
pub struct Holds {
    pub freeze: Call,
    pub confirm: Call,
    pub cancel: Call,
    pub ttl: Duration,
}

/// The parts of a file that declare holds.
pub(super) struct RawHolds {
    pub(super) freeze: Option<RawCall>,
    pub(super) confirm: Option<RawCall>,
    pub(super) cancel: Option<RawCall>,
    pub(super) ttl: Option<String>,
}

/// The holds a file declares (`declared`: `capabilities.freeze`), each call built by `call`
/// and the TTL read by `duration`; a declaration without its calls, or calls without it, is
/// refused, naming what is missing.
pub(super) fn build(
    declared: bool,
    raw: RawHolds,
    call: &dyn Fn(&'static str, RawCall) -> Result<Call, AdapterConfigError>,
    duration: &dyn Fn(&str, &str) -> Result<Duration, AdapterConfigError>,
    invalid: &dyn Fn(&str, String) -> AdapterConfigError,
) -> Result<Option<Holds>, AdapterConfigError> {
    match (declared, raw.freeze, raw.confirm, raw.cancel, raw.ttl) {
        (false, None, None, None, None) => Ok(None),
        (true, Some(freeze), Some(confirm), Some(cancel), Some(ttl)) => Ok(Some(Holds {
            freeze: call("freeze", freeze)?,
            confirm: call("confirm", confirm)?,
            cancel: call("cancel", cancel)?,
            ttl: duration("hold_ttl", &ttl)?,
        })),
        (false, ..) => Err(invalid(
            "capabilities.freeze",
            "is false, yet the file has [freeze], [confirm], [cancel] or hold_ttl: set \
             freeze = true to take this channel's lines by holds, or remove them"
                .to_owned(),
        )),
        (true, freeze, confirm, cancel, ttl) => {
            let missing: Vec<&str> = [
                ("[freeze]", freeze.is_none()),
                ("[confirm]", confirm.is_none()),
                ("[cancel]", cancel.is_none()),
                ("hold_ttl", ttl.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            Err(invalid(
                "capabilities.freeze",
                format!(
                    "is true, so the file needs {}: the calls that hold, capture and release \
                     points, and how long the partner keeps a hold",
                    missing.join(", ")
                ),
            ))
        }
    }
}
