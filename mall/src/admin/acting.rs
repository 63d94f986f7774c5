//! Who is calling, whether they may act, and the audit line of what they did (DESIGN §11).
//! The guard (gRPC) and the console's session put the [`Operator`] in the request; every call
//! that changes something asks [`Admin::acting`] first and ends through [`Admin::audited`].

use jifen_mesh::time::now_unix_ms;
use tonic::{Request, Status};

use super::Admin;
use crate::error::MallError;
use crate::operators::Operator;
use crate::store::audit::{self, AuditEntry};

/// An operator and where their call came from.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) operator: Operator,
    pub(crate) client: String,
}

/// The operator the guard or the console put in the request.
pub(crate) fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    let operator = request
        .extensions()
        .get::<Operator>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no operator: the call did not pass the guard"))?;
    Ok(Caller {
        operator,
        client: request
            .remote_addr()
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default(),
    })
}

impl Admin {
    /// The caller, if their role lets them act; a viewer's attempt is refused and audited.
    pub(crate) async fn acting<T>(
        &self,
        request: &Request<T>,
        action: &str,
        target: &str,
    ) -> Result<Caller, Status> {
        let caller = caller(request)?;
        if caller.operator.role.may_act() {
            return Ok(caller);
        }
        let why = format!(
            "{} is a {}: reading only",
            caller.operator.name,
            caller.operator.role.as_str()
        );
        self.write_audit(&caller, action, target, "", &format!("refused: {why}"))
            .await;
        Err(Status::permission_denied(why))
    }

    /// Records what `caller` did and how it ended, then hands the result on.
    pub(crate) async fn audited<T>(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        note: &str,
        result: Result<T, MallError>,
    ) -> Result<T, MallError> {
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(error) => format!("failed: {error}"),
        };
        self.write_audit(caller, action, target, note, &outcome)
            .await;
        result
    }

    async fn write_audit(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        note: &str,
        result: &str,
    ) {
        let entry = AuditEntry {
            at_ms: now_unix_ms(),
            operator: caller.operator.name.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            note: note.to_owned(),
            result: result.to_owned(),
            client: caller.client.clone(),
        };
        // The action stands (it is committed); a lost audit line is an alarm of its own.
        if let Err(error) = audit::write(self.store.database(), &entry).await {
            tracing::error!(%error, operator = %entry.operator, action, target, "cannot write the audit log");
        }
    }
}
