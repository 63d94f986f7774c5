//! The admin API's guard: `authorization: Bearer <token>` on every call, compared in constant
//! time; without a configured token every call is refused.

use std::sync::Arc;

use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` on every admin call.
#[derive(Clone)]
pub struct Auth {
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("configured", &self.token.is_some())
            .finish()
    }
}

impl Auth {
    /// Without a token every admin call is refused.
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }

    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Err(Status::unauthenticated(
                "the admin API has no token configured (JIFEN_ADMIN_TOKEN)",
            ));
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or wrong admin token"))
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn with_token(token: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
        request
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let auth = Auth::new(Some("s3cret".into()));
        assert!(auth.check(with_token("Bearer s3cret")).is_ok());
        for bad in ["Bearer s3cre", "Bearer s3cret2", "s3cret", "Bearer "] {
            let status = auth.check(with_token(bad)).unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{bad}");
        }
        assert_eq!(
            auth.check(Request::new(())).unwrap_err().code(),
            Code::Unauthenticated
        );
        let none = Auth::new(None);
        assert_eq!(
            none.check(with_token("Bearer ")).unwrap_err().code(),
            Code::Unauthenticated
        );
    }
}
