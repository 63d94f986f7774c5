//! The console's page frame and the pieces pages share (maud templates: HTML escaped by
//! construction).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// A full page: navigation, the flash message, the content.
pub fn page(title: &str, session: &Session, flash: &Flash, content: Markup) -> Response {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Jifen console" }
                    link rel="stylesheet" href="/style.css";
                }
                body {
                    header {
                        span.brand { "Jifen" }
                        nav {
                            a href="/orders" { "Orders" }
                            a href="/orders?attention=1" { "Needs attention" }
                            a href="/dead-letters" { "Dead letters" }
                            a href="/stuck" { "Stuck" }
                            a href="/reconcile" { "Reconcile" }
                            a href="/channels" { "Channels" }
                            a href="/statements" { "Statements" }
                            a href="/audit" { "Audit" }
                        }
                        span.who title=(session.operator.role.as_str()) {
                            (session.operator.name) " · " (session.operator.role.as_str())
                        }
                        form method="post" action="/logout" {
                            (csrf(session))
                            button.quiet type="submit" { "Log out" }
                        }
                    }
                    main {
                        @if let Some((since, error)) = crate::bus_health::failing() {
                            div.flash.err {
                                strong { "The bus does not take messages" } " since " (time(since))
                                ": new orders and actions wait in the outbox and go out once it is back. "
                                "Check NATS (a full disk stops it storing; after freeing space, restart nats-server). "
                                span.muted { "Last error: " (error) }
                            }
                        }
                        (flash.markup())
                        (content)
                    }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

/// 403: the session's operator may not do this (a viewer).
pub fn denied(session: &Session, why: &str) -> Response {
    problem(
        session,
        "Not allowed",
        &format!("Not allowed: {why}. Nothing was changed."),
        StatusCode::FORBIDDEN,
    )
}

/// A page saying what went wrong, answered with `status`.
pub fn problem(session: &Session, title: &str, message: &str, status: StatusCode) -> Response {
    let flash = Flash {
        ok: None,
        error: Some(message.to_owned()),
    };
    let mut response = page(
        title,
        session,
        &flash,
        html! { p { a href="/orders" { "← Orders" } } },
    );
    *response.status_mut() = status;
    response
}

/// 429: too many wrong tokens from this address.
pub fn too_many(retry_after: std::time::Duration) -> Response {
    let mut response = login(
        Some(&format!(
            "Too many wrong tokens from this address: try again in {} s.",
            retry_after.as_secs()
        )),
        "",
    );
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after.as_secs().to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

/// Where a login may lead: a page of this console (a path, never another site).
pub fn safe_next(raw: &str) -> Option<&str> {
    let fits = raw.starts_with('/')
        && !raw.starts_with("//")
        && !raw.starts_with("/\\")
        && !raw.starts_with("/login")
        && raw.len() <= 2_000
        && raw.chars().all(|c| c.is_ascii_graphic());
    fits.then_some(raw)
}

/// The login page, with an error when a token was refused; it leads to `next` after.
pub fn login(error: Option<&str>, next: &str) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · Jifen console" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                form.login method="post" action="/login" {
                    h1 { "Jifen console" }
                    @if let Some(error) = error { div.flash.err { (error) } }
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="current-password" autofocus;
                    @if let Some(next) = safe_next(next) { input type="hidden" name="next" value=(next); }
                    button type="submit" { "Log in" }
                    p.muted { "The token the mall was started with (" code { "JIFEN_ADMIN_TOKEN" } "); " code { "jifen dev" } " prints it." }
                }
            }
        }
    };
    (status, Html(body.into_string())).into_response()
}

/// The hidden CSRF field every form that changes something carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A state as a coloured badge.
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge s-" (state) } { (state) } }
}

pub fn attention() -> Markup {
    html! { span.badge.attention { "needs attention" } }
}

/// A time as the console shows it, with its zone.
pub fn time(unix_ms: i64) -> String {
    jifen_mesh::time::format_utc(unix_ms)
}

