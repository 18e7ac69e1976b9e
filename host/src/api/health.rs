//! `GET /admin/health`: liveness plus what an operator checks first.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::app::App;
use crate::store::{StorageFailure, sqlite};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` while storage is failing (answered with 503).
    status: &'static str,
    /// Why storage is failing and since when (writes wait until it recovers;
    /// new executions and deploys are refused with 503 `storage_unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_failure: Option<StorageFailure>,
    /// The SQLite library linked into this binary.
    sqlite_version: &'static str,
    /// Where the records live and its version: `sqlite 3.50.2`, or
    /// `postgres 16.4` when `[store] url` names a shared database.
    store: String,
    uptime_sec: u64,
    version: &'static str,
    agents: usize,
    executions: Executions,
    components: Components,
}

/// Executions running now and waiting in the queue (including retries in backoff).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Executions {
    running: usize,
    waiting: usize,
}

/// Components compiled vs loaded from the on-disk cache since start: after a
/// restart, `compiled` stays 0 unless a cached artifact failed its check.
/// `unavailable`: deployed versions that cannot be loaded (redeploy them).
/// `compiling` now, and `compiles_waiting` for their turn
/// (`deploy.max_concurrent` run at once).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Components {
    compiled: u64,
    loaded_from_cache: u64,
    unavailable: usize,
    compiling: usize,
    compiles_waiting: usize,
}

/// Liveness, versions (SQLite's among them), load and storage; needs no key.
#[utoipa::path(get, path = "/admin/health", tag = "health", security(()),
    responses((status = 200, description = "Serving", body = Health),
        (status = 503, description = "Serving, but storage is failing", body = Health)))]
pub async fn health(State(app): State<Arc<App>>) -> (StatusCode, Json<Health>) {
    let (compiled, loaded_from_cache) = app.runtime.cache_counts();
    let compiles = app.runtime.compiles();
    let (running, waiting) = app.executions.load();
    let storage_failure = app.stores.backend.failing();
    let (code, status) = match storage_failure {
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "degraded"),
        None => (StatusCode::OK, "ok"),
    };
    let body = Json(Health {
        status,
        storage_failure,
        sqlite_version: sqlite::version(),
        store: app.stores.backend.version(),
        uptime_sec: app.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        agents: app.registry.len(),
        executions: Executions { running, waiting },
        components: Components {
            compiled,
            loaded_from_cache,
            unavailable: app.registry.unavailable(),
            compiling: compiles.running,
            compiles_waiting: compiles.waiting,
        },
    });
    (code, body)
}
