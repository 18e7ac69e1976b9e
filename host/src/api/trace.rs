//! `GET /v1/executions/{id}/trace`: an execution's span tree (see
//! [`crate::trace`]), built from its record, steps and approval waits.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::auth::Caller;
use crate::store::ApprovalFilter;
use crate::trace::{Span, spans};

/// Approval waits shown in one trace, at most.
const MAX_APPROVALS: u32 = 100;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Trace {
    /// The W3C trace id (its `traceparent`'s, or its own).
    trace_id: Option<String>,
    /// The execution first, then the spans under it by start: its wait in the
    /// queue, model calls, tool calls, the agent's own steps, approval waits.
    spans: Vec<Span>,
}

/// An execution's trace: a span tree of its queue wait, model calls, tool
/// calls, steps and approval waits, with times.
#[utoipa::path(get, path = "/v1/executions/{id}/trace", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The trace", body = Trace), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn trace(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Trace>, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let execution = super::executions::load(&app, id.clone()).await?;
    let steps = app.stores.executions.steps(&id).await?;
    let (approvals, _) = app
        .stores
        .approvals
        .list(ApprovalFilter {
            workspace: caller.workspace,
            status: None,
            agent_id: None,
            execution_id: Some(id),
            after: None,
            limit: MAX_APPROVALS,
        })
        .await?;
    Ok(Json(Trace {
        spans: spans(&execution, &steps, &approvals),
        trace_id: execution.trace_id,
    }))
}
