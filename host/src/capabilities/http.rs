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
        let mut built = http::Request::builder()
            .method(request.method.as_str())
            .uri(&request.url);
        for (name, value) in &request.headers {
            built = built.header(name, value);
        }
        let digest = crate::digest::sha256_hex(&request.body);
        let body = Full::new(Bytes::from(request.body))
            .map_err(|never| match never {})
            .boxed_unsync();
        let built = match built.body(body) {
            Ok(built) => built,
            Err(e) => {
                return Ok(Err(refused(
                    "http_request_uri_invalid",
                    format!("{}: {e}", request.url),
                )));
            }
        };
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
