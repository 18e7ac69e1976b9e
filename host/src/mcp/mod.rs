//! The MCP server at `/mcp` (Streamable HTTP, every protocol revision `rmcp`
//! speaks): each agent of the caller's workspace is a tool, next to the
//! execution tools (`list_recent_executions`, `get_execution_result`,
//! `get_agent_activity_summary`). A call runs the agent (`trigger: "mcp"`); one
//! that outlasts a short wait becomes a task (its id the execution's) for
//! clients that take tasks. The tool list follows deploys. Requests are
//! authenticated by the API's middleware before they get here; this module
//! checks `Host` and `Origin` against DNS rebinding.

mod agents;
mod executions;
mod handler;
mod stateless;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::MethodRouter;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use self::handler::Mcp;
use self::stateless::Endpoint;
use crate::app::App;

/// Where the server is mounted.
pub const PATH: &str = "/mcp";

/// Hosts always accepted (any port).
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Origins always accepted.
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];
/// How long a handshake session may sit idle (past its longest run).
const SESSION_IDLE: Duration = Duration::from_secs(300);
/// Largest request body.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// How long a handshake session may sit idle: it outlives the longest run it
/// may wait for (every attempt of it).
pub fn session_keep_alive(config: &crate::config::Config) -> Duration {
    let attempts = crate::manifest::MAX_ATTEMPTS;
    Duration::from_millis(config.limits.max_timeout_ms) * attempts + SESSION_IDLE
}

/// The MCP endpoint: stateless calls of agents answered directly, everything
/// else by `rmcp`'s service. Its sessions and streams end when the host closes.
pub fn endpoint<S: Clone + Send + Sync + 'static>(app: &Arc<App>) -> MethodRouter<S> {
    let config = &app.config.mcp;
    let ct = CancellationToken::new();
    let mut closing = app.executions.closing();
    let stop = ct.clone();
    tokio::spawn(async move {
        let _ = closing.wait_for(|c| *c).await;
        stop.cancel();
    });
    let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    if !app.config.addr.ip().is_unspecified() {
        hosts.push(app.config.addr.ip().to_string());
    }
    hosts.extend(config.allowed_hosts.iter().cloned());
    let origins = LOOPBACK_ORIGINS
        .iter()
        .map(|o| (*o).to_owned())
        .chain(config.allowed_origins.iter().cloned());
    let settings = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts.clone())
        .with_allowed_origins(origins)
        .with_json_response(true)
        .with_max_request_body_bytes(MAX_REQUEST_BYTES)
        .with_cancellation_token(ct);
    let shared = Arc::new(handler::Shared::new(Arc::clone(app)));
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(session_keep_alive(&app.config));
    let made = Arc::clone(&shared);
    let rmcp = StreamableHttpService::new(move || Ok(Mcp::new(Arc::clone(&made))), Arc::new(sessions), settings);
    let endpoint = Arc::new(Endpoint::new(shared, &hosts, rmcp.clone(), MAX_REQUEST_BYTES));
    axum::routing::post_service(tower::service_fn(move |request| Arc::clone(&endpoint).serve(request)))
        .fallback_service(rmcp)
}
