//! Memory over HTTP: the workspace's memory stores (create, list, get,
//! delete) and their entries (list, get, put, delete), and a conversation's
//! session memory (read). Runs reach a store only when it is attached to them
//! (`memory_stores` on execute); here an admin or member key of the workspace
//! manages them. Another workspace's stores are answered like missing ones.

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
use crate::memory::Memory;
use crate::ports::Scope;
use crate::record::{MemoryEntry, MemoryStoreInfo};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Unique in the workspace: letters, digits, `-`, `_`, `.` (at most 64).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    name: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    description: String,
    /// Most bytes its keys and values may take (default and ceiling: the
    /// host's `memory.store_max_bytes`).
    #[serde(default)]
    #[schema(minimum = 1)]
    max_bytes: Option<u64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only keys starting with this (entries only).
    #[serde(default)]
    prefix: String,
    /// The previous page's `next_cursor`.
    after: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StorePage<'a> {
    data: &'a [MemoryStoreInfo],
    has_more: bool,
    next_cursor: Option<&'a str>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EntryPage<'a> {
    data: &'a [MemoryEntry],
    has_more: bool,
    next_cursor: Option<&'a str>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    /// Any JSON.
    #[schema(value_type = serde_json::Value)]
    value: Box<RawValue>,
}

async fn find(app: &App, caller: &Caller, id: &str) -> Result<MemoryStoreInfo, ApiError> {
    app.memory
        .find_store(&caller.workspace, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no memory store {id:?}")))
}

/// Creates a memory store in the caller's workspace.
#[utoipa::path(operation_id = "create_memory_store", post, path = "/v1/memory-stores", tag = "memory",
    request_body = CreateBody,
    responses((status = 201, description = "Created", body = MemoryStoreInfo), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "A bad name or cap", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    match app
        .memory
        .create_store(&caller.workspace, &body.name, &body.description, body.max_bytes)
        .await?
    {
        Some(store) => Ok((StatusCode::CREATED, Json(store)).into_response()),
        None => Err(ApiError::Conflict {
            code: "name_taken",
            message: format!("a memory store named {:?} exists in this workspace", body.name),
            status: None,
        }),
    }
}

/// The workspace's memory stores, by name, in cursor pages.
#[utoipa::path(operation_id = "list_memory_stores", get, path = "/v1/memory-stores", tag = "memory",
    params(PageQuery),
    responses((status = 200, description = "A page", body = StorePage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let (rows, has_more) = app.memory.stores(&caller.workspace, q.after, limit).await?;
    let next_cursor = if has_more {
        rows.last().map(|s| s.name.as_str())
    } else {
        None
    };
    Ok(Json(StorePage {
        data: &rows,
        has_more,
        next_cursor,
    })
    .into_response())
}

/// One memory store (by id or name), with its bytes and entries.
#[utoipa::path(operation_id = "get_memory_store", get, path = "/v1/memory-stores/{id}", tag = "memory",
    params(("id" = String, Path, description = "Memory store id or name")),
    responses((status = 200, description = "The store", body = MemoryStoreInfo), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<MemoryStoreInfo>, ApiError> {
    Ok(Json(find(&app, &caller, &id).await?))
}

/// Deletes a memory store and every entry of it.
#[utoipa::path(operation_id = "delete_memory_store", delete, path = "/v1/memory-stores/{id}", tag = "memory",
    params(("id" = String, Path, description = "Memory store id or name")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = find(&app, &caller, &id).await?;
    app.memory.delete_store(&store.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn entry_page(app: &App, scope: &Scope, q: PageQuery) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let (rows, has_more) = app.memory.entries(scope, &q.prefix, q.after, limit).await?;
    let next_cursor = if has_more {
        rows.last().map(|e| e.key.as_str())
    } else {
        None
    };
    Ok(Json(EntryPage {
        data: &rows,
        has_more,
        next_cursor,
    })
    .into_response())
}

/// A store's entries, by key, in cursor pages.
#[utoipa::path(operation_id = "list_memory_entries", get, path = "/v1/memory-stores/{id}/entries", tag = "memory",
    params(("id" = String, Path, description = "Memory store id or name"), PageQuery),
    responses((status = 200, description = "A page", body = EntryPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn entries(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let store = find(&app, &caller, &id).await?;
    entry_page(&app, &Memory::scope_of(&store), q).await
}

/// One entry of a store.
#[utoipa::path(operation_id = "get_memory_entry", get, path = "/v1/memory-stores/{id}/entries/{key}", tag = "memory",
    params(("id" = String, Path, description = "Memory store id or name"), ("key" = String, Path, description = "The key: 1 to 256 characters, no control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$")),
    responses((status = 200, description = "The entry", body = MemoryEntry), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get_entry(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<MemoryEntry>, ApiError> {
    let store = find(&app, &caller, &id).await?;
    app.memory
        .entry(&Memory::scope_of(&store), &key)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no key {key:?} in memory store {:?}", store.name)))
}

/// Sets an entry of a store (within the store's cap and the host's key and
/// value limits).
#[utoipa::path(operation_id = "put_memory_entry", put, path = "/v1/memory-stores/{id}/entries/{key}", tag = "memory",
    params(("id" = String, Path, description = "Memory store id or name"), ("key" = String, Path, description = "The key: 1 to 256 characters, no control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$")),
    request_body = PutBody,
    responses((status = 200, description = "Stored", body = MemoryEntry), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "A bad key or value, or over the store's cap", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn put_entry(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutBody>,
) -> Result<Json<MemoryEntry>, ApiError> {
    let store = find(&app, &caller, &id).await?;
    let entry = app
        .memory
        .set(&Memory::scope_of(&store), &key, body.value.get())
        .await?;
    Ok(Json(entry))
}

/// Deletes an entry of a store.
#[utoipa::path(operation_id = "delete_memory_entry", delete, path = "/v1/memory-stores/{id}/entries/{key}", tag = "memory",
    params(("id" = String, Path, description = "Memory store id or name"), ("key" = String, Path, description = "The key: 1 to 256 characters, no control characters", pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 422, description = "A bad key", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn delete_entry(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let store = find(&app, &caller, &id).await?;
    if app.memory.delete(&Memory::scope_of(&store), &key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no key {key:?} in memory store {:?}",
            store.name
        )))
    }
}

/// A conversation's session memory, by key, in cursor pages.
#[utoipa::path(operation_id = "list_session_memory", get, path = "/v1/conversations/{id}/memory", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"), PageQuery),
    responses((status = 200, description = "A page", body = EntryPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn session(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    if app.executions.conversation(&caller.workspace, &id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no conversation {id:?}")));
    }
    entry_page(&app, &app.memory.session(&id), q).await
}
