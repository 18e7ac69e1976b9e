//! Executions over HTTP: execute (sync or async), get, list with filters and a
//! cursor, logs, steps.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::conversations::{IfBusyBody, MemoryBody};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, cursor, one_of, page_limit, whole_number};
use super::stream::SseMessage;
use crate::app::App;
use crate::auth::Caller;
use crate::executions::{Cancel, NewExecution, SubmitError, Target, Watch};
use crate::record::{Execution, ExecutionView, LogLine, Status, Step, Trigger};
use crate::store::ExecutionFilter;
use crate::time;

const DEFAULT_PAGE: u32 = 50;
/// Longest a repeated idempotent request waits for the first one's execution to
/// appear.
const REPLAY_WAIT: Duration = Duration::from_secs(10);
const MAX_PAGE: u32 = 500;
/// Longest a cancel answer waits for a running execution to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
const DEFAULT_LOG_PAGE: u32 = 1000;
const MAX_LOG_PAGE: u32 = 10_000;
/// Longest `Idempotency-Key` accepted.
const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Sync,
    Async,
    /// Answer with the execution's event stream (SSE).
    Stream,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// Any JSON; checked against the agent's `input_schema` if it has one.
    #[serde(default)]
    #[schema(value_type = serde_json::Value)]
    input: Option<Box<RawValue>>,
    /// A JSON object kept on the record.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    mode: Mode,
    /// 0 to 100, higher first (default 50).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(maximum = 100)]
    priority: Option<u8>,
    /// Run this version instead of the latest.
    #[serde(default, deserialize_with = "whole_number")]
    version: Option<u32>,
    /// The model of every call the agent makes without naming one: one of its
    /// manifest's `models` (422 otherwise). Unset: the manifest's first.
    #[serde(default)]
    model: Option<String>,
    /// Continue this conversation: the execution is its next turn (`trigger: "chat"`).
    #[serde(default)]
    conversation_id: Option<String>,
    /// Start a conversation: the execution is its first turn.
    #[serde(default)]
    conversation: bool,
    /// When another turn of the conversation is under way: `wait` for its end
    /// (the default) or `fail` at once with 409 `conversation_busy`.
    #[serde(default)]
    if_busy: IfBusyBody,
    #[serde(default)]
    memory: Option<MemoryBody>,
    /// Memory stores of the workspace (by id or name) the run may read and write.
    #[serde(default)]
    memory_stores: Vec<String>,
}

fn view(execution: &Execution) -> Json<ExecutionView<'_>> {
    Json(ExecutionView::from(execution))
}

/// Executes an agent: waits for the end (`sync`), returns at once (`async`, 202)
/// or streams its events (`stream`, SSE).
#[utoipa::path(post, path = "/v1/agents/{id}/execute", tag = "executions",
    params(("id" = String, Path, description = "Agent id or name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with the same key and request return the same execution"),
        ("traceparent" = Option<String>, Header, description = "W3C Trace Context: the execution joins this trace (its trace_id), and its model calls and http_fetch carry it on")),
    request_body = ExecuteBody,
    responses((status = 200, description = "Finished (sync), the same execution again (idempotent repeat), or its events (stream)",
            content((ExecutionView = "application/json"), (SseMessage = "text/event-stream"))),
        (status = 202, description = "Queued (async)", body = ExecutionView),
        (status = 400, description = "Malformed JSON or header", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "The Idempotency-Key was used with another request, or the conversation has a turn under way (if_busy: fail)", body = ErrorBody), (status = 413, description = "The body or input is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "A bad field, or an input that fails the agent's input_schema", body = ErrorBody), (status = 429, description = "The queue is full or the key is over its rate limit", body = ErrorBody), (status = 503, description = "The host is shutting down, or its storage is failing", body = ErrorBody)))]
pub async fn execute(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id_or_name): Path<String>,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<ExecuteBody>,
) -> Result<Response, ApiError> {
    let turn = super::conversations::turn_of(
        body.conversation_id.take(),
        body.conversation,
        body.if_busy,
        body.memory.take(),
    )?;
    let trigger = if turn.is_some() { Trigger::Chat } else { Trigger::Api };
    let trace = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::trace::parse);
    let mut new = NewExecution::new(
        Target::Agent {
            workspace: caller.workspace,
            agent: id_or_name,
            version: body.version,
        },
        body.input.take().unwrap_or_else(|| RawValue::NULL.to_owned()).into(),
        trigger,
    );
    new.turn = turn;
    new.memory_stores = std::mem::take(&mut body.memory_stores);
    new.metadata = body.metadata.take().map(Into::into);
    new.priority = body.priority;
    new.model = body.model.take();
    new.idempotency_key = idempotency_key(&headers)?;
    new.durable = body.mode == Mode::Async;
    (new.trace_id, new.trace_parent) = trace.unzip();
    let accepted = match app.executions.submit(new).await {
        Ok(accepted) => accepted,
        Err(SubmitError::Repeated {
            execution_id,
            key,
            request_hash,
        }) => return replay(&app, &key, &request_hash, execution_id, body.mode).await,
        Err(e) => return Err(e.into()),
    };
    match body.mode {
        Mode::Async => Ok(accepted_response(&accepted.execution)),
        Mode::Stream => Ok(super::stream::stream_new(&app, &accepted.execution.id)
            .await?
            .into_response()),
        Mode::Sync => {
            let finished = wait_final(&app, &accepted.execution.id, accepted.done).await?;
            Ok((StatusCode::OK, view(&finished)).into_response())
        }
    }
}

