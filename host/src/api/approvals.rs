//! Approvals over HTTP: the inbox (`/v1/approvals`, filtered, in cursor pages),
//! one request, and the decisions (`approve`, `reject`), by request or by the
//! execution whose request is open. Deciding needs an `admin` or `approver`
//! key of the request's workspace; another workspace's requests are answered
//! like missing ones.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, one_of, page_limit};
use crate::app::App;
use crate::auth::Caller;
use crate::executions::{Ask, DecideError, Decider};
use crate::record::{Approval, ApprovalStatus};
use crate::store::ApprovalFilter;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
/// Longest comment or reason kept.
const MAX_COMMENT_BYTES: usize = 4096;
/// Most bytes of JSON an approver hands the agent.
const MAX_DATA_BYTES: usize = 64 << 10;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `approved`, `rejected`, `expired`, `cancelled`.
    #[param(value_type = Option<ApprovalStatus>)]
    status: Option<String>,
    /// Agent id or name.
    agent_id: Option<String>,
    execution_id: Option<String>,
    /// The previous page's `next_cursor`.
    after: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ApprovalPage<'a> {
    data: &'a [Approval],
    has_more: bool,
    /// Pass as `after` to get the next page.
    next_cursor: Option<&'a str>,
}

/// The workspace's approval requests, newest first, filtered, in cursor pages.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals",
    params(ListQuery),
    responses((status = 200, description = "A page", body = ApprovalPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let all: Vec<&str> = ApprovalStatus::ALL.iter().map(|s| s.as_str()).collect();
    let status = one_of("status", q.status, ApprovalStatus::parse, &all)?;
    let agent_id = q.agent_id.map(|a| app.registry.agent_id(&caller.workspace, a));
    let filter = ApprovalFilter {
        workspace: caller.workspace,
        status,
        agent_id,
        execution_id: q.execution_id,
        after: q.after,
        limit: page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?,
    };
    let (rows, has_more) = app.stores.approvals.list(filter).await?;
    let next_cursor = if has_more {
        rows.last().map(|a| a.id.as_str())
    } else {
        None
    };
    Ok(Json(ApprovalPage {
        data: &rows,
        has_more,
        next_cursor,
    })
    .into_response())
}

/// One approval request, with its decision once made.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals",
    params(("id" = String, Path, description = "Approval id")),
    responses((status = 200, description = "The request", body = Approval), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    match app.stores.approvals.get(&id).await? {
        Some(a) if a.workspace == caller.workspace => Ok(Json(a)),
        _ => Err(ApiError::NotFound(format!("no approval request {id:?}"))),
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Kept with the decision.
    comment: Option<String>,
    /// JSON handed to the agent with the approval.
    #[schema(value_type = Option<serde_json::Value>)]
    data: Option<Box<RawValue>>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Handed to the agent, and kept with the decision.
    reason: Option<String>,
}

/// A JSON body that may be left out.
fn optional_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not the JSON expected: {e}")))
}

fn decider(caller: &Caller) -> Result<Decider, ApiError> {
    Decider::of_key(
        &caller.workspace,
        caller.key_id.as_deref(),
        caller.key_name.as_deref(),
        caller.role,
    )
    .ok_or_else(|| ApiError::Forbidden("deciding approval requests needs an admin or approver key".into()))
}

fn comment(text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        Some(t) if t.len() > MAX_COMMENT_BYTES => Err(ApiError::unprocessable(
            "invalid_request",
            format!("the comment is over {MAX_COMMENT_BYTES} bytes"),
        )),
        other => Ok(other),
    }
}

async fn decide(app: &Arc<App>, caller: &Caller, id: &str, ask: Ask) -> Result<Json<Approval>, ApiError> {
    let who = decider(caller)?;
    Ok(Json(app.executions.decide(&who, id, ask).await?))
}

