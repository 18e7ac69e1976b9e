//! `warden:agent/http`: a guest's own HTTP request, whole (for toolchains that
//! cannot import `wasi:http`), sent and recorded exactly as a `wasi:http` one
//! (see [`crate::runtime::http`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::RequestOptions;

use crate::runtime::RunState;
use crate::runtime::bindings::warden::agent::http::{Error, Host, Request, Response};
use crate::runtime::http::{Failure, code, header_pairs};

fn refused(code: &str, message: String) -> Error {
    Error {
        code: code.to_owned(),
        message,
    }
}

impl Host for RunState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, Error>> {
        // Standard methods in any case; others exactly as given.
        let upper = request.method.to_ascii_uppercase();
        let standard = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        let name = if standard.contains(&upper.as_str()) {
            &upper
        } else {
            &request.method
        };
        let Ok(method) = http::Method::from_bytes(name.as_bytes()) else {
            let why = format!("{:?} is not an HTTP method", request.method);
            return Ok(Err(refused("http_request_method_invalid", why)));
        };
        let uri: http::Uri = match request.url.parse() {
            Ok(uri) => uri,
            Err(e) => {
                return Ok(Err(refused(
                    "http_request_uri_invalid",
                    format!("{}: {e}", request.url),
                )));
            }
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &request.headers {
            let parsed = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            );
            let (Ok(name), Ok(value)) = parsed else {
                let why = format!("header {name:?} is not a valid HTTP header");
                return Ok(Err(refused("http_request_header_invalid", why)));
            };
            headers.append(name, value);
        }
        let digest = crate::digest::sha256_hex(&request.body);
        let body = Full::new(Bytes::from(request.body))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut built = http::Request::new(body);
        *built.method_mut() = method;
        *built.uri_mut() = uri;
        *built.headers_mut() = headers;
        let options = request.timeout_ms.map(|ms| RequestOptions {
            first_byte_timeout: Some(Duration::from_millis(ms.into())),
            ..RequestOptions::default()
        });
        let pending = self.http_grant.request(built, options, Some(digest.as_bytes()));
        let answered = super::off_fiber(move || async move {
            let response = pending.await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| {
                let message = format!("reading the response: {e}");
                Failure::Http(e, message)
            })?;
            Ok(Response {
                status: parts.status.as_u16(),
                headers: header_pairs(&parts.headers),
                body: body.to_bytes().to_vec(),
            })
        })
        .await;
        match answered {
            Ok(Ok(response)) => Ok(Ok(response)),
            Ok(Err(Failure::Http(e, message))) => Ok(Err(refused(code(&e), message))),
            // A journal or storage failure ends the run.
            Ok(Err(Failure::Stop(stop))) => Err(wasmtime::Error::new(stop)),
            Err(e) => Ok(Err(refused(
                "internal_error",
                format!("the request failed in the host: {e}"),
            ))),
        }
    }
}
