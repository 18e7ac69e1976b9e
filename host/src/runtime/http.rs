//! A guest's own HTTP requests, through `wasi:http/outgoing-handler` (the
//! Python SDK's `fetch`, any component importing it) or `warden:agent/http`
//! (the JavaScript and Rust SDKs', as the QuickJS builder cannot import
//! `wasi:http`): sent by the tool host under the `http_fetch` policy and
//! recorded like tool calls (`http` in `tool_calls`, a `tool` step and span,
//! `tool_start`/`tool_end` events, counted against the run's tool-call cap).
//!
//! In a durable run each request is journaled like a tool call: its start is
//! numbered when the guest makes it (stored before it is sent, unless its
//! method is safe), and its whole response (capped as always) is kept, so a
//! replay answers it from the journal without sending it again; a request that
//! was under way when the host died is sent again when its method is safe, and
//! refused otherwise (it may have acted).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::capture::RunRecord;
use super::journal::{self, Replayed, RunJournal};
use crate::events::{EventData, EventLog};
use crate::ports::{Effects, Reach, ToolCtx, ToolHost};
use crate::record::{JournalKind, ToolCallRecord};
use crate::store::Commit;

/// Most bytes of one request's body.
const MAX_REQUEST_BYTES: usize = 1 << 20;

type Done = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type Responding = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Done), HttpError>> + Send>;
pub type Sent = Result<http::Response<WasiBody>, (HttpError, String)>;

/// What a run may send over `wasi:http`, and what it sent.
pub struct HttpGrant {
    pub tools: Arc<dyn ToolHost>,
    pub ctx: ToolCtx,
    pub events: Arc<EventLog>,
    pub effects: Arc<dyn Effects>,
    /// Where each request's `tool` step goes (the trace's span).
    record: RunRecord,
    /// A durable run's journal.
    pub journal: Option<Arc<RunJournal>>,
    /// Requests one run may make.
    pub max: usize,
    sent: usize,
    /// The requests made, as they end.
    calls: Arc<Mutex<Vec<ToolCallRecord>>>,
}

/// A request's response (or failure) as the journal keeps it.
#[derive(Serialize, Deserialize)]
struct Stored {
    duration_ms: u64,
    result: Result<StoredResponse, (String, String)>,
}

#[derive(Serialize, Deserialize)]
struct StoredResponse {
    status: u16,
    headers: Vec<(String, String)>,
    /// Base64.
    body: String,
}

/// How a request is answered.
enum Plan {
    Refused(HttpError, String),
    /// From the journal.
    Replayed(Stored),
    /// Sent, and journaled when the run is durable.
    Live(Option<Journaled>),
}

struct Journaled {
    journal: Arc<RunJournal>,
    fingerprint: String,
    seq: u32,
    /// The start's commit, awaited before sending unless the method is safe.
    commit: Option<(Commit, bool)>,
}

impl HttpGrant {
    pub fn new(
        tools: Arc<dyn ToolHost>,
        ctx: ToolCtx,
        events: Arc<EventLog>,
        effects: Arc<dyn Effects>,
        record: RunRecord,
    ) -> Self {
        Self {
            tools,
            ctx,
            events,
            effects,
            record,
            journal: None,
            max: 0,
            sent: 0,
            calls: Arc::default(),
        }
    }

    /// The requests the run made, in the order they ended.
    pub fn take_calls(&self) -> Vec<ToolCallRecord> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Decides, in the order the guest makes its requests, how this one is
    /// answered (the journal is read and numbered in that order).
    fn plan(&self, method: &http::Method, url: &str) -> Plan {
        if self.sent > self.max {
            let why = format!("this run already made {} requests, its tool-call cap", self.max);
            return Plan::Refused(HttpError::HttpRequestDenied, why);
        }
        let Some(journal) = &self.journal else {
            return Plan::Live(None);
        };
        let fingerprint = journal::fingerprint(&[b"http", method.as_str().as_bytes(), url.as_bytes()]);
        let stopped =
            |stop: super::Stop| Plan::Refused(HttpError::InternalError(Some(stop.message.clone())), stop.message);
        let (seq, commit) = match journal.take(JournalKind::Tool, &fingerprint, &format!("http {method} {url}")) {
            Err(stop) => return stopped(stop),
            Ok(Some(Replayed::Done(data))) => {
                return match serde_json::from_str(&data) {
                    Ok(stored) => Plan::Replayed(stored),
                    Err(e) => stopped(super::Stop::damaged_journal("http request", &e)),
                };
            }
            Ok(Some(Replayed::Started { seq, .. })) if method.is_safe() => (seq, None),
            Ok(Some(Replayed::Started { .. })) => {
                let why = "the host stopped while this request was under way; it may have acted, so it is not sent \
                           again";
                return Plan::Refused(HttpError::HttpRequestDenied, why.into());
            }
            Ok(None) => match journal.begin(JournalKind::Tool, &fingerprint, "{}".into()) {
                Ok((seq, commit)) => (seq, Some((commit, !method.is_safe()))),
                Err(stop) => return stopped(stop),
            },
        };
        Plan::Live(Some(Journaled {
            journal: Arc::clone(journal),
            fingerprint,
            seq,
            commit,
        }))
    }
}