fn approval_ask(body: Option<ApproveBody>) -> Result<Ask, ApiError> {
    let body = body.unwrap_or_default();
    let data = match body.data {
        Some(d) if d.get().len() > MAX_DATA_BYTES => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                format!("data is over {MAX_DATA_BYTES} bytes"),
            ));
        }
        Some(d) if crate::json_text::check(d.get()).is_err() => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "data is not JSON the host accepts",
            ));
        }
        Some(d) => Some(Arc::from(d)),
        None => None,
    };
    Ok(Ask {
        approve: true,
        comment: comment(body.comment)?,
        data,
    })
}

fn rejection_ask(body: Option<RejectBody>) -> Result<Ask, ApiError> {
    Ok(Ask {
        approve: false,
        comment: comment(body.unwrap_or_default().reason)?,
        data: None,
    })
}

/// Approves a request; its run goes on. The same decision again answers 200.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "Approval id")), request_body = Option<ApproveBody>,
    responses((status = 200, description = "Decided", body = Approval), (status = 400, description = "A body that is not the JSON expected", body = ErrorBody), (status = 422, description = "A comment, reason or data over its limit, or data that is not JSON the host accepts", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin or approver key, or not one the request names", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "Decided otherwise already", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn approve(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Approval>, ApiError> {
    let ask = approval_ask(optional_body(&body)?)?;
    decide(&app, &caller, &id, ask).await
}

/// Rejects a request; its run ends `rejected` unless the agent goes on.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "approvals",
    params(("id" = String, Path, description = "Approval id")), request_body = Option<RejectBody>,
    responses((status = 200, description = "Decided", body = Approval), (status = 400, description = "A body that is not the JSON expected", body = ErrorBody), (status = 422, description = "A comment, reason or data over its limit, or data that is not JSON the host accepts", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin or approver key, or not one the request names", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "Decided otherwise already", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn reject(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Approval>, ApiError> {
    let ask = rejection_ask(optional_body(&body)?)?;
    decide(&app, &caller, &id, ask).await
}

/// Approves the execution's open request.
#[utoipa::path(post, path = "/v1/executions/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "Execution id")), request_body = Option<ApproveBody>,
    responses((status = 200, description = "Decided", body = Approval), (status = 400, description = "A body that is not the JSON expected", body = ErrorBody), (status = 422, description = "A comment, reason or data over its limit, or data that is not JSON the host accepts", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin or approver key, or not one the request names", body = ErrorBody), (status = 404, description = "No such execution, or none with an open request", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn approve_execution(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Approval>, ApiError> {
    let ask = approval_ask(optional_body(&body)?)?;
    let open = app.executions.open_request(&caller.workspace, &id).await?;
    decide(&app, &caller, &open.id, ask).await
}

/// Rejects the execution's open request.
#[utoipa::path(post, path = "/v1/executions/{id}/reject", tag = "approvals",
    params(("id" = String, Path, description = "Execution id")), request_body = Option<RejectBody>,
    responses((status = 200, description = "Decided", body = Approval), (status = 400, description = "A body that is not the JSON expected", body = ErrorBody), (status = 422, description = "A comment, reason or data over its limit, or data that is not JSON the host accepts", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin or approver key, or not one the request names", body = ErrorBody), (status = 404, description = "No such execution, or none with an open request", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn reject_execution(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Approval>, ApiError> {
    let ask = rejection_ask(optional_body(&body)?)?;
    let open = app.executions.open_request(&caller.workspace, &id).await?;
    decide(&app, &caller, &open.id, ask).await
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::NotFound(_) | DecideError::NoneOpen(_) => ApiError::NotFound(e.to_string()),
            DecideError::NotAnApprover(_) => ApiError::Forbidden(e.to_string()),
            DecideError::AlreadyDecided(ref a) => ApiError::Conflict {
                code: "already_decided",
                status: Some(a.status.as_str()),
                message: e.to_string(),
            },
            DecideError::Store(s) => s.into(),
        }
    }
}
