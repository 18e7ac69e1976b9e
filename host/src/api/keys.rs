//! `/admin/keys`: a workspace admin creates, lists and revokes the keys of their
//! own workspace. The token is shown once, in the creation's answer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::app::App;
use crate::auth::Caller;
use crate::record::{ApiKey, Role};

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    match caller.role {
        Role::Admin => Ok(()),
        Role::Member | Role::Approver => Err(ApiError::Forbidden("managing keys needs an admin key".into())),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for.
    #[schema(min_length = 1, max_length = 100, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    name: String,
    #[serde(default = "member")]
    role: Role,
    /// Must be the caller's own workspace when given.
    #[serde(default)]
    workspace: Option<String>,
}

fn member() -> Role {
    Role::Member
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    key: ApiKey,
    /// `Authorization: Bearer <token>`; shown only here.
    token: String,
}

/// Creates a key in the caller's workspace (admin keys only).
#[utoipa::path(post, path = "/admin/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, description = "The key and its token, shown only now", body = Created),
        (status = 400, description = "Malformed JSON", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin key, or another workspace", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "A bad name or role", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    admin_only(&caller)?;
    if let Some(w) = &body.workspace
        && *w != caller.workspace
    {
        return Err(ApiError::Forbidden(
            "an admin key manages its own workspace's keys; other workspaces' keys are made with `warden keys create`"
                .into(),
        ));
    }
    let new = app.auth.create_key(&caller.workspace, &body.name, body.role).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            key: new.key,
            token: new.token,
        }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    data: Vec<ApiKey>,
}

/// The caller's workspace's keys (admin keys only), without secrets.
#[utoipa::path(get, path = "/admin/keys", tag = "keys",
    responses((status = 200, description = "The keys", body = KeyList), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin key", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<KeyList>, ApiError> {
    admin_only(&caller)?;
    let data = app.auth.list_keys(&caller.workspace).await?;
    Ok(Json(KeyList { data }))
}

/// Revokes a key of the caller's workspace, at once.
#[utoipa::path(delete, path = "/admin/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, description = "The revoked key", body = ApiKey), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 403, description = "Not an admin key", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 409, description = "The key making the request", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    admin_only(&caller)?;
    if caller.key_id.as_deref() == Some(id.as_str()) {
        return Err(ApiError::Conflict {
            code: "own_key",
            message: "a key cannot revoke itself; use another admin key or `warden keys revoke`".into(),
            status: None,
        });
    }
    let key = app
        .auth
        .revoke_key(&caller.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no key {id:?}")))?;
    Ok(Json(key))
}
