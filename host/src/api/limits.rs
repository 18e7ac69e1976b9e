//! Refusing oversized bodies politely: a request whose `Content-Length` is over its
//! route's limit gets `413` before any handler runs, and its body is read and
//! thrown away first (up to a bound), so the client is not reset mid-upload and
//! does read the typed error. Bodies without a length are still capped by the
//! extractors' `DefaultBodyLimit`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::ApiError;
use crate::config::HttpLimits;

/// Room for the manifest and multipart framing on top of the component itself.
pub const MULTIPART_OVERHEAD: usize = 1 << 20;
/// Bodies larger than this many times their limit are not drained: the
/// connection is closed instead.
const DRAIN_FACTOR: u64 = 4;
/// Longest time spent draining a refused body.
const DRAIN_TIME: Duration = Duration::from_secs(10);

pub async fn reject_oversized(State(limits): State<HttpLimits>, request: Request, next: Next) -> Response {
    let limit = if request.method() == Method::POST && request.uri().path() == "/v1/agents" {
        limits.max_component_bytes + MULTIPART_OVERHEAD
    } else {
        limits.max_body_bytes
    } as u64;
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(length) = length.filter(|l| *l > limit) else {
        return next.run(request).await;
    };
    let refusal = ApiError::PayloadTooLarge(format!(
        "the body is {length} bytes, over this route's limit of {limit} bytes"
    ));
    if length <= limit.saturating_mul(DRAIN_FACTOR) {
        let _ = tokio::time::timeout(DRAIN_TIME, drain(request.into_body())).await;
        refusal.into_response()
    } else {
        let mut response = refusal.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        response
    }
}

async fn drain(mut body: Body) {
    while let Some(Ok(_)) = body.frame().await {}
}
