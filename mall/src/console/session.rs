//! The console's guard (DESIGN §10, §11): the login form takes an operator's token and opens a
//! session of that operator
//! (an id in an HttpOnly, SameSite=Strict cookie; the row in `console_sessions`, so every mall
//! replica knows it); every change must carry the session's CSRF token. Without a valid session
//! a browser is sent to the login page and any other client gets 401.

use axum::extract::FromRequestParts;
use axum::http::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jifen_mesh::time::now_unix_ms;
use sqlx::Row;

use super::Console;
use crate::admin::constant_time_eq;
use crate::operators::{Operator, Role};

pub const COOKIE_NAME: &str = "jifen_console";
/// How long a session lasts after login.
const SESSION_MS: i64 = 12 * 3_600_000;

/// A logged-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    pub operator: Operator,
}

impl Session {
    /// A request to the admin API's code, made by this session's operator.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(self.operator.clone());
        request
    }

    /// Whether a submitted form carries this session's CSRF token.
    pub fn csrf_ok(&self, given: &str) -> bool {
        !given.is_empty() && constant_time_eq(given.as_bytes(), self.csrf.as_bytes())
    }
}

/// 128 random bits, hex-encoded.
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0_u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

impl FromRequestParts<Console> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let found = match cookie(&parts.headers, COOKIE_NAME) {
            Some(id) => console.session(&id).await,
            None => Ok(None),
        };
        match found {
            Ok(Some(session)) => Ok(session),
            // The page asked for is kept through the login (a GET's; a form is posted again by
            // hand).
            Ok(None) if wants_html(&parts.headers) => {
                Err(redirect(&match parts.uri.path_and_query() {
                    Some(asked)
                        if parts.method == axum::http::Method::GET && asked.as_str() != "/" =>
                    {
                        format!("/login?next={}", super::views::enc(asked.as_str()))
                    }
                    _ => "/login".to_owned(),
                }))
            }
            Ok(None) => Err((StatusCode::UNAUTHORIZED, "log in first\n").into_response()),
            Err(error) => {
                tracing::error!(%error, "console: cannot read sessions");
                Err((StatusCode::SERVICE_UNAVAILABLE, "storage error\n").into_response())
            }
        }
    }
}

impl Console {
    async fn session(&self, id: &str) -> Result<Option<Session>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, csrf, operator, role FROM console_sessions \
             WHERE id = $1 AND expires_at_ms > $2",
        )
        .bind(id)
        .bind(now_unix_ms())
        .fetch_optional(self.store.database().pool())
        .await?;
        row.map(|r| {
            let role: String = r.try_get("role")?;
            Ok(Session {
                id: r.try_get("id")?,
                csrf: r.try_get("csrf")?,
                operator: Operator {
                    name: r.try_get("operator")?,
                    // A role this version does not know reads only.
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                },
            })
        })
        .transpose()
    }

    /// Opens a session of `operator` (and drops expired ones); the answer sets its cookie.
    /// Opens a session for `operator` and leads to `next` (a page of the console).
    pub async fn open_session(
        &self,
        operator: &Operator,
        next: &str,
    ) -> Result<Response, LoginError> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = now_unix_ms();
        let pool = self.store.database().pool();
        sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms <= $1")
            .bind(now)
            .execute(pool)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id, csrf, expires_at_ms, operator, role) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(&csrf)
        .bind(now.saturating_add(SESSION_MS))
        .bind(&operator.name)
        .bind(operator.role.as_str())
        .execute(pool)
        .await?;
        let mut response = redirect(next);
        let cookie = format!(
            "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            SESSION_MS / 1000,
            if self.secure_cookie { "; Secure" } else { "" }
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(SET_COOKIE, value);
        }
        Ok(response)
    }

    pub async fn close_session(&self, session: &Session) -> Result<Response, sqlx::Error> {
        sqlx::query("DELETE FROM console_sessions WHERE id = $1")
            .bind(&session.id)
            .execute(self.store.database().pool())
            .await?;
        let mut response = redirect("/login");
        let cookie = format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(SET_COOKIE, value);
        }
        Ok(response)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot make a session id")]
    Random(#[from] std::io::Error),
    #[error("storage error")]
    Storage(#[from] sqlx::Error),
}
