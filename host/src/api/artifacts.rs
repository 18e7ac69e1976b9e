//! `GET /v1/executions/{id}/artifacts` (the list) and
//! `GET /v1/executions/{id}/artifacts/{artifact_id}` (the bytes, with their media
//! type).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::auth::Caller;
use crate::record::Artifact;
use crate::store::BlobError;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ArtifactList {
    data: Vec<Artifact>,
}

/// The artifacts an execution stored.
#[utoipa::path(get, path = "/v1/executions/{id}/artifacts", tag = "artifacts",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The artifacts", body = ArtifactList), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ArtifactList>, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let data = app.stores.executions.artifacts(&id).await?;
    Ok(Json(ArtifactList { data }))
}

/// An artifact's bytes, with its media type.
#[utoipa::path(get, path = "/v1/executions/{id}/artifacts/{artifact_id}", tag = "artifacts",
    params(("id" = String, Path, description = "Execution id"), ("artifact_id" = String, Path, description = "Artifact id")),
    responses((status = 200, description = "The bytes, checked against their SHA-256", content_type = "application/octet-stream", body = Vec<u8>), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 410, description = "The artifact's bytes are no longer stored", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody), (status = 500, description = "The stored bytes are damaged (not served)", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((id, artifact_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let artifact = app
        .stores
        .executions
        .artifact(&id, &artifact_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("execution {id:?} has no artifact {artifact_id:?}")))?;
    let blobs = Arc::clone(&app.stores.blobs);
    let hash = artifact.sha256.clone();
    let bytes = match tokio::task::spawn_blocking(move || blobs.get(&hash))
        .await
        .map_err(anyhow::Error::from)?
    {
        Ok(bytes) => bytes,
        Err(BlobError::Missing) => {
            return Err(ApiError::Gone {
                code: "artifact_missing",
                message: format!("artifact {artifact_id:?}'s bytes are no longer stored"),
            });
        }
        Err(BlobError::Damaged) => {
            tracing::error!(artifact = %artifact_id, sha256 = %artifact.sha256, "a stored artifact is damaged");
            return Err(ApiError::Damaged {
                code: "artifact_damaged",
                message: format!("artifact {artifact_id:?}'s stored bytes do not match their SHA-256; not served"),
            });
        }
        Err(e @ BlobError::Unreadable(_)) => return Err(ApiError::Internal(e.into())),
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&artifact.media_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", artifact.name.replace('"', ""))) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // An agent chose the bytes and their type, and they are served on the
    // dashboard's origin: opened directly they run nothing and reach nothing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"),
    );
    Ok(response)
}
