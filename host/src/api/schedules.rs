//! Schedules over HTTP: create, list, get, change, delete, pause, resume and
//! trigger a schedule of the caller's workspace, and "make repeatable" from an
//! execution. Another workspace's schedules are answered like missing ones.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, page_limit, whole_number};
use crate::app::App;
use crate::auth::Caller;
use crate::record::{ExecutionView, Overlap};
use crate::schedules::{SchedulePatch, ScheduleSpec, ScheduleView, Schedules};
use crate::store::ScheduleFilter;
use crate::time;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The agent (id or name).
    agent: String,
    /// Run this version at every slot; none: the agent's latest at each run.
    #[serde(default, deserialize_with = "whole_number")]
    version: Option<u32>,
    /// Five fields (minute hour day-of-month month weekday) or six (seconds
    /// first); `@hourly`, `@daily`... too.
    cron: String,
    /// IANA time zone the pattern is read in (default `UTC`).
    #[serde(default)]
    timezone: Option<String>,
    /// Each run's input (checked against the agent's input_schema).
    #[serde(default)]
    #[schema(value_type = serde_json::Value)]
    input: Option<Box<RawValue>>,
    /// A JSON object kept on each run.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Option<Box<RawValue>>,
    /// 0 to 100 (default 50).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(maximum = 100)]
    priority: Option<u8>,
    /// While the previous run has not ended: `skip` the slot (default),
    /// `buffer_one` (run once it ends), or `allow` (run anyway).
    #[serde(default)]
    overlap: Option<Overlap>,
    /// After downtime, the newest missed slot still runs if it is at most this
    /// old (default 60).
    #[serde(default)]
    catchup_window_secs: Option<u64>,
    /// Default true.
    #[serde(default)]
    enabled: Option<bool>,
    /// RFC 3339: no slot after this runs.
    #[serde(default)]
    end_at: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    input: Option<Box<RawValue>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(maximum = 100)]
    priority: Option<u8>,
    #[serde(default)]
    overlap: Option<Overlap>,
    #[serde(default)]
    catchup_window_secs: Option<u64>,
    #[serde(default)]
    enabled: Option<bool>,
    /// RFC 3339, or `""` for no end.
    #[serde(default)]
    end_at: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatBody {
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Agent id or name (`agent` works too).
    #[serde(alias = "agent")]
    agent_id: Option<String>,
    enabled: Option<bool>,
    /// The previous page's `next_cursor`.
    after: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SchedulePage {
    data: Vec<ScheduleView>,
    has_more: bool,
    next_cursor: Option<String>,
}

fn end_at(text: Option<String>) -> Result<Option<Option<i64>>, ApiError> {
    match text.as_deref() {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(t) => time::parse(t).map(|ms| Some(Some(ms))).ok_or_else(|| {
            ApiError::unprocessable("invalid_request", format!("end_at: {t:?} is not an RFC 3339 time"))
        }),
    }
}

fn view(status: StatusCode, schedule: crate::record::Schedule) -> Response {
    (status, Json(Schedules::view(schedule))).into_response()
}

const INVALID: &str =
    "A bad field: the message names it (a cron pattern, a time zone, an input that fails the agent's input_schema)";

/// Creates a schedule: its agent runs at each slot of its cron pattern.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", operation_id = "create_schedule",
    request_body = CreateBody,
    responses((status = 201, description = "Created, with its next slots", body = ScheduleView),
        (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such agent in the caller's workspace", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = INVALID, body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let spec = ScheduleSpec {
        agent: body.agent,
        version: body.version,
        cron: body.cron,
        timezone: body.timezone,
        input: body.input.map(Into::into),
        metadata: body.metadata.map(Into::into),
        priority: body.priority,
        overlap: body.overlap,
        catchup_window_secs: body.catchup_window_secs,
        enabled: body.enabled,
        end_at: end_at(body.end_at)?.flatten(),
    };
    let schedule = app.schedules.create(&caller.workspace, spec).await?;
    Ok(view(StatusCode::CREATED, schedule))
}

/// The workspace's schedules, newest first, in cursor pages.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", operation_id = "list_schedules",
    params(ListQuery),
    responses((status = 200, description = "A page", body = SchedulePage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let agent_id = q.agent_id.map(|a| app.registry.agent_id(&caller.workspace, a));
    let filter = ScheduleFilter {
        workspace: caller.workspace,
        agent_id,
        enabled: q.enabled,
        after: q.after,
        limit: page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?,
    };
    let (rows, has_more) = app.schedules.list(filter).await?;
    let next_cursor = if has_more {
        rows.last().map(|s| s.id.clone())
    } else {
        None
    };
    Ok(Json(SchedulePage {
        data: rows.into_iter().map(Schedules::view).collect(),
        has_more,
        next_cursor,
    })
    .into_response())
}

/// One schedule, with its pattern in words and its next slots.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "get_schedule",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, description = "The schedule", body = ScheduleView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(view(StatusCode::OK, app.schedules.get(&caller.workspace, &id).await?))
}

/// Changes a schedule: what the body gives changes; a new pattern, zone or
/// end starts again from now.
#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "update_schedule",
    params(("id" = String, Path, description = "Schedule id")),
    request_body = PatchBody,
    responses((status = 200, description = "Changed", body = ScheduleView), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = INVALID, body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn update(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Response, ApiError> {
    let patch = SchedulePatch {
        cron: body.cron,
        timezone: body.timezone,
        input: body.input.map(Into::into),
        metadata: body.metadata.map(Into::into),
        priority: body.priority,
        overlap: body.overlap,
        catchup_window_secs: body.catchup_window_secs,
        enabled: body.enabled,
        end_at: end_at(body.end_at)?,
    };
    let schedule = app.schedules.update(&caller.workspace, &id, patch).await?;
    Ok(view(StatusCode::OK, schedule))
}

/// Deletes a schedule (its runs stay).
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "delete_schedule",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.schedules.delete(&caller.workspace, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a schedule: no slot fires until it is resumed.
#[utoipa::path(post, path = "/v1/schedules/{id}/pause", tag = "schedules", operation_id = "pause_schedule",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, description = "Paused", body = ScheduleView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn pause(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let schedule = app.schedules.set_enabled(&caller.workspace, &id, false).await?;
    Ok(view(StatusCode::OK, schedule))
}

/// Resumes a schedule from its next slot after now (the slots missed while
/// paused do not run).
#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules", operation_id = "resume_schedule",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, description = "Resumed", body = ScheduleView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 422, description = "Nothing left to run (past its end)", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn resume(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let schedule = app.schedules.set_enabled(&caller.workspace, &id, true).await?;
    Ok(view(StatusCode::OK, schedule))
}

/// Runs a schedule's agent now, outside its slots.
#[utoipa::path(post, path = "/v1/schedules/{id}/trigger", tag = "schedules", operation_id = "trigger_schedule",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 202, description = "The run, queued", body = ExecutionView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "Its agent version cannot run", body = ErrorBody), (status = 422, description = "Its input no longer fits the agent", body = ErrorBody), (status = 429, description = "The queue is full or the key is over its rate limit", body = ErrorBody), (status = 503, description = "The host is shutting down, or its storage is failing", body = ErrorBody)))]
pub async fn trigger(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let accepted = app.schedules.trigger(&caller.workspace, &id).await?;
    Ok(super::executions::accepted_response(&accepted.execution))
}

/// "Make repeatable": a schedule running an execution's agent version,
/// input, metadata and priority on a cron pattern.
#[utoipa::path(post, path = "/v1/executions/{id}/schedule", tag = "schedules", operation_id = "schedule_execution",
    params(("id" = String, Path, description = "Execution id")),
    request_body = RepeatBody,
    responses((status = 201, description = "The schedule", body = ScheduleView), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = INVALID, body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn repeat(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RepeatBody>,
) -> Result<Response, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let execution = super::executions::load(&app, id).await?;
    let schedule = app
        .schedules
        .from_execution(&caller.workspace, &execution, body.cron, body.timezone)
        .await?;
    Ok(view(StatusCode::CREATED, schedule))
}
