//! The request MCP clients send most, answered without `rmcp`'s per-request
//! serve loop (a service, two tasks and a cancellation tree per request): a
//! revision 2026-07-28 (stateless) `tools/call` of an agent, from a client that
//! takes no tasks, answered as JSON. Only a request that passes every check
//! `rmcp` makes (`Host`, no `Origin`, `Accept`, `Content-Type`, the
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers against the
//! body, a body `rmcp` would read the same way) is answered here, with what
//! `rmcp` would answer (a test compares the two); anything else, or in doubt,
//! goes to `rmcp` as it came. Two differences, both on a call cut short: when
//! the host closes, the answer is a tool error naming the execution (where
//! `rmcp` answers 500); a client that goes away before its run is accepted
//! leaves no run (`rmcp` accepts it anyway).

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData;
use rmcp::model::{
    CallToolResponse, ClientCapabilities, Implementation, JsonObject, RequestId, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tower::ServiceExt;

use super::agents::{self, Client};
use super::handler::{Mcp, Shared};
use crate::auth::Caller;
use crate::record::Role;

/// The revision whose requests stand alone.
const REVISION: &str = "2026-07-28";
const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";

/// `/mcp`: the common call answered here, everything else by `rmcp`.
pub struct Endpoint {
    shared: Arc<Shared>,
    /// `Host` values `rmcp` accepts: a host, and a port when one is named.
    hosts: Arc<[(String, Option<u16>)]>,
    rmcp: StreamableHttpService<Mcp, LocalSessionManager>,
    max_body: usize,
}

/// The body of a stateless `tools/call`, as far as it is read here (a field
/// more, and it goes to `rmcp`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call<'a> {
    jsonrpc: &'a str,
    id: RequestId,
    method: &'a str,
    params: Object<Params>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
    #[serde(rename = "_meta")]
    meta: Object<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: String,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    capabilities: ClientCapabilities,
    #[serde(rename = "io.modelcontextprotocol/clientInfo", default)]
    client: Option<Implementation>,
}

/// A `T` read only from a JSON object: serde's derived structs also read
/// arrays, which `rmcp` refuses.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Fields(PhantomData)).map(Object)
    }
}

impl Endpoint {
    pub fn new(
        shared: Arc<Shared>,
        allowed_hosts: &[String],
        rmcp: StreamableHttpService<Mcp, LocalSessionManager>,
        max_body: usize,
    ) -> Self {
        let hosts = allowed_hosts.iter().filter_map(|h| allowed(h)).collect();
        Self {
            shared,
            hosts,
            rmcp,
            max_body,
        }
    }

    pub async fn serve(self: Arc<Self>, request: Request) -> Result<Response, Infallible> {
        match self.answer(request).await {
            Ok(response) => Ok(response),
            Err(request) => {
                let response = self.rmcp.clone().oneshot(request).await?;
                Ok(response.map(Body::new))
            }
        }
    }

