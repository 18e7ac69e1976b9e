//! MCP handshake sessions bound to the key that opened them: a request naming
//! a session (`Mcp-Session-Id`) with another key (or another workspace's open
//! caller) is answered as if the session did not exist (404), so no key reads
//! another's stream or ends its session. A session ended by `DELETE` answers
//! 204 (clients take 200 or 204 as ended; the transport says 202).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::auth::Caller;

const SESSION_HEADER: &str = "mcp-session-id";

/// Who opened each session, and when it was last used.
#[derive(Clone)]
pub struct Sessions {
    owners: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    /// A session unused this long is forgotten (the transport ends it sooner).
    idle: Duration,
}

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Self {
            owners: Arc::default(),
            idle,
        }
    }
}

/// The caller as an owner: its key (or, on an open host, its workspace).
fn owner(caller: &Caller) -> String {
    match &caller.key_id {
        Some(key) => format!("key:{key}"),
        None => format!("open:{}", caller.workspace),
    }
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub async fn middleware(State(sessions): State<Sessions>, request: Request, next: Next) -> Response {
    let Some(caller) = request.extensions().get::<Caller>() else {
        return ApiError::Unauthorized("no API key".into()).into_response();
    };
    let who = owner(caller);
    let named = session_of(request.headers());
    if let Some(id) = &named {
        let mut owners = sessions.owners.lock().unwrap_or_else(PoisonError::into_inner);
        match owners.get_mut(id) {
            Some((opener, used)) if *opener == who => *used = Instant::now(),
            Some(_) => {
                return ApiError::NotFound("no such MCP session".into()).into_response();
            }
            // Not known here (opened before a restart): the transport answers.
            None => {}
        }
    }
    let delete = request.method() == Method::DELETE;
    let mut response = next.run(request).await;
    let mut owners = sessions.owners.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(opened) = session_of(response.headers())
        && named.as_deref() != Some(opened.as_str())
    {
        let now = Instant::now();
        owners.retain(|_, (_, used)| now.duration_since(*used) < sessions.idle);
        owners.insert(opened, (who, now));
    }
    if delete && response.status() == StatusCode::ACCEPTED {
        if let Some(id) = &named {
            owners.remove(id);
        }
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}
