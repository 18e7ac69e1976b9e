//! The authentication middleware: asks [`Auth`](crate::auth::Auth) who sends the
//! request's key (or, on an execution's stream only, whose `?access_token=`
//! stream token it is) and hands handlers the [`Caller`](crate::auth::Caller).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::app::App;
use crate::record::Role;

/// What an `approver` key may do: read, and decide approval requests (MCP
/// too, where it is not offered the agents).
fn approver_may(method: &Method, path: &str) -> bool {
    method == Method::GET
        || path == crate::mcp::PATH
        || (method == Method::POST
            && (path.ends_with("/approve") || path.ends_with("/reject") || path.ends_with("/stream-token"))
            && (path.starts_with("/v1/approvals/") || path.starts_with("/v1/executions/")))
}

/// The stream token in a query string (`access_token=wst_…`), if any.
fn access_token(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| pair.strip_prefix("access_token="))
}

/// The execution whose stream `GET path` reads, if that is what it is.
fn streamed_execution<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    let id = path.strip_prefix("/v1/executions/")?.strip_suffix("/stream")?;
    (method == Method::GET && !id.is_empty() && !id.contains('/')).then_some(id)
}

pub async fn middleware(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let authorization = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(text) => Some(text.to_owned()),
            Err(_) => {
                return ApiError::Unauthorized("the Authorization header must be `Bearer <api key>`".into())
                    .into_response();
            }
        },
    };
    let token = access_token(request.uri().query()).filter(|_| authorization.is_none());
    let authenticated = match token {
        None => app.auth.authenticate(authorization.as_deref()).await,
        Some(token) => match streamed_execution(request.method(), request.uri().path()) {
            Some(id) => app.auth.authenticate_stream(token, id).await,
            None => {
                return ApiError::Unauthorized("a stream token opens only the stream of its execution".into())
                    .into_response();
            }
        },
    };
    match authenticated {
        Ok(caller) => {
            if caller.role == Role::Approver && !approver_may(request.method(), request.uri().path()) {
                return ApiError::Forbidden(
                    "an approver key only reads, and approves or rejects approval requests".into(),
                )
                .into_response();
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