impl HttpGrant {
    /// Sends one request of the guest's (through `wasi:http` or
    /// `warden:agent/http`): planned now, in the guest's order; the future
    /// answers it, with why it failed.
    pub fn request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Pin<Box<dyn Future<Output = Sent> + Send>> {
        self.sent += 1;
        let id = format!("http_{}", self.sent);
        let url = request.uri().to_string();
        let arguments = json!({ "method": request.method().as_str(), "url": url });
        let plan = self.plan(request.method(), &url);
        let tools = Arc::clone(&self.tools);
        let mut ctx = self.ctx.clone();
        ctx.span_id = Some(crate::trace::span_id(&ctx.execution_id, &id));
        let (events, effects, calls) = (
            Arc::clone(&self.events),
            Arc::clone(&self.effects),
            Arc::clone(&self.calls),
        );
        let record = self.record.clone();
        Box::pin(async move {
            let started = Instant::now();
            let replayed = matches!(plan, Plan::Replayed(_));
            if !replayed {
                events.emit(EventData::ToolStart {
                    id: &id,
                    name: "http",
                    arguments: &arguments,
                });
            }
            let (sent, duration_ms) = match plan {
                Plan::Refused(code, why) => (Err((code, why)), 0),
                Plan::Replayed(stored) => (answer(stored.result), stored.duration_ms),
                Plan::Live(journaled) => {
                    let sent = live(tools.as_ref(), effects.as_ref(), &ctx, request, options, journaled).await;
                    (sent, started.elapsed().as_millis() as u64)
                }
            };
            let (result, error) = match &sent {
                Ok(response) => (json!({ "status": response.status().as_u16() }), None),
                Err((_, message)) => (Value::Null, Some(message.clone())),
            };
            if !replayed {
                crate::metrics::tool_call("http", error.is_none(), duration_ms);
                events.emit(EventData::ToolEnd {
                    id: &id,
                    name: "http",
                    duration_ms,
                    error: error.as_deref(),
                });
            }
            record.step(
                "tool".into(),
                json!({ "id": id, "name": "http", "duration_ms": duration_ms, "error": error }).to_string(),
            );
            calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ToolCallRecord {
                    id,
                    name: "http".into(),
                    arguments,
                    result,
                    error,
                    duration_ms,
                });
            sent
        })
    }
}

impl WasiHttpHooks for HttpGrant {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Done,
    ) -> Responding {
        let pending = self.request(request, options);
        Box::new(async move {
            let response = pending.await.map_err(|(code, _)| code)?;
            let done: Done = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Sends a request; in a durable run, reads the whole response and journals it.
async fn live(
    tools: &dyn ToolHost,
    effects: &dyn Effects,
    ctx: &ToolCtx,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    journaled: Option<Journaled>,
) -> Sent {
    let began = Instant::now();
    let Some(Journaled {
        journal,
        fingerprint,
        seq,
        commit,
    }) = journaled
    else {
        return send(tools, effects, ctx, request, options).await;
    };
    match commit {
        Some((commit, true)) => {
            if let Err(e) = commit.await {
                let why = format!("the host could not record that the request starts ({e}), so it does not send it");
                return Err((HttpError::InternalError(Some(why.clone())), why));
            }
        }
        Some((commit, false)) => commit.detach(),
        None => {}
    }
    let result = match send(tools, effects, ctx, request, options).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            match body.collect().await {
                Ok(body) => Ok(StoredResponse {
                    status: parts.status.as_u16(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect(),
                    body: STANDARD.encode(body.to_bytes()),
                }),
                Err(e) => Err((code(&e).to_owned(), e.to_string())),
            }
        }
        Err((e, message)) => Err((code(&e).to_owned(), message)),
    };
    let stored = Stored {
        duration_ms: began.elapsed().as_millis() as u64,
        result,
    };
    let data = serde_json::to_string(&stored).unwrap_or_default();
    if let Err(stop) = journal.record(JournalKind::Tool, &fingerprint, Some(seq), data) {
        return Err((HttpError::InternalError(Some(stop.message.clone())), stop.message));
    }
    answer(stored.result)
}

/// Reads the request body (capped), has the run's start stored, and sends.
async fn send(
    tools: &dyn ToolHost,
    effects: &dyn Effects,
    ctx: &ToolCtx,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Sent {
    let (parts, body) = request.into_parts();
    let host = parts.uri.host().unwrap_or_default().to_owned();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!("the request body is over {MAX_REQUEST_BYTES} bytes");
            return Err((HttpError::HttpRequestBodySize(None), message));
        }
        Err(e) => return Err((HttpError::HttpRequestDenied, format!("reading the request body: {e}"))),
    };
    if let Err(e) = effects.before_effect(Reach::Outside).await {
        return Err((HttpError::InternalError(Some(e.to_string())), e.to_string()));
    }
    tools
        .send_http(ctx, http::Request::from_parts(parts, body), options)
        .await
        .map_err(|e| {
            let message = match &e {
                HttpError::HttpRequestDenied => format!("refused: {host} is not in this agent's allowed_hosts"),
                HttpError::DestinationIpProhibited => format!(
                    "refused: {host} is a loopback, private or link-local address, or one reserved for special use"
                ),
                other => other.to_string(),
            };
            (e, message)
        })
}

/// The guest's answer from a stored response or failure.
fn answer(result: Result<StoredResponse, (String, String)>) -> Sent {
    let stored = result.map_err(|(code, message)| (error(&code, &message), message))?;
    let body = STANDARD
        .decode(&stored.body)
        .map_err(|e| (HttpError::InternalError(Some(e.to_string())), e.to_string()))?;
    let mut response = http::Response::builder().status(stored.status);
    for (name, value) in &stored.headers {
        response = response.header(name, value);
    }
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    response
        .body(body)
        .map_err(|e| (HttpError::InternalError(Some(e.to_string())), e.to_string()))
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
        let response = answer(Ok(stored)).map_err(|(_, m)| m).expect("a response");
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert!(matches!(
            answer(Err(("connection_refused".into(), "no".into()))),
            Err((HttpError::ConnectionRefused, m)) if m == "no"
        ));
    }
}
