//! Request ids and the access log, with tower-http's request-id and trace
//! layers. Every request gets an `x-request-id`: the caller's own when it sent
//! a short one of letters, digits and `-_.:`, else a fresh `req_…`. The
//! response carries it back, and the request's tracing span carries it, so
//! every line the host logs while serving it names it. With `http.access_log`
//! (the default) each request ends with one `info` line (target
//! `warden::http`): its id, method, path (never the query, which may hold a
//! stream token), status and milliseconds.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Response};
use axum::middleware::{self, Next};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a caller.
const MAX_ID: usize = 128;

#[derive(Clone, Copy)]
struct NewId;

impl MakeRequestId for NewId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&crate::ids::request()).ok().map(RequestId::new)
    }
}

/// A caller's id is kept only if it is short and plain: it goes into logs.
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ID
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

async fn drop_unacceptable(mut request: Request, next: Next) -> axum::response::Response {
    if request.headers().get(&HEADER).is_some_and(|id| !acceptable(id)) {
        request.headers_mut().remove(&HEADER);
    }
    next.run(request).await
}

/// `router` with request ids, their spans and (if `access_log`) a line per request.
pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>, access_log: bool) -> Router<S> {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &axum::http::Request<Body>| {
            let id = request
                .headers()
                .get(&HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
        })
        .on_request(())
        .on_response(move |response: &Response<Body>, latency: Duration, _: &Span| {
            if access_log {
                tracing::info!(
                    target: "warden::http",
                    status = response.status().as_u16(),
                    ms = %format_args!("{:.3}", latency.as_secs_f64() * 1000.0),
                    "served"
                );
            }
        })
        .on_body_chunk(())
        .on_eos(())
        // A 5xx is a typed error, logged where it happened.
        .on_failure(());
    router
        .layer(PropagateRequestIdLayer::new(HEADER))
        .layer(trace)
        .layer(SetRequestIdLayer::new(HEADER, NewId))
        .layer(middleware::from_fn(drop_unacceptable))
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