    /// The answer to a stateless call of an agent, or the request back.
    async fn answer(&self, request: Request) -> Result<Response, Request> {
        let Some(caller) = self.eligible(&request) else {
            return Err(request);
        };
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, self.max_body).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let message = format!("Failed to read request body: {e}");
                return Ok((StatusCode::INTERNAL_SERVER_ERROR, message).into_response());
            }
        };
        let Some(call) = self.call_of(&bytes, &parts.headers, &caller) else {
            return Err(Request::from_parts(parts, Body::from(bytes)));
        };
        let client = Client {
            trace: parts
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::trace::parse),
            tasks: false,
            info: call.params.0.meta.0.client,
        };
        let arguments = call.params.0.arguments.unwrap_or_default();
        let answered = agents::call(
            &self.shared.app,
            &caller,
            &call.params.0.name,
            arguments,
            client,
            std::future::pending(),
        )
        .await;
        let message = match answered {
            Ok(CallToolResponse::Task(_)) => ServerJsonRpcMessage::error(
                ErrorData::internal_error("a task for a client that takes none", None),
                Some(call.id),
            ),
            Ok(response) => ServerJsonRpcMessage::response(ServerResult::from(response), call.id),
            Err(error) => ServerJsonRpcMessage::error(error, Some(call.id)),
        };
        Ok(json(&message))
    }

    /// The caller, when the request's headers are those of a stateless call
    /// that `rmcp` would take.
    fn eligible(&self, request: &Request) -> Option<Caller> {
        let caller = request.extensions().get::<Caller>()?;
        let ok = caller.role != Role::Approver
            && request.method() == axum::http::Method::POST
            && headers_fit(request.headers(), &self.hosts, self.max_body);
        ok.then(|| caller.clone())
    }

    /// The call, when its body is a stateless `tools/call` of one of the
    /// caller's agents that matches its headers.
    fn call_of<'a>(&self, bytes: &'a Bytes, headers: &HeaderMap, caller: &Caller) -> Option<Call<'a>> {
        let call = parse(bytes, headers)?;
        if crate::manifest::RESERVED_NAMES.contains(&call.params.0.name.as_str()) {
            return None;
        }
        let registry = &self.shared.app.registry;
        let agent = registry.get(&caller.workspace, &call.params.0.name)?;
        (agent.agent.name == call.params.0.name).then_some(call)
    }
}

/// Whether a request's headers are those of a stateless call that `rmcp`
/// would take, checked as it checks them.
fn headers_fit(headers: &HeaderMap, hosts: &[(String, Option<u16>)], max_body: usize) -> bool {
    one(headers, header::CONTENT_LENGTH.as_str())
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|length| length <= max_body)
        && !headers.contains_key(header::ORIGIN)
        && !headers.contains_key("mcp-session-id")
        && one(headers, "mcp-protocol-version") == Some(REVISION)
        && one(headers, "mcp-method") == Some("tools/call")
        && one(headers, "mcp-name").is_some_and(|n| !n.starts_with("=?"))
        && one(headers, header::CONTENT_TYPE.as_str())
            .is_some_and(|t| t.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case(JSON)))
        && accepts(headers)
        && host_allowed(headers, hosts)
}

/// The body as a stateless `tools/call` that matches its headers, from a
/// client that takes no tasks.
fn parse<'a>(bytes: &'a [u8], headers: &HeaderMap) -> Option<Call<'a>> {
    let Object(call) = serde_json::from_slice::<Object<Call<'a>>>(bytes).ok()?;
    let ok = call.jsonrpc == "2.0"
        && call.method == "tools/call"
        && call.params.0.meta.0.protocol_version == REVISION
        && !call.params.0.meta.0.capabilities.supports_tasks()
        && one(headers, "mcp-name") == Some(call.params.0.name.as_str());
    ok.then_some(call)
}

/// Whether the `Host` header names an allowed host (as `rmcp` checks it).
fn host_allowed(headers: &HeaderMap, hosts: &[(String, Option<u16>)]) -> bool {
    let Some((host, port)) = one(headers, header::HOST.as_str()).and_then(authority) else {
        return false;
    };
    hosts
        .iter()
        .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
}

/// A header's only value, as text.
fn one<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

/// A `Host` value's host and port, normalized as `rmcp` does.
fn authority(text: &str) -> Option<(String, Option<u16>)> {
    let authority = axum::http::uri::Authority::try_from(text).ok()?;
    let host = authority.host().trim_matches(['[', ']']).to_ascii_lowercase();
    Some((host, authority.port_u16()))
}

/// An allowed host as `rmcp` reads it: an authority, or else a bare name
/// (`::1`, say) on any port.
fn allowed(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    authority(text).or_else(|| Some((text.trim_matches(['[', ']']).to_ascii_lowercase(), None)))
}

