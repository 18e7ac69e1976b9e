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
use axum::http::{HeaderName, HeaderValue, Method, Uri};
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
    let mut line = Line {
        // Cheap clones (shared bytes): most requests succeed and log nothing.
        method: request.method().clone(),
        uri: (access_log != AccessLog::Off).then(|| request.uri().clone()),
        id,
        started: Instant::now(),
        access_log,
        answered: false,
    };
    let mut response = next.run(request).await;
    line.answered(&response);
    response.headers_mut().insert(HEADER, line.id.clone());
    response
}

/// One request's line, written when it is answered, or (status 499, as nginx
/// says it) when its client leaves first and the answer is never made.
struct Line {
    id: HeaderValue,
    method: Method,
    uri: Option<Uri>,
    started: Instant,
    access_log: AccessLog,
    answered: bool,
}

impl Line {
    fn answered(&mut self, response: &Response) {
        self.answered = true;
        super::metrics::count(&self.method, response, self.started);
        let status = response.status().as_u16();
        if status >= 400 || self.access_log == AccessLog::All {
            self.write(status, "served");
        }
    }

    fn write(&self, status: u16, what: &'static str) {
        let Some(uri) = &self.uri else { return };
        tracing::info!(
            target: "warden::http",
            id = %self.id.to_str().unwrap_or(""),
            method = %self.method,
            path = %uri.path(),
            status,
            ms = self.started.elapsed().as_micros() as f64 / 1000.0,
            "{what}"
        );
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.answered {
            crate::metrics::http_request(self.method.as_str(), "unmatched", 499, self.started.elapsed());
            self.write(499, "client left");
        }
    }
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
