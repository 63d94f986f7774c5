//! Parse, don't validate: every identifier and amount that crosses a system's edge becomes one
//! of these types first, and a bad value is refused there with the name of the field.
//!
//! Identifiers are at most [`MAX_ID_LEN`] bytes, have no whitespace, control characters or `:`
//! (`:` separates the parts of a message id, DESIGN §5). A channel id also names NATS subjects,
//! so it is restricted to ASCII letters, digits, `-` and `_`.

use std::fmt;

/// The longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// The largest amount one request may move. Bounding each amount keeps every sum of lines and
/// every balance far from `i64` overflow; balances are checked against `i64::MAX` too.
pub const MAX_POINTS: i64 = 1_000_000_000_000_000;

/// A request field that was missing or out of range. Maps to `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn check_id(field: &str, raw: &str, allowed: impl Fn(char) -> bool) -> Result<(), InvalidField> {
    if raw.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_ID_LEN} bytes, got {}", raw.len()),
        ));
    }
    if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
        return Err(InvalidField::new(
            field,
            format!("must not contain {bad:?}"),
        ));
    }
    Ok(())
}

fn text_id_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && c != ':'
}

fn subject_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $allowed:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses `raw`, naming `field` in the error.
            pub fn parse(field: &str, raw: impl Into<String>) -> Result<Self, InvalidField> {
                let raw = raw.into();
                check_id(field, &raw, $allowed)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// The client's idempotency key for an order.
    OrderId,
    text_id_char
);
text_id!(
    /// A user's account id within one channel.
    UserId,
    text_id_char
);
text_id!(
    /// The idempotency key of a credit or a grant.
    RequestId,
    text_id_char
);
text_id!(
    /// A points system's id; also a NATS subject token.
    ChannelId,
    subject_token_char
);

/// A positive amount of points, at most [`MAX_POINTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Points(i64);

impl Points {
    pub fn parse(field: &str, raw: i64) -> Result<Self, InvalidField> {
        if (1..=MAX_POINTS).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(InvalidField::new(
                field,
                format!("must be between 1 and {MAX_POINTS}, got {raw}"),
            ))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A channel's display name: 1 to 128 bytes of printable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &str, raw: impl Into<String>) -> Result<Self, InvalidField> {
        let raw = raw.into();
        check_id(field, raw.trim(), |c| !c.is_control())?;
        Ok(Self(raw.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest endpoint accepted, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 256;

/// A gRPC endpoint: an `http://` or `https://` URI with a host, e.g. `http://127.0.0.1:50061`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    pub fn parse(field: &str, raw: impl Into<String>) -> Result<Self, InvalidField> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(InvalidField::new(field, "must not be empty"));
        }
        if raw.len() > MAX_ENDPOINT_LEN {
            return Err(InvalidField::new(
                field,
                format!(
                    "must be at most {MAX_ENDPOINT_LEN} bytes, got {}",
                    raw.len()
                ),
            ));
        }
        let uri: tonic::codegen::http::Uri = raw
            .parse()
            .map_err(|e| InvalidField::new(field, format!("is not a URI: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(InvalidField::new(
                    field,
                    "must start with http:// or https://",
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(InvalidField::new(field, "must name a host"));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_odd_characters() {
        assert!(OrderId::parse("order_id", "o-1").is_ok());
        let empty = OrderId::parse("order_id", "").unwrap_err();
        assert_eq!(empty.field, "order_id");
        assert!(empty.reason.contains("empty"));
        assert!(OrderId::parse("order_id", "x".repeat(MAX_ID_LEN)).is_ok());
        let long = OrderId::parse("order_id", "x".repeat(MAX_ID_LEN + 1)).unwrap_err();
        assert!(long.reason.contains("at most 128 bytes"), "{long}");
        assert!(UserId::parse("user_id", "a b").is_err());
        assert!(UserId::parse("user_id", "a:b").is_err());
        assert!(UserId::parse("user_id", "a\nb").is_err());
        assert!(UserId::parse("user_id", "李雷").is_ok());
    }

    #[test]
    fn multibyte_ids_are_measured_in_bytes() {
        // 43 three-byte characters: 129 bytes.
        let raw = "积".repeat(43);
        assert!(UserId::parse("user_id", raw).is_err());
    }

    #[test]
    fn channel_ids_are_subject_tokens() {
        assert!(ChannelId::parse("channel_id", "alpha-1_b").is_ok());
        for bad in ["a.b", "a*", "a>", "a b", "", "ä"] {
            assert!(ChannelId::parse("channel_id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn points_are_positive_and_bounded() {
        assert_eq!(Points::parse("points", 1).map(Points::get), Ok(1));
        assert!(Points::parse("points", MAX_POINTS).is_ok());
        for bad in [0, -1, i64::MIN, MAX_POINTS + 1, i64::MAX] {
            let err = Points::parse("points", bad).unwrap_err();
            assert_eq!(err.field, "points");
        }
    }

    #[test]
    fn endpoints_need_a_scheme_and_host() {
        assert!(Endpoint::parse("endpoint", "http://127.0.0.1:50061").is_ok());
        assert!(Endpoint::parse("endpoint", "https://channel.example:443").is_ok());
        for bad in ["", "127.0.0.1:50061", "ftp://x", "http://", "not a uri"] {
            assert!(Endpoint::parse("endpoint", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_names_are_trimmed_printable_text() {
        assert_eq!(
            DisplayName::parse("name", "  Alpha Air  ").map(|n| n.as_str().to_owned()),
            Ok("Alpha Air".to_owned())
        );
        assert!(DisplayName::parse("name", "   ").is_err());
        assert!(DisplayName::parse("name", "a\u{7}").is_err());
    }
}
