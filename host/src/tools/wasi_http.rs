//! A guest's own HTTP requests (through `wasi:http` or `warden:agent/http`),
//! sent under the policy of [`http_fetch`](super::http_fetch): the host must be
//! on the agent's allowlist, every address it resolves to is checked by
//! [`egress`](super::egress) and the connection pinned to the checked one, no
//! redirects are followed, headers that steer the connection are dropped, and
//! the response body and time are capped by the `[tools]` config (the request
//! body by the runtime).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, RequestOptions, WasiBody};

use super::ToolError;
use super::egress::{PinnedClients, host_allowed, resolve_checked};
use crate::config::ToolsConfig;
use crate::ports::ToolCtx;

/// Sends `request` for the run in `ctx`; the response body streams, capped at
/// `http_max_bytes` (a longer one ends in `HttpResponseBodySize`).
pub async fn send(
    clients: &PinnedClients,
    config: &ToolsConfig,
    ctx: &ToolCtx,
    request: http::Request<Bytes>,
    options: Option<RequestOptions>,
) -> Result<http::Response<WasiBody>, HttpError> {
    let (parts, body) = request.into_parts();
    let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpError::HttpRequestUriInvalid);
    }
    let host = url
        .host_str()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if !host_allowed(&host, &ctx.allowed_hosts) {
        return Err(HttpError::HttpRequestDenied);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = resolve_checked(config, &host, port).await.map_err(|e| match e {
        ToolError::Failed(message) if message.starts_with("refused") => HttpError::DestinationIpProhibited,
        ToolError::Failed(message) | ToolError::InvalidArguments(message) => HttpError::DnsError {
            rcode: Some(message),
            info_code: None,
        },
    })?;
    let limit = Duration::from_millis(config.http_timeout_ms);
    let within = |asked: Option<Duration>| asked.map_or(limit, |asked| asked.min(limit));
    let options = options.unwrap_or_default();
    let client = clients
        .get(&host, addr)
        .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
    let mut outgoing = client.request(parts.method, url).timeout(limit).body(body);
    // What the host sets itself, or what steers the connection (shared by
    // other runs), is not the guest's to send.
    for (name, value) in &parts.headers {
        if !DEFAULT_FORBIDDEN_HEADERS.contains(name) && name != "traceparent" && name != "tracestate" {
            outgoing = outgoing.header(name, value);
        }
    }
    if let (Some(trace_id), Some(span_id)) = (&ctx.trace_id, &ctx.span_id) {
        outgoing = outgoing.header("traceparent", crate::trace::traceparent(trace_id, span_id));
    }
    let first_byte = within(options.first_byte_timeout);
    let response = match tokio::time::timeout(first_byte, outgoing.send()).await {
        Err(_) => return Err(HttpError::HttpResponseTimeout),
        Ok(Err(e)) if e.is_timeout() => return Err(HttpError::ConnectionTimeout),
        Ok(Err(e)) if e.is_connect() => return Err(HttpError::ConnectionRefused),
        Ok(Err(e)) => return Err(HttpError::InternalError(Some(e.to_string()))),
        Ok(Ok(response)) => response,
    };
    let response: http::Response<reqwest::Body> = response.into();
    Ok(response.map(|body| {
        Limited::new(body, config.http_max_bytes)
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::HttpResponseBodySize(None)
                } else if e
                    .downcast_ref::<reqwest::Error>()
                    .is_some_and(reqwest::Error::is_timeout)
                {
                    HttpError::ConnectionReadTimeout
                } else {
                    HttpError::HttpResponseIncomplete
                }
            })
            .boxed_unsync()
    }))
}