/// Whether `Accept` takes both JSON and an event stream, with no weights to
/// weigh (those go to `rmcp`).
fn accepts(headers: &HeaderMap) -> bool {
    let Some(accept) = one(headers, header::ACCEPT.as_str()) else {
        return false;
    };
    if accept.contains([';', '"']) {
        return false;
    }
    let mut types = accept.split(',').map(str::trim);
    let (mut json, mut sse) = (false, false);
    for t in &mut types {
        json |= t.eq_ignore_ascii_case(JSON);
        sse |= t.eq_ignore_ascii_case(SSE);
    }
    json && sse
}

fn json(message: &ServerJsonRpcMessage) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("serialize json response: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderName;

    use super::*;

    const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"q":1},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},
        "io.modelcontextprotocol/clientInfo":{"name":"probe","version":"9"}}}}"#;

    fn hosts() -> Vec<(String, Option<u16>)> {
        ["localhost", "127.0.0.1", "::1", "mcp.example.com:8443"]
            .iter()
            .filter_map(|h| allowed(h))
            .collect()
    }

    /// What the official clients send (the Python SDK's, the bench's).
    fn headers(extra: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let length = BODY.len().to_string();
        let base = [
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("content-length", length.as_str()),
        ];
        for (name, value) in base.iter().chain(extra) {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            if extra.iter().any(|(n, _)| *n == name.as_str()) && base.iter().any(|(n, _)| *n == name.as_str()) {
                headers.remove(&name);
            }
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_clients_stateless_call_is_taken() {
        let headers = headers(&[]);
        assert!(headers_fit(&headers, &hosts(), 4096));
        let call = parse(BODY.as_bytes(), &headers).unwrap();
        assert_eq!(call.params.0.name, "echo");
        assert_eq!(call.params.0.meta.0.client.unwrap().name, "probe");
        let named = headers_fit(&self::headers(&[("host", "MCP.example.com:8443")]), &hosts(), 4096);
        assert!(named);
        assert!(headers_fit(&self::headers(&[("host", "[::1]:8080")]), &hosts(), 4096));
    }

    #[test]
    fn anything_else_goes_to_rmcp() {
        for extra in [
            [("origin", "http://localhost:1")],
            [("mcp-session-id", "s")],
            [("mcp-protocol-version", "2025-11-25")],
            [("mcp-method", "tools/list")],
            [("mcp-name", "=?base64?ZWNobw==?=")],
            [("accept", "application/json;q=0, text/event-stream")],
            [("accept", "application/json")],
            [("content-type", "text/plain")],
            [("host", "evil.example")],
            [("host", "mcp.example.com:443")],
            [("content-length", "999999")],
            [("accept", "\"x, application/json, text/event-stream")],
            [("host", " 127.0.0.1:8080")],
        ] {
            assert!(!headers_fit(&headers(&extra), &hosts(), 4096), "{extra:?}");
        }
        let mut twice = headers(&[]);
        twice.append("mcp-name", HeaderValue::from_static("echo"));
        assert!(!headers_fit(&twice, &hosts(), 4096));
        let headers = headers(&[]);
        for body in [
            BODY.replace(
                r#""io.modelcontextprotocol/clientCapabilities":{}"#,
                r#""io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}"#,
            ),
            BODY.replace(r#""name":"echo""#, r#""name":"typed""#),
            BODY.replace(r#"protocolVersion":"2026-07-28""#, r#"protocolVersion":"2025-11-25""#),
            BODY.replace(r#""io.modelcontextprotocol/clientCapabilities":{},"#, ""),
            BODY.replace(r#""arguments""#, r#""task":{},"arguments""#),
            BODY.replace(r#""tools/call""#, r#""tools/list""#),
            BODY.replace(r#""2.0""#, r#""1.0""#),
            BODY.replace(r#""id":1"#, r#""id":null"#),
            BODY.replace(r#""id":1"#, r#""id":1,"result":{}"#),
            BODY.replace(r#""_meta":{"#, r#""_meta":["2026-07-28",{}],"x":{"#),
            r#"["2.0",1,"tools/call",{"name":"echo","_meta":{}}]"#.to_owned(),
        ] {
            assert!(parse(body.as_bytes(), &headers).is_none(), "{body}");
        }
    }
}
