//! Incoming webhooks over HTTP: make, list and delete a workspace's hooks
//! (with an API key), and the hook URLs themselves, which senders POST to with
//! a Standard Webhooks signature instead of a key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::app::App;
use crate::auth::Caller;
use crate::record::Hook;
use crate::webhooks::Signed;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The agent (id or name) a message runs.
    agent: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    description: String,
}

/// A new hook, with its secret (shown this once).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedHook {
    #[serde(flatten)]
    #[schema(inline)]
    hook: Hook,
    /// Sign each message with it (Standard Webhooks); it is never shown again.
    secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HookList {
    data: Vec<Hook>,
}

/// The execution a message made.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Received {
    execution_id: String,
}

/// Makes a hook: a URL that runs an agent with each signed message's body.
#[utoipa::path(post, path = "/v1/hooks", tag = "webhooks", operation_id = "create_hook",
    request_body = CreateBody,
    responses((status = 201, description = "Made, with its secret (shown once)", body = CreatedHook), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such agent in the caller's workspace", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "A bad field", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let hook = app
        .webhooks
        .create(&caller.workspace, &body.agent, body.description)
        .await?;
    let secret = hook.secret.clone();
    Ok((StatusCode::CREATED, Json(CreatedHook { hook, secret })).into_response())
}

/// The workspace's hooks (without their secrets).
#[utoipa::path(get, path = "/v1/hooks", tag = "webhooks", operation_id = "list_hooks",
    responses((status = 200, description = "The hooks", body = HookList), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<HookList>, ApiError> {
    Ok(Json(HookList {
        data: app.webhooks.list(&caller.workspace).await?,
    }))
}

/// Deletes a hook: its URL answers 404 from now on.
#[utoipa::path(delete, path = "/v1/hooks/{id}", tag = "webhooks", operation_id = "delete_hook",
    params(("id" = String, Path, description = "Hook id")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.webhooks.delete(&caller.workspace, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A message to a hook: runs its agent with the body (JSON) as input, once
/// per `webhook-id`. Signed per Standard Webhooks with the hook's secret
/// (`webhook-id`, `webhook-timestamp` within 5 minutes, `webhook-signature`);
/// no API key.
#[utoipa::path(post, path = "/v1/hooks/{id}", tag = "webhooks", operation_id = "receive_hook",
    params(("id" = String, Path, description = "Hook id"),
        ("webhook-id" = String, Header, description = "The message's id (a repeat gives the same execution)"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds"),
        ("webhook-signature" = String, Header, description = "`v1,` and the base64 HMAC-SHA256"),
        ("traceparent" = Option<String>, Header, description = "W3C Trace Context: the execution joins this trace")),
    request_body(content = serde_json::Value, description = "The agent's input"),
    responses((status = 202, description = "Its execution, queued", body = Received),
        (status = 401, description = "Unsigned, badly signed, or stale", body = ErrorBody), (status = 404, description = "No such hook", body = ErrorBody), (status = 409, description = "This webhook-id came with another body", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 422, description = "The body is not JSON the agent takes", body = ErrorBody), (status = 429, description = "The queue is full", body = ErrorBody), (status = 503, description = "The host is shutting down, or its storage is failing", body = ErrorBody)))]
pub async fn receive(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let trace = header("traceparent").and_then(crate::trace::parse);
    let execution_id = app.webhooks.receive(&id, signed, trace, body).await?;
    Ok((StatusCode::ACCEPTED, Json(Received { execution_id })).into_response())
}
