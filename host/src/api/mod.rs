//! The HTTP API (axum): routes, typed errors, extractors. Handlers translate HTTP
//! to calls on the [`App`]'s parts; they hold no state of their own.

mod agents;
mod approvals;
mod artifacts;
mod auth;
mod conversations;
mod error;
mod executions;
mod extract;
mod health;
mod hooks;
mod keys;
mod limits;
mod mcp_sessions;
mod memory;
mod metrics;
mod openapi;
mod requests;
mod schedules;
mod stream;
mod trace;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::error::ApiError;
use self::limits::MULTIPART_OVERHEAD;
use crate::app::App;

/// The API's routes and its OpenAPI document, made together from the handlers
/// (each route is added with `routes!`, which documents it from the handler's
/// `#[utoipa::path]`): a route cannot be served undocumented, nor documented
/// unserved. (`/mcp` speaks MCP, described by its own protocol, not OpenAPI.)
pub fn documented_routes(app: &Arc<App>) -> OpenApiRouter<Arc<App>> {
    let http = app.config.http;
    let (schemas, paths, deploy_and_list) = routes!(agents::deploy, agents::list);
    let deploy_and_list = deploy_and_list.layer(DefaultBodyLimit::max(http.max_component_bytes + MULTIPART_OVERHEAD));
    // Everything but health needs a key (or an open host).
    let authenticated = OpenApiRouter::new()
        .routes((schemas, paths, deploy_and_list))
        .routes(routes!(agents::get))
        .routes(routes!(agents::deploy_job))
        .routes(routes!(executions::agent_list))
        .routes(routes!(agents::summary))
        .routes(routes!(executions::execute))
        .routes(routes!(executions::list))
        .routes(routes!(executions::get))
        .routes(routes!(executions::cancel))
        .routes(routes!(executions::retry))
        .routes(routes!(stream::events))
        .routes(routes!(stream::stream))
        .routes(routes!(stream::stream_token))
        .routes(routes!(artifacts::list))
        .routes(routes!(artifacts::get))
        .routes(routes!(executions::logs))
        .routes(routes!(executions::steps))
        .routes(routes!(trace::trace))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(approvals::list))
        .routes(routes!(approvals::get))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::reject))
        .routes(routes!(approvals::approve_execution))
        .routes(routes!(approvals::reject_execution))
        .routes(routes!(conversations::create, conversations::list))
        .routes(routes!(conversations::get, conversations::delete))
        .routes(routes!(conversations::continue_as_chat))
        .routes(routes!(memory::session))
        .routes(routes!(memory::create, memory::list))
        .routes(routes!(memory::get, memory::delete))
        .routes(routes!(memory::entries))
        .routes(routes!(memory::get_entry, memory::put_entry, memory::delete_entry))
        .routes(routes!(schedules::create, schedules::list))
        .routes(routes!(schedules::get, schedules::update, schedules::delete))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::trigger))
        .routes(routes!(schedules::repeat))
        .routes(routes!(hooks::create, hooks::list))
        .routes(routes!(hooks::delete))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(Arc::clone(app), auth::middleware));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(authenticated)
        .routes(routes!(health::health))
        // Signed by the sender instead of an API key.
        .routes(routes!(hooks::receive))
}

pub fn router(app: Arc<App>) -> Router {
    let http = app.config.http;
    let (routes, document) = documented_routes(&app).split_for_parts();
    let document = openapi::serve(document);
    // MCP clients authenticate with the same keys.
    let sessions = mcp_sessions::Sessions::new(crate::mcp::session_keep_alive(&app.config));
    let mcp = Router::new()
        .route(crate::mcp::PATH, crate::mcp::endpoint(&app))
        .route_layer(middleware::from_fn_with_state(sessions, mcp_sessions::middleware))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), auth::middleware));
    let router = routes
        .merge(mcp)
        // The dashboard's static files: it signs in with a key like any client.
        .merge(crate::ui::router())
        .route("/openapi.json", get(move || std::future::ready(document.clone())))
        .route_layer(middleware::from_fn(metrics::mark))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(middleware::from_fn_with_state(http, limits::reject_oversized))
        .with_state(app);
    requests::layer(router, http.access_log)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
