//! `/v1/agents`: deploy (multipart: `component` + `manifest`; waiting for the
//! compile, or in the background as a job read at `/v1/deploys/{id}`), list,
//! get, and an agent's activity summary.

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::app::App;
use crate::auth::Caller;
use crate::manifest::Manifest;
use crate::record::{Agent, AgentSummary, AgentVersion};
use crate::record::{DeployJob, Deployed};
use crate::registry::Entry;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentView {
    #[serde(flatten)]
    agent: Agent,
    /// The newest version (what `execute` runs unless told otherwise).
    latest: Option<AgentVersion>,
    /// Every version, oldest first (only on `GET /v1/agents/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<Vec<AgentVersion>>,
}

impl AgentView {
    fn new(entry: &Entry, with_versions: bool) -> Self {
        Self {
            agent: entry.agent.clone(),
            latest: entry.latest().map(|v| v.meta.clone()),
            versions: with_versions.then(|| entry.versions.iter().map(|v| v.meta.clone()).collect()),
        }
    }
}

/// The multipart form of a deploy.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the form; the handler reads it part by part.
pub struct DeployForm {
    /// The WebAssembly component (`.wasm`), built with the guest SDK.
    #[schema(value_type = String, format = Binary)]
    component: Vec<u8>,
    /// The manifest as JSON text.
    #[schema(value_type = String)]
    manifest: Manifest,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeployQuery {
    /// `false`: answer `202` with a job once the checks pass, and compile in
    /// the background (poll `GET /v1/deploys/{id}`). Default `true`: answer
    /// once deployed.
    wait: Option<bool>,
}

/// Deploys a component as a new version of the manifest's agent.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", params(DeployQuery),
    request_body(content = DeployForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "Deployed", body = Deployed),
        (status = 202, description = "Checked, compiling in the background (`wait=false`)", body = DeployJob),
        (status = 400, description = "A malformed form", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 413, description = "The component is over the size limit", body = ErrorBody), (status = 415, description = "Not a multipart form", body = ErrorBody), (status = 422, description = "Not a component of the agent world, or a bad manifest", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "The host's storage is failing", body = ErrorBody)))]
pub async fn deploy(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<DeployQuery>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart?;
    let mut component: Option<Bytes> = None;
    let mut manifest: Option<String> = None;
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("component") => component = Some(field.bytes().await?),
            Some("manifest") => manifest = Some(field.text().await?),
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_multipart",
                    format!("unexpected part {other:?}; send `component` and `manifest`"),
                ));
            }
            None => return Err(ApiError::bad_request("invalid_multipart", "a part has no name")),
        }
    }
    let component = component
        .ok_or_else(|| ApiError::bad_request("invalid_multipart", "missing part `component` (the .wasm file)"))?;
    let manifest = manifest.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_multipart",
            "missing part `manifest` (JSON with at least a name)",
        )
    })?;
    let parsed = Manifest::from_json(&manifest).map_err(|m| ApiError::unprocessable("invalid_manifest", m))?;
    if q.wait != Some(false) {
        let deployed = app.deployer.deploy(&caller.workspace, parsed, component).await?;
        return Ok((StatusCode::CREATED, Json(deployed)).into_response());
    }
    let job = app
        .deployer
        .submit(&caller.workspace, manifest, parsed, component)
        .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/deploys/{}", job.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::ACCEPTED, headers, Json(job)).into_response())
}

/// A deploy made in the background: `compiling`, then `deployed` (with what
/// a waiting deploy answers) or `failed` (with its error).
#[utoipa::path(get, path = "/v1/deploys/{id}", tag = "agents", operation_id = "get_deploy",
    params(("id" = String, Path, description = "The deploy's id (`dep_...`)")),
    responses((status = 200, description = "The deploy", body = DeployJob), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 503, description = "The host's storage is failing", body = ErrorBody)))]
pub async fn deploy_job(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DeployJob>, ApiError> {
    app.deployer
        .job(&caller.workspace, &id)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no deploy {id:?} in this workspace (ended ones are kept as long as executions are)"
            ))
        })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentList {
    data: Vec<AgentView>,
}

/// The caller's workspace's agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    responses((status = 200, description = "The agents, by name", body = AgentList), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(State(app): State<Arc<App>>, Extension(caller): Extension<Caller>) -> Json<AgentList> {
    let data = app
        .registry
        .list(&caller.workspace)
        .iter()
        .map(|e| AgentView::new(e, false))
        .collect();
    Json(AgentList { data })
}

/// One agent with every version.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "Agent id or name")),
    responses((status = 200, description = "The agent", body = AgentView), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id_or_name): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let entry = app
        .registry
        .get(&caller.workspace, &id_or_name)
        .ok_or_else(|| ApiError::NotFound(format!("no agent with id or name {id_or_name:?}")))?;
    Ok(Json(AgentView::new(&entry, true)))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// The period's start (RFC 3339; default: 24 hours ago).
    #[param(format = DateTime)]
    since: Option<String>,
}

/// An agent's activity since a time: executions by status, run durations
/// (p50, p95), tokens, cost, its most frequent errors and its last run.
#[utoipa::path(get, path = "/v1/agents/{id}/summary", tag = "agents", operation_id = "agent_summary",
    params(("id" = String, Path, description = "Agent id or name"), SummaryQuery),
    responses((status = 200, description = "The summary", body = AgentSummary), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn summary(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id_or_name): Path<String>,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Json<AgentSummary>, ApiError> {
    let entry = app
        .registry
        .get(&caller.workspace, &id_or_name)
        .ok_or_else(|| ApiError::NotFound(format!("no agent with id or name {id_or_name:?}")))?;
    let since = match q.since {
        Some(text) => crate::time::parse(&text).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("since: {text:?} is not an RFC 3339 time"))
        })?,
        None => crate::time::now_ms() - DAY_MS,
    };
    Ok(Json(app.stores.executions.summary(&entry.agent.id, since).await?))
}

/// A summary's default period.
const DAY_MS: i64 = 24 * 3600 * 1000;