/// 202 with the queued record and where to poll it.
pub(super) fn accepted_response(execution: &Execution) -> Response {
    let location = format!("/v1/executions/{}", execution.id);
    (StatusCode::ACCEPTED, [(header::LOCATION, location)], view(execution)).into_response()
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => Ok(Some(key.to_owned())),
        _ => Err(ApiError::bad_request(
            "invalid_request",
            format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// A repeated request with a known key: the same execution, not a new run (a
/// sync caller still waits for it to end). The first request may still be
/// creating it; then this waits until it is live or stored.
async fn replay(app: &Arc<App>, key: &str, hash: &str, mut id: String, mode: Mode) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
    // An execution another host accepted (a shared store) is read from the
    // store, less often the longer it runs.
    let shared = app.stores.backend.lease().is_some();
    let mut pause = if shared {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(2)
    };
    loop {
        if mode == Mode::Sync
            && let Some(done) = app.executions.watch(&id)
        {
            let finished = wait_final(app, &id, done).await?;
            return Ok((StatusCode::OK, view(&finished)).into_response());
        }
        if let Some(execution) = app.stores.executions.get(&id).await? {
            if mode == Mode::Sync && !execution.status.is_terminal() {
                // Live again by the next turn (or finished and stored).
                tokio::time::sleep(pause).await;
                if shared {
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                continue;
            }
            return Ok((StatusCode::OK, view(&execution)).into_response());
        }
        // The key may have come to name the same request's execution another
        // host made (a shared store): that one is followed.
        match app.executions.idempotency_holder(key).await {
            Some((holder_hash, holder)) if holder != id && holder_hash == hash => {
                id = holder;
                continue;
            }
            Some((_, holder)) if holder == id && tokio::time::Instant::now() < deadline => {}
            _ => {
                return Err(ApiError::Conflict {
                    code: "idempotency_conflict",
                    message: "the first request with this Idempotency-Key was not accepted; send it again".into(),
                    status: None,
                });
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Waits for an execution's end, following the retries its agent's policy makes.
async fn wait_final(app: &Arc<App>, id: &str, done: Watch) -> Result<Arc<Execution>, ApiError> {
    app.executions.last_attempt(id, done).await.map_err(ApiError::from)
}

/// Cancels a queued or running execution: 200 with the cancelled record (a
/// run's partial output and usage so far included), or 202 when the run has
/// not stopped within a moment (it ends `cancelled` shortly).
#[utoipa::path(post, path = "/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "Cancelled", body = ExecutionView),
        (status = 202, description = "Cancel requested; it stops shortly", body = ExecutionView),
        (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn cancel(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_owner(&app, &caller, &id).await?;
    match app.executions.cancel(&id).await? {
        Cancel::Cancelled(execution) => Ok((StatusCode::OK, view(&execution)).into_response()),
        Cancel::Requested => {
            // A guest stops at once (at its next host call or epoch tick): the
            // answer waits a moment for its end, to give what it had streamed
            // (`output_partial`) and the usage up to the cancel.
            if let Some(mut done) = app.executions.watch(&id) {
                let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(Option::is_some)).await;
            }
            let execution = load(&app, id).await?;
            let status = if execution.status.is_terminal() {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok((status, view(&execution)).into_response())
        }
        Cancel::NotLive => {
            let execution = load(&app, id).await?;
            if execution.status.is_terminal() {
                return Err(ApiError::Conflict {
                    code: "already_finished",
                    message: format!(
                        "execution {} is already {}; only queued or running executions can be cancelled",
                        execution.id,
                        execution.status.as_str()
                    ),
                    status: Some(execution.status.as_str()),
                });
            }
            Ok((StatusCode::OK, view(&execution)).into_response())
        }
    }
}

/// Runs an execution again as a new execution linked to it (`retry_of`).
#[utoipa::path(post, path = "/v1/executions/{id}/retry", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 202, description = "The new execution, queued", body = ExecutionView),
        (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "The version it ran is gone", body = ErrorBody), (status = 429, description = "The queue is full or the key is over its rate limit", body = ErrorBody)))]
pub async fn retry(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_owner(&app, &caller, &id).await?;
    let accepted = app.executions.retry(&id).await?;
    Ok(accepted_response(&accepted.execution))
}

/// 404 unless execution `id` exists (live or stored) in the caller's workspace.
/// Another workspace's execution is answered exactly like a missing one.
pub(super) async fn check_owner(app: &App, caller: &Caller, id: &str) -> Result<(), ApiError> {
    match app.executions.workspace_of(id).await? {
        Some(w) if w == caller.workspace => Ok(()),
        _ => Err(ApiError::NotFound(format!("no execution {id:?}"))),
    }
}

pub(super) async fn load(app: &App, id: String) -> Result<Execution, ApiError> {
    app.stores
        .executions
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no execution {id:?}")))
}

/// One execution's record.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The record", body = ExecutionView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_owner(&app, &caller, &id).await?;
    let execution = load(&app, id).await?;
    Ok(view(&execution).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Agent id or name.
    agent_id: Option<String>,
    /// One of the statuses.
    #[param(value_type = Option<Status>)]
    status: Option<String>,
    /// What started it.
    #[param(value_type = Option<Trigger>)]
    trigger: Option<String>,
    /// Only the turns of this conversation.
    conversation_id: Option<String>,
    /// Only the runs of this schedule.
    schedule_id: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    created_after: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    created_before: Option<String>,
    /// The previous page's `next_cursor`.
    after: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ExecutionPage<'a> {
    data: Vec<ExecutionView<'a>>,
    has_more: bool,
    /// Pass as `after` to get the next page.
    next_cursor: Option<&'a str>,
}

/// The workspace's executions, newest first, filtered, in cursor pages.
#[utoipa::path(get, path = "/v1/executions", tag = "executions",
    params(ListQuery),
    responses((status = 200, description = "A page", body = ExecutionPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    page(&app, caller, q).await
}

/// An agent's own executions: the list of `/v1/executions` for it.
#[utoipa::path(get, path = "/v1/agents/{id}/executions", tag = "agents", operation_id = "list_agent_executions",
    params(("id" = String, Path, description = "Agent id or name"), ListQuery),
    responses((status = 200, description = "A page", body = ExecutionPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such agent in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn agent_list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(agent): Path<String>,
    ApiQuery(mut q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let entry = app
        .registry
        .get(&caller.workspace, &agent)
        .ok_or_else(|| ApiError::NotFound(format!("no agent with id or name {agent:?}")))?;
    q.agent_id = Some(entry.agent.id.clone());
    page(&app, caller, q).await
}

/// One page of executions of the caller's workspace.
async fn page(app: &App, caller: Caller, q: ListQuery) -> Result<Response, ApiError> {
    let parse_time = |name: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        v.map(|text| {
            time::parse(&text).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("{name}: {text:?} is not an RFC 3339 time"))
            })
        })
        .transpose()
    };
    let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let status = one_of("status", q.status, Status::parse, &all)?;
    let all: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
    let trigger = one_of("trigger", q.trigger, Trigger::parse, &all)?.map(|t| t.as_str().to_owned());
    // Agent names are accepted too.
    let agent_id = q.agent_id.map(|a| app.registry.agent_id(&caller.workspace, a));
    let filter = ExecutionFilter {
        workspace: caller.workspace,
        agent_id,
        status,
        trigger,
        conversation_id: q.conversation_id,
        schedule_id: q.schedule_id,
        created_after: parse_time("created_after", q.created_after)?,
        created_before: parse_time("created_before", q.created_before)?,
        after: q.after,
        limit: page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?,
    };
    let (rows, has_more) = app.stores.executions.list(filter).await?;
    let next_cursor = if has_more {
        rows.last().map(|e| e.id.as_str())
    } else {
        None
    };
    let page = ExecutionPage {
        data: rows.iter().map(ExecutionView::from).collect(),
        has_more,
        next_cursor,
    };
    Ok(Json(page).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The previous page's `next_cursor`.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LogPage {
    data: Vec<LogLine>,
    has_more: bool,
    next_cursor: Option<u32>,
}

/// An execution's log lines, in pages.
#[utoipa::path(get, path = "/v1/executions/{id}/logs", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), LogQuery),
    responses((status = 200, description = "A page of lines", body = LogPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn logs(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<LogPage>, ApiError> {
    // Past the last possible line is after every line: an empty page.
    let after = u32::try_from(cursor("after", q.after)?).unwrap_or(u32::MAX);
    let limit = page_limit(q.limit, DEFAULT_LOG_PAGE, MAX_LOG_PAGE)?;
    check_owner(&app, &caller, &id).await?;
    let (data, has_more) = app.stores.executions.logs(&id, after, limit).await?;
    let next_cursor = if has_more { data.last().map(|l| l.seq) } else { None };
    Ok(Json(LogPage {
        data,
        has_more,
        next_cursor,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StepList {
    data: Vec<Step>,
}

/// An execution's steps, in order.
#[utoipa::path(get, path = "/v1/executions/{id}/steps", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The steps", body = StepList), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn steps(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<StepList>, ApiError> {
    check_owner(&app, &caller, &id).await?;
    let data = app.stores.executions.steps(&id).await?;
    Ok(Json(StepList { data }))
}
