//! Request ids, the access log and the count of every request (`/metrics`), in
//! one middleware, outside routing so 404, 405 and 413 count. Every request gets an
//! `x-request-id`: the caller's own when it sent a short one of letters,
//! digits and `-_.:`, else a fresh `req_…`; handlers see it in the request's
//! headers and the response carries it back. The access log
//! (`http.access_log`: `errors` by default, `all`, `off`) is one `info` line
//! per request (target `warden::http`): its id, method, path (never the query,
//! which may hold a stream token), status and milliseconds. One event per
//! request and no span: a span per request (what tower-http's trace layer
//! makes) cost 6 % of the echo load's throughput here; a line for every
//! request about 4 %, which is why only failed ones are logged unless asked.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::config::AccessLog;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a caller.
const MAX_ID: usize = 128;

/// A caller's id is kept only if it is short and plain: it goes into logs.
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ID
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

async fn identify(State(access_log): State<AccessLog>, mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&HEADER) {
        Some(id) if acceptable(id) => id.clone(),
        _ => {
            let made = HeaderValue::from_str(&crate::ids::request()).unwrap_or(HeaderValue::from_static("req_"));
            request.headers_mut().insert(HEADER, made.clone());
            made
        }
    };
    let started = Instant::now();
    // Cheap clones (shared bytes): most requests succeed and log nothing.
    let method = request.method().clone();
    let uri = (access_log != AccessLog::Off).then(|| request.uri().clone());
    let mut response = next.run(request).await;
    super::metrics::count(&method, &response, started);
    let failed = response.status().as_u16() >= 400;
    if let Some(uri) = uri.filter(|_| failed || access_log == AccessLog::All) {
        let path = uri.path();
        tracing::info!(
            target: "warden::http",
            id = %id.to_str().unwrap_or(""),
            %method,
            path = %path,
            status = response.status().as_u16(),
            ms = started.elapsed().as_micros() as f64 / 1000.0,
            "served"
        );
    }
    response.headers_mut().insert(HEADER, id);
    response
}

/// `router` with request ids and the access log.
pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>, access_log: AccessLog) -> Router<S> {
    router.layer(middleware::from_fn_with_state(access_log, identify))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken() {
        for ok in ["abc", "req_01m8", "a-b_c.d:e", &"x".repeat(MAX_ID)] {
            assert!(acceptable(&HeaderValue::from_str(ok).unwrap()), "{ok}");
        }
        for bad in ["", "a b", "a\tb", "<script>", &"x".repeat(MAX_ID + 1), "é"] {
            let Ok(value) = HeaderValue::from_str(bad) else {
                continue;
            };
            assert!(!acceptable(&value), "{bad}");
        }
    }
}
