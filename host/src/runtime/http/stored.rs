//! A guest's HTTP request as a durable run's journal keeps it: its whole
//! response (or its failure, by name), and the answer the guest gets back from
//! that on replay.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::Failure;

/// A request's response (or failure) as the journal keeps it, with a digest
/// of the request's headers and body (what a replay's request must match;
/// entries journaled before it was kept have none).
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub duration_ms: u64,
    pub result: Result<StoredResponse, (String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// A digest of a request's headers (in the order the guest set them) and
/// body; its method and URL are in the journal entry's fingerprint.
pub fn request_digest(headers: &http::HeaderMap, body: &[u8]) -> String {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(headers.len() * 2 + 1);
    for (name, value) in headers {
        parts.push(name.as_str().as_bytes());
        parts.push(value.as_bytes());
    }
    parts.push(body);
    crate::runtime::journal::fingerprint(&parts)
}

#[derive(Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Base64.
    pub body: String,
}

impl Stored {
    /// Reads a response whole, to keep it.
    pub async fn read(response: http::Response<WasiBody>) -> Result<StoredResponse, (String, String)> {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| (code(&e).to_owned(), e.to_string()))?;
        Ok(StoredResponse {
            status: parts.status.as_u16(),
            headers: header_pairs(&parts.headers),
            body: STANDARD.encode(body.to_bytes()),
        })
    }
}

/// A response's headers as name and text pairs (not UTF-8: made so).
pub fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

/// The guest's answer from a stored response or failure.
pub fn answer(result: Result<StoredResponse, (String, String)>) -> Result<http::Response<WasiBody>, Failure> {
    let internal = |e: String| Failure::Http(HttpError::InternalError(Some(e.clone())), e);
    let stored = result.map_err(|(code, message)| Failure::Http(error(&code, &message), message))?;
    let body = STANDARD.decode(&stored.body).map_err(|e| internal(e.to_string()))?;
    let mut response = http::Response::builder().status(stored.status);
    for (name, value) in &stored.headers {
        response = response.header(name, value);
    }
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    response.body(body).map_err(|e| internal(e.to_string()))
}

/// The name a failure is journaled (and told the guest) under.
pub fn code(e: &HttpError) -> &'static str {
    match e {
        HttpError::HttpRequestDenied => "http_request_denied",
        HttpError::DestinationIpProhibited => "destination_ip_prohibited",
        HttpError::DnsError { .. } => "dns_error",
        HttpError::ConnectionRefused => "connection_refused",
        HttpError::ConnectionTimeout => "connection_timeout",
        HttpError::ConnectionReadTimeout => "connection_read_timeout",
        HttpError::HttpResponseTimeout => "http_response_timeout",
        HttpError::HttpResponseBodySize(_) => "http_response_body_size",
        HttpError::HttpResponseIncomplete => "http_response_incomplete",
        HttpError::HttpRequestBodySize(_) => "http_request_body_size",
        HttpError::HttpRequestUriInvalid => "http_request_uri_invalid",
        HttpError::HttpRequestMethodInvalid => "http_request_method_invalid",
        _ => "internal_error",
    }
}

/// The failure a journaled name stands for.
fn error(code: &str, message: &str) -> HttpError {
    match code {
        "http_request_denied" => HttpError::HttpRequestDenied,
        "destination_ip_prohibited" => HttpError::DestinationIpProhibited,
        "dns_error" => HttpError::DnsError {
            rcode: Some(message.to_owned()),
            info_code: None,
        },
        "connection_refused" => HttpError::ConnectionRefused,
        "connection_timeout" => HttpError::ConnectionTimeout,
        "connection_read_timeout" => HttpError::ConnectionReadTimeout,
        "http_response_timeout" => HttpError::HttpResponseTimeout,
        "http_response_body_size" => HttpError::HttpResponseBodySize(None),
        "http_response_incomplete" => HttpError::HttpResponseIncomplete,
        "http_request_body_size" => HttpError::HttpRequestBodySize(None),
        "http_request_uri_invalid" => HttpError::HttpRequestUriInvalid,
        "http_request_method_invalid" => HttpError::HttpRequestMethodInvalid,
        _ => HttpError::InternalError(Some(message.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journaled_failures_come_back_as_they_were() {
        for e in [
            HttpError::HttpRequestDenied,
            HttpError::DestinationIpProhibited,
            HttpError::ConnectionRefused,
            HttpError::HttpResponseBodySize(None),
            HttpError::HttpRequestUriInvalid,
        ] {
            assert_eq!(code(&error(code(&e), "m")), code(&e));
        }
        let stored = StoredResponse {
            status: 201,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: STANDARD.encode(b"hi"),
        };
        let Ok(response) = answer(Ok(stored)) else {
            panic!("a response")
        };
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert!(matches!(
            answer(Err(("connection_refused".into(), "no".into()))),
            Err(Failure::Http(HttpError::ConnectionRefused, m)) if m == "no"
        ));
    }
}
