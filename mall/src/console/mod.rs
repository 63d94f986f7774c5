//! The operator's console (DESIGN §10): server-rendered pages served by the mall on
//! `--console-listen`, guarded by the operators' tokens (a login opens a session of that
//! operator; every change is a POST with its CSRF token; a viewer's change is 403), acting
//! through the admin API's own code so that every change is written into the order's history
//! with its note and the operator's name, and into the audit log. No JavaScript.

mod actions;
mod audit;
mod channels;
mod chart;
mod confirm;
mod dead_letters;
mod letter_actions;
mod order_page;
mod pages;
pub mod session;
mod statements;
mod views;

use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::admin::Gate;
use crate::store::OrderStore;
use session::Session;

const STYLE: &str = include_str!("style.css");

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    pub(crate) admin: Admin,
    pub(crate) store: OrderStore,
    /// Where a login's token becomes an operator, shared with the admin API (and so is the
    /// count of wrong tokens per address).
    pub(crate) gate: Gate,
    /// The session cookie is sent over HTTPS only.
    pub(crate) secure_cookie: bool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl Console {
    pub fn new(admin: Admin, gate: Gate, secure_cookie: bool) -> Self {
        Self {
            store: admin.store.clone(),
            admin,
            gate,
            secure_cookie,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(pages::home))
            .route("/style.css", get(style))
            .route("/login", get(login_page).post(actions::login))
            .route("/logout", post(actions::logout))
            .route("/orders", get(pages::orders))
            .route("/orders/{id}", get(order_page::order))
            .route("/orders/{id}/compensate", post(actions::compensate))
            .route("/orders/{id}/retry", post(actions::retry))
            .route("/orders/{id}/clear-flag", post(actions::clear_flag))
            .route("/orders/{id}/record-outcome", post(actions::record_outcome))
            .route("/orders/{id}/manual-refund", post(actions::manual_refund))
            .route("/orders/{id}/settle", post(actions::settle))
            .route("/dead-letters", get(dead_letters::dead_letters_page))
            .route("/dead-letters/redrive", post(letter_actions::redrive_many))
            .route("/dead-letters/{id}", get(pages::dead_letter))
            .route("/dead-letters/{id}/redrive", post(letter_actions::redrive))
            .route("/dead-letters/{id}/discard", post(letter_actions::discard))
            .route("/stuck", get(pages::stuck))
            .route("/reconcile", get(pages::reconcile))
            .route("/channels", get(channels::channels))
            .route("/channels/{id}", get(channels::channel))
            .route("/channels/{id}/pause", post(channels::pause))
            .route("/channels/{id}/resume", post(channels::resume))
            .route("/channels/{id}/auto-redrive", post(channels::auto_redrive))
            .route("/audit", get(audit::audit_page))
            .route(
                "/statements",
                get(statements::statements).post(statements::upload).layer(
                    axum::extract::DefaultBodyLimit::max(crate::statement::MAX_BYTES + 64 * 1024),
                ),
            )
            .route("/statements/{id}", get(statements::report))
            .layer(axum::middleware::map_response(guard_headers))
            .with_state(self)
    }

    /// A page saying what went wrong (an unknown id, a bad filter).
    fn error_page(&self, session: &Session, message: &str) -> Response {
        views::problem(session, "Error", message, StatusCode::NOT_FOUND)
    }

    fn storage_error(&self, session: &Session, error: &sqlx::Error) -> Response {
        tracing::error!(%error, "console: storage error");
        let mut response =
            self.error_page(session, "The mall's database did not answer; try again.");
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
    }
}

/// Every answer: not framed by another site, no scripts or styles from elsewhere, no caching of
/// operators' data, no referrer carrying order ids away.
async fn guard_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

async fn style() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn login_page(params: pages::Params) -> Response {
    views::login(
        None,
        params.get("next").map(String::as_str).unwrap_or_default(),
    )
}

/// Serves the console on `listener` until `shutdown`.
pub async fn serve(
    console: Console,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "operator's console listening");
    // The client's address: wrong tokens are counted per address.
    let app = console
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