/// Percent-encodes a path segment or a query value.
pub fn enc(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// A message shown once, after an action (carried in the redirect's query).
#[derive(Debug, Clone, Default)]
pub struct Flash {
    pub ok: Option<String>,
    pub error: Option<String>,
}

impl Flash {
    pub fn markup(&self) -> Markup {
        html! {
            @if let Some(ok) = &self.ok { div.flash { (ok) } }
            @if let Some(error) = &self.error { div.flash.err { (error) } }
        }
    }

    /// `ok=…` or `err=…` for a redirect, stamped and signed for `session`: only the console
    /// puts words in its banner (a link of anyone else's shows none), and only for a moment (a
    /// reload later does not repeat it).
    pub fn query(session: &Session, ok: bool, message: &str) -> String {
        let kind = if ok { "ok" } else { "err" };
        let at = jifen_mesh::time::now_unix_ms() / 1000;
        let sig = flash_signature(&session.csrf, kind, at, message);
        format!("{kind}={}&at={at}&sig={sig}", enc(message))
    }

    /// The banner a redirect asked for, if the console signed it for this session lately.
    pub fn from_query(
        session: &Session,
        query: &std::collections::HashMap<String, String>,
    ) -> Self {
        let at: i64 = query.get("at").and_then(|a| a.parse().ok()).unwrap_or(0);
        let fresh = (jifen_mesh::time::now_unix_ms() / 1000 - at).abs() <= FLASH_SECONDS;
        let signed = |kind: &str| {
            let message = query.get(kind)?;
            let sig = query.get("sig")?;
            (fresh && *sig == flash_signature(&session.csrf, kind, at, message))
                .then(|| message.clone())
        };
        Self {
            ok: signed("ok"),
            error: signed("err"),
        }
    }
}

/// How long after an action its banner shows.
const FLASH_SECONDS: i64 = 30;

/// HMAC-SHA256 of the banner under the session's secret (its CSRF token), hex.
fn flash_signature(secret: &str, kind: &str, at: i64, message: &str) -> String {
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{kind}\n{at}\n{message}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A 403 page for a change without its CSRF token: nothing was changed.
pub fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            html! {
                (DOCTYPE)
                html lang="en" {
                    head {
                        meta charset="utf-8";
                        meta name="viewport" content="width=device-width, initial-scale=1";
                        title { "Refused · Jifen console" }
                        link rel="stylesheet" href="/style.css";
                    }
                    body { main {
                        div.flash.err { "Missing or wrong CSRF token (the page was old, or the form came from elsewhere): nothing was changed." }
                        p { a href="/" { "← Back to the console" } " — then do it again from there." }
                    } }
                }
            }
            .into_string(),
        ),
    )
        .into_response()
}

/// JSON, pretty-printed for reading.
pub fn json_block(raw: &str) -> Markup {
    let pretty = serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_owned());
    html! { pre { code { (pretty) } } }
}

/// A `datetime-local` value, read as UTC; 0 for an empty one.
pub fn utc_input(raw: &str) -> Result<i64, String> {
    if raw.trim().is_empty() {
        return Ok(0);
    }
    let parse = |pattern: &str| {
        let format = time::format_description::parse_borrowed::<2>(pattern).ok()?;
        time::PrimitiveDateTime::parse(raw.trim(), &format).ok()
    };
    let at = parse("[year]-[month]-[day]T[hour]:[minute]")
        .or_else(|| parse("[year]-[month]-[day]T[hour]:[minute]:[second]"))
        .ok_or(())
        .map_err(|_| format!("{raw:?} is not a date and time (YYYY-MM-DDTHH:MM)"))?;
    i64::try_from(at.assume_utc().unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{raw:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_time_is_read_as_utc() {
        assert_eq!(utc_input(""), Ok(0));
        assert_eq!(utc_input("1970-01-01T00:01"), Ok(60_000));
        assert_eq!(utc_input("1970-01-01T00:01:30"), Ok(90_000));
        assert!(utc_input("tomorrow").is_err());
    }

    #[test]
    fn a_login_leads_only_to_a_page_of_the_console() {
        assert_eq!(safe_next("/orders/o-1?x=1"), Some("/orders/o-1?x=1"));
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil",
            "/login",
            "",
            "/a b",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }
}
