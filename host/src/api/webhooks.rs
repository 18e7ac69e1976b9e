//! Outgoing webhooks over HTTP: subscribe a URL of the workspace to events
//! (its secret shown once), list, get and delete subscriptions, read each
//! one's deliveries with every attempt, and redeliver one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, page_limit};
use crate::app::App;
use crate::auth::Caller;
use crate::record::{Delivery, Subscription};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    /// Where events are POSTed (http or https).
    url: String,
    /// Any of `execution.completed`, `execution.failed`, `execution.cancelled`,
    /// `execution.rejected`, `approval.requested`.
    events: Vec<String>,
    #[serde(default)]
    #[schema(max_length = 1024)]
    description: String,
}

/// A new subscription, with its secret (shown this once).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    #[schema(inline)]
    subscription: Subscription,
    /// Check each message's signature with it (Standard Webhooks).
    secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    data: Vec<Subscription>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The previous page's `next_cursor`.
    after: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    data: Vec<Delivery>,
    has_more: bool,
    next_cursor: Option<String>,
}

/// Subscribes a URL to the workspace's events.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    request_body = SubscribeBody,
    responses((status = 201, description = "Subscribed, with its secret (shown once)", body = CreatedSubscription), (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 413, description = "The body is over its limit", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "A bad URL or event", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<SubscribeBody>,
) -> Result<Response, ApiError> {
    let subscription = app
        .outgoing
        .subscribe(&caller.workspace, &body.url, body.events, body.description)
        .await?;
    let secret = subscription.secret.clone();
    Ok((StatusCode::CREATED, Json(CreatedSubscription { subscription, secret })).into_response())
}

/// The workspace's subscriptions (without their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    responses((status = 200, description = "The subscriptions", body = SubscriptionList), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, Extension(caller): Extension<Caller>) -> Json<SubscriptionList> {
    Json(SubscriptionList {
        data: app.outgoing.list(&caller.workspace),
    })
}

/// One subscription.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "get_webhook",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "The subscription", body = Subscription), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(app.outgoing.get(&caller.workspace, &id)?))
}

/// Deletes a subscription and its deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn delete(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.outgoing.unsubscribe(&caller.workspace, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A subscription's deliveries, newest first, each with every attempt.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries",
    params(("id" = String, Path, description = "Subscription id"), PageQuery),
    responses((status = 200, description = "A page", body = DeliveryPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn deliveries(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let (data, has_more) = app.outgoing.deliveries(&caller.workspace, &id, q.after, limit).await?;
    let next_cursor = if has_more {
        data.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        data,
        has_more,
        next_cursor,
    }))
}

/// Sends a delivery again now (same message id; its attempts kept).
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks", operation_id = "redeliver_webhook",
    params(("id" = String, Path, description = "Subscription id"), ("delivery_id" = String, Path, description = "Delivery (message) id")),
    responses((status = 202, description = "Pending again", body = Delivery), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "Storage is failing", body = ErrorBody)))]
pub async fn redeliver(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let d = app.outgoing.redeliver(&caller.workspace, &id, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}
