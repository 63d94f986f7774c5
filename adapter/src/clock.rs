//! The `{timestamp}` of a request, in the form a partner wants: unix seconds or milliseconds,
//! RFC 3339, or a pattern such as `yyyy-MM-dd HH:mm:ss` at a fixed UTC offset (most Chinese
//! gateways want Beijing time, `+08:00`).

use time::format_description::OwnedFormatItem;
use time::{OffsetDateTime, UtcOffset};

#[derive(Debug, Clone, Default)]
pub enum TimestampFormat {
    #[default]
    UnixSeconds,
    UnixMillis,
    Rfc3339(UtcOffset),
    Pattern(OwnedFormatItem, UtcOffset),
}

impl TimestampFormat {
    /// `unix`, `unix_ms`, `rfc3339` or a pattern of `yyyy MM dd HH mm ss SSS` and literal
    /// text; `offset` is `+08:00`-like (UTC when absent).
    pub fn parse(raw: &str, offset: Option<&str>) -> Result<Self, String> {
        let offset = match offset {
            None => UtcOffset::UTC,
            Some(text) => parse_offset(text)?,
        };
        Ok(match raw {
            "unix" => Self::UnixSeconds,
            "unix_ms" => Self::UnixMillis,
            "rfc3339" => Self::Rfc3339(offset),
            pattern => Self::Pattern(java_pattern(pattern)?, offset),
        })
    }

    pub fn format(&self, now: OffsetDateTime) -> String {
        match self {
            Self::UnixSeconds => now.unix_timestamp().to_string(),
            Self::UnixMillis => (now.unix_timestamp_nanos() / 1_000_000).to_string(),
            Self::Rfc3339(offset) => now
                .to_offset(*offset)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            Self::Pattern(items, offset) => {
                now.to_offset(*offset).format(items).unwrap_or_default()
            }
        }
    }
}

fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    let bad = || format!("{text:?} is not a UTC offset such as +08:00");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1i8, &text[1..]),
        Some(b'-') => (-1i8, &text[1..]),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    let hours: i8 = hours.parse().map_err(|_| bad())?;
    let minutes: i8 = minutes.parse().map_err(|_| bad())?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| bad())
}

/// A Java-style date pattern as `time`'s format description.
fn java_pattern(pattern: &str) -> Result<OwnedFormatItem, String> {
    const TOKENS: [(&str, &str); 7] = [
        ("yyyy", "[year]"),
        ("MM", "[month]"),
        ("dd", "[day]"),
        ("HH", "[hour]"),
        ("mm", "[minute]"),
        ("ss", "[second]"),
        ("SSS", "[subsecond digits:3]"),
    ];
    let mut description = String::new();
    let mut rest = pattern;
    let mut tokens = 0;
    'outer: while let Some(c) = rest.chars().next() {
        for (token, item) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                description.push_str(item);
                rest = after;
                tokens += 1;
                continue 'outer;
            }
        }
        if c.is_ascii_alphabetic() {
            return Err(format!(
                "{pattern:?}: {c:?} is no part of a timestamp pattern (yyyy MM dd HH mm ss SSS), \
                 nor unix, unix_ms or rfc3339"
            ));
        }
        match c {
            '[' => description.push_str("[["),
            _ => description.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    if tokens == 0 {
        return Err(format!("{pattern:?} names no part of a timestamp"));
    }
    time::format_description::parse_owned::<2>(&description)
        .map_err(|e| format!("{pattern:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_writes_the_same_instant() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let beijing = TimestampFormat::parse("yyyy-MM-dd HH:mm:ss", Some("+08:00")).unwrap();
        assert_eq!(beijing.format(now), "2023-11-15 06:13:20");
        let compact = TimestampFormat::parse("yyyyMMddHHmmss", None).unwrap();
        assert_eq!(compact.format(now), "20231114221320");
        assert_eq!(
            TimestampFormat::parse("unix", None).unwrap().format(now),
            "1700000000"
        );
        assert_eq!(
            TimestampFormat::parse("unix_ms", None).unwrap().format(now),
            "1700000000000"
        );
        assert_eq!(
            TimestampFormat::parse("rfc3339", Some("+08:00"))
                .unwrap()
                .format(now),
            "2023-11-15T06:13:20+08:00"
        );
    }

    #[test]
    fn a_pattern_with_unknown_letters_or_a_bad_offset_is_refused() {
        assert!(TimestampFormat::parse("yyyy-MM-dd hh:mm", None).is_err());
        assert!(TimestampFormat::parse("unix", Some("8")).is_err());
        assert!(TimestampFormat::parse("---", None).is_err());
    }
}
