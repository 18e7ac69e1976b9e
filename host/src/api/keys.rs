//! `/admin/keys`: a workspace admin creates, lists and revokes the keys of their
//! own workspace. The token is shown once, in the creation's answer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::ApiJson;
use crate::app::App;
use crate::auth::Caller;
use crate::auth::keys::{self, ApiKey, Role};
use crate::store::writer::Write;
use crate::time;

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    match caller.role {
        Role::Admin => Ok(()),
        Role::Member => Err(ApiError::Forbidden("managing keys needs an admin key".into())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
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

#[derive(Serialize)]
pub struct Created {
    key: ApiKey,
    /// `Authorization: Bearer <token>`; shown only here.
    token: String,
}

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
    let new = keys::generate(&caller.workspace, &body.name, body.role)
        .map_err(|m| ApiError::unprocessable("invalid_request", m))?;
    app.store
        .writer
        .commit(Write::ApiKey {
            key: new.key.clone(),
            secret_sha256: new.secret_sha256,
        })
        .await?;
    app.auth.close();
    Ok((
        StatusCode::CREATED,
        Json(Created {
            key: new.key,
            token: new.token,
        }),
    ))
}

#[derive(Serialize)]
pub struct KeyList {
    data: Vec<ApiKey>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<KeyList>, ApiError> {
    admin_only(&caller)?;
    let workspace = caller.workspace;
    let data = app
        .store
        .read(move |conn| Ok(keys::list(conn, Some(&workspace))?))
        .await?;
    Ok(Json(KeyList { data }))
}

/// `DELETE /admin/keys/{id}`: revokes at once (also in this host's key cache).
pub async fn revoke(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    admin_only(&caller)?;
    let (lookup, workspace) = (id.clone(), caller.workspace.clone());
    let found = app
        .store
        .read(move |conn| Ok(keys::find(conn, &lookup)?.filter(|(k, _)| k.workspace == workspace)))
        .await?;
    if found.is_none() {
        return Err(ApiError::NotFound(format!("no key {id:?}")));
    }
    app.store
        .writer
        .commit(Write::RevokeApiKey {
            id: id.clone(),
            workspace: caller.workspace.clone(),
            at: time::now_ms(),
        })
        .await?;
    app.auth.forget(&id);
    let lookup = id.clone();
    let key = app
        .store
        .read(move |conn| Ok(keys::find(conn, &lookup)?))
        .await?
        .map(|(k, _)| k)
        .ok_or_else(|| ApiError::NotFound(format!("no key {id:?}")))?;
    Ok(Json(key))
}
