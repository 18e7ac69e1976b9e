//! The HTTP API (axum): routes, typed errors, extractors. Handlers translate HTTP
//! to calls on the [`App`]'s parts; they hold no state of their own.

mod agents;
mod artifacts;
mod auth;
mod error;
mod executions;
mod extract;
mod health;
mod keys;
mod limits;
mod openapi;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{delete, get, post};

pub use self::error::ApiError;
use crate::app::App;

use self::limits::MULTIPART_OVERHEAD;

pub fn router(app: Arc<App>) -> Router {
    let http = app.config.http;
    // Everything but health needs a key (or an open host).
    let authenticated = Router::new()
        .route(
            "/v1/agents",
            post(agents::deploy)
                .layer(DefaultBodyLimit::max(http.max_component_bytes + MULTIPART_OVERHEAD))
                .get(agents::list),
        )
        .route("/v1/agents/{id}", get(agents::get))
        .route("/v1/agents/{id}/execute", post(executions::execute))
        .route("/v1/executions", get(executions::list))
        .route("/v1/executions/{id}", get(executions::get))
        .route("/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/v1/executions/{id}/retry", post(executions::retry))
        .route("/v1/executions/{id}/events", get(stream::events))
        .route("/v1/executions/{id}/stream", get(stream::stream))
        .route("/v1/executions/{id}/artifacts", get(artifacts::list))
        .route("/v1/executions/{id}/artifacts/{artifact_id}", get(artifacts::get))
        .route("/v1/executions/{id}/logs", get(executions::logs))
        .route("/v1/executions/{id}/steps", get(executions::steps))
        .route("/admin/keys", post(keys::create).get(keys::list))
        .route("/admin/keys/{id}", delete(keys::revoke))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), auth::middleware));
    authenticated
        .route("/admin/health", get(health::health))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(middleware::from_fn_with_state(http, limits::reject_oversized))
        .with_state(app)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
