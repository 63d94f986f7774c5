//! The confirmation step of a destructive action (issue 18): the first POST of a compensate,
//! discard, redrive, pause or resume shows what will happen and asks for the note; only the
//! second, carrying `confirmed=yes`, acts. Both carry the session's CSRF token.

use axum::response::Response;
use maud::{Markup, html};

use super::session::Session;
use super::views::{Flash, csrf, page};

/// The form fields the confirmation page does not repeat as they came.
const OWN_FIELDS: [&str; 3] = ["csrf", "confirmed", "note"];

/// `None` when the form was confirmed; else the page that asks, posting the same fields to
/// `action` again.
pub(super) fn confirmed(
    session: &Session,
    fields: &[(String, String)],
    action: &str,
    title: &str,
    what_happens: Markup,
    back: &str,
) -> Option<Response> {
    let value = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    if value("confirmed") == "yes" {
        return None;
    }
    let content = html! {
        h1 { (title) "?" }
        div.confirm {
            (what_happens)
            form.confirm method="post" action=(action) {
                (csrf(session))
                input type="hidden" name="confirmed" value="yes";
                @for (key, value) in fields.iter().filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str())) {
                    input type="hidden" name=(key) value=(value);
                }
                label for="confirm-note" { "Note (required: what you saw or decided; kept in the history and the audit)" }
                div.row {
                    input.note #confirm-note type="text" name="note" required value=(value("note"));
                }
                div.row {
                    button.danger type="submit" { "Yes, " (title.to_lowercase()) }
                    a href=(back) { "Cancel" }
                }
            }
        }
    };
    Some(page(title, session, &Flash::default(), content))
}

/// What a confirmation asks: where the form goes again, the action's name, what will happen,
/// and where *Cancel* leads.
pub(super) struct Ask {
    pub action: String,
    pub title: &'static str,
    pub what_happens: Markup,
    pub back: String,
}

/// The form of a destructive action: admitted (CSRF, the operator's right to `action` on
/// `target`) and confirmed — else the page that refuses or asks.
pub(super) async fn admitted_and_confirmed(
    console: &super::Console,
    session: &Session,
    body: &[u8],
    action: &str,
    target: &str,
    ask: Ask,
) -> Result<super::actions::Form, Response> {
    let form = super::actions::admitted(console, session, body, action, target).await?;
    match confirmed(
        session,
        form.fields(),
        &ask.action,
        ask.title,
        ask.what_happens,
        &ask.back,
    ) {
        Some(page) => Err(page),
        None => Ok(form),
    }
}
