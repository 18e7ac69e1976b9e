//! Conversations over HTTP: start one, list them, read one with its turns,
//! delete one (its turns and session memory), "continue as chat" from a
//! completed execution, and the conversation part of an execute request. Turns themselves are made by executing the agent with
//! `conversation_id`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, page_limit};
use crate::app::App;
use crate::auth::Caller;
use crate::executions::{ConversationRef, IfBusy, TurnRequest};
use crate::record::{Conversation, Turn};
use crate::store::ConversationFilter;

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IfBusyBody {
    #[default]
    Wait,
    Fail,
}

/// Memory for the run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryBody {
    /// Key-values set in the conversation's session memory before this turn
    /// runs (they persist across its turns).
    #[serde(default)]
    #[schema(value_type = Object)]
    session: serde_json::Map<String, serde_json::Value>,
}

/// The conversation part of an execute request: which conversation, what to
/// do when it is busy, and the session memory to set.
pub(super) fn turn_of(
    conversation_id: Option<String>,
    start: bool,
    if_busy: IfBusyBody,
    memory: Option<MemoryBody>,
) -> Result<Option<TurnRequest>, ApiError> {
    let session: Vec<(String, String)> = memory
        .map(|m| m.session.into_iter().map(|(k, v)| (k, v.to_string())).collect())
        .unwrap_or_default();
    let conversation = match (conversation_id, start) {
        (Some(_), true) => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "give conversation_id (to continue one) or conversation: true (to start one), not both",
            ));
        }
        (Some(id), false) => ConversationRef::Continue(id),
        (None, true) => ConversationRef::Start(None),
        (None, false) if session.is_empty() => return Ok(None),
        (None, false) => {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "memory.session belongs to a conversation: give conversation_id or conversation: true",
            ));
        }
    };
    Ok(Some(TurnRequest {
        conversation,
        if_busy: match if_busy {
            IfBusyBody::Wait => IfBusy::Wait,
            IfBusyBody::Fail => IfBusy::Refuse,
        },
        session,
    }))
}

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The agent (id or name) the conversation is with.
    agent: String,
    /// A JSON object kept on the conversation.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Option<Box<RawValue>>,
}

/// A conversation with its turns, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversationView<'a> {
    #[serde(flatten)]
    #[schema(inline)]
    conversation: &'a Conversation,
    turns: &'a [Turn],
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Agent id or name.
    agent_id: Option<String>,
    /// The previous page's `next_cursor`.
    after: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversationPage<'a> {
    data: &'a [Conversation],
    has_more: bool,
    /// Pass as `after` to get the next page.
    next_cursor: Option<&'a str>,
}

fn created(conversation: &Conversation, turns: &[Turn]) -> Response {
    let view = ConversationView { conversation, turns };
    (StatusCode::CREATED, Json(view)).into_response()
}

/// Starts a conversation with an agent; execute the agent with its
/// `conversation_id` to add turns.
#[utoipa::path(operation_id = "create_conversation", post, path = "/v1/conversations", tag = "conversations",
    request_body = CreateBody,
    responses((status = 201, description = "Started", body = ConversationView),
        (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such agent in the caller's workspace", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "A bad field", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let conversation = app
        .executions
        .start_conversation(&caller.workspace, &body.agent, body.metadata.map(Into::into))
        .await?;
    Ok(created(&conversation, &[]))
}

/// The workspace's conversations, newest first, in cursor pages.
#[utoipa::path(operation_id = "list_conversations", get, path = "/v1/conversations", tag = "conversations",
    params(ListQuery),
    responses((status = 200, description = "A page", body = ConversationPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let agent_id = q.agent_id.map(|a| app.registry.agent_id(&caller.workspace, a));
    let filter = ConversationFilter {
        workspace: caller.workspace,
        agent_id,
        after: q.after,
        limit: page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?,
    };
    let (rows, has_more) = app.stores.conversations.list(filter).await?;
    let next_cursor = if has_more {
        rows.last().map(|c| c.id.as_str())
    } else {
        None
    };
    Ok(Json(ConversationPage {
        data: &rows,
        has_more,
        next_cursor,
    })
    .into_response())
}

/// One conversation with every turn, oldest first.
#[utoipa::path(operation_id = "get_conversation", get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, description = "The conversation", body = ConversationView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conversation = app
        .executions
        .conversation(&caller.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no conversation {id:?}")))?;
    let turns = app.stores.conversations.turns(&id).await?;
    Ok(Json(ConversationView {
        conversation: &conversation,
        turns: &turns,
    })
    .into_response())
}

/// Deletes a conversation for good: its turns and its session memory (the
/// executions that were its turns stay, under the execution retention).
/// Refused while a turn is under way.
#[utoipa::path(operation_id = "delete_conversation", delete, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "A turn is under way", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.executions.delete_conversation(&caller.workspace, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// "Continue as chat": a new conversation whose first turns are a completed
/// execution's input and output, ready for the next message.
#[utoipa::path(operation_id = "continue_as_chat", post, path = "/v1/executions/{id}/continue", tag = "conversations",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 201, description = "The conversation", body = ConversationView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "The execution did not complete", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn continue_as_chat(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let conversation = app.executions.continue_as_chat(&caller.workspace, &id).await?;
    let turns = app.stores.conversations.turns(&conversation.id).await?;
    Ok(created(&conversation, &turns))
}
