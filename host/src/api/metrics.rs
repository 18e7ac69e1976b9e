//! `GET /metrics` (Prometheus text, for admin keys) and the count of every
//! HTTP request by its route and status.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::auth::Caller;
use crate::record::Role;

/// The host's metrics in the Prometheus text format: executions, queue and
/// slots, models, tools, components, the store's writer, live streams, HTTP.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin key", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn metrics(State(app): State<Arc<App>>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    if caller.role != Role::Admin {
        return Err(ApiError::Forbidden("metrics need an admin key".into()));
    }
    let (running, waiting) = app.executions.load();
    crate::metrics::load(
        waiting,
        running,
        app.config.max_concurrent_executions,
        app.registry.len(),
    );
    let text = crate::metrics::render();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

/// Marks a routed request's response with its route's pattern, for the count
/// of every request ([`count`]).
pub async fn mark(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Counts an answered request by its route's pattern (never its path: ids
/// would make a series each; `unmatched` for one no route took: 404, 405, or
/// refused before routing, like a 413 by its `Content-Length`), method and
/// status.
pub fn count(method: &axum::http::Method, response: &Response, began: Instant) {
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    crate::metrics::http_request(method.as_str(), route, response.status().as_u16(), began.elapsed());
}
