//! A guest's own HTTP requests, through `wasi:http/outgoing-handler` (the
//! Python SDK's `fetch`, any component importing it) or `warden:agent/http`
//! (the JavaScript and Rust SDKs', as the QuickJS builder cannot import
//! `wasi:http`): granted by `http_fetch` in the manifest's `tools`, sent by the
//! tool host under that tool's policy, and recorded like tool calls (`http` in
//! `tool_calls`, a `tool` step and span, `tool_start`/`tool_end` events),
//! counted with them against the run's tool-call cap.
//!
//! In a durable run each request is journaled like a tool call: its start is
//! numbered when the guest makes it (stored before it is sent, unless its
//! method is safe), and its whole response (capped as always) is kept with a
//! digest of its headers and body, so a replay answers it from the journal
//! without sending it again (a request other than its earlier life's, by
//! method, URL, headers or body, ends the run `replay_divergence`); one that
//! was under way when the host died is sent again when its method is safe, and
//! ends the run `unfinished_write` otherwise (it may have acted). A journal or
//! storage failure ends the run too (see [`HttpGrant::stopped`]).

mod ledger;
mod stored;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use self::ledger::Ledger;
use self::stored::{Stored, answer, request_digest};
pub use self::stored::{code, header_pairs};
use super::Stop;
use super::capture::RunRecord;
use super::journal::{self, Replayed, RunJournal};
use crate::events::EventLog;
use crate::ports::{Effects, Reach, ToolCtx, ToolHost};
use crate::record::{JournalKind, ToolCallRecord};
use crate::store::Commit;

/// Most bytes of one request's body.
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Requests of one run under way at once.
const MAX_IN_FLIGHT: usize = 8;
/// Most bytes of one write to an outgoing body the host takes (and buffers).
const BODY_CHUNK_BYTES: usize = 64 << 10;
/// Longest URL a record keeps whole.
const MAX_RECORDED_URL: usize = 2048;

type Done = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type Responding = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Done), HttpError>> + Send>;

/// Why a request got no response: a failure the guest is told (with the
/// host's words), or one that ends the run.
pub enum Failure {
    Http(HttpError, String),
    Stop(Stop),
}

pub type Sent = Result<http::Response<WasiBody>, Failure>;

/// What a run may send over `wasi:http`, and what it sent.
pub struct HttpGrant {
    tools: Arc<dyn ToolHost>,
    ctx: ToolCtx,
    events: Arc<EventLog>,
    effects: Arc<dyn Effects>,
    /// Where each request's `tool` step goes (the trace's span).
    record: RunRecord,
    /// A durable run's journal.
    pub journal: Option<Arc<RunJournal>>,
    /// The manifest grants `http_fetch`.
    pub granted: bool,
    /// Tool calls and requests one run may make, together.
    pub max: usize,
    /// Tool calls the run made (through `warden:agent/tools`).
    pub tool_calls: usize,
    sent: usize,
    in_flight: Arc<AtomicUsize>,
    /// The requests made, as they end.
    calls: Arc<Mutex<Vec<ToolCallRecord>>>,
    /// What ends the run, found where the guest could only be told an error.
    stopped: Arc<Mutex<Option<Stop>>>,
}

/// How a request is answered.
enum Plan {
    Refused(HttpError, String),
    /// The run ends.
    Stopped(Stop),
    /// From the journal (which a request other than the journaled one fails).
    Replayed(Stored, Arc<RunJournal>),
    /// Sent, and journaled when the run is durable (`true`: sent again, its
    /// start announced in the run's earlier life).
    Live(Option<Journaled>, bool),
}

struct Journaled {
    journal: Arc<RunJournal>,
    fingerprint: String,
    seq: u32,
    /// The start's commit, awaited before sending unless the method is safe.
    commit: Option<(Commit, bool)>,
}

/// Counts a request under way until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
            granted: false,
            max: 0,
            tool_calls: 0,
            sent: 0,
            in_flight: Arc::default(),
            calls: Arc::default(),
            stopped: Arc::default(),
        }
    }

    /// Requests the run made.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// The requests the run made, in the order they ended.
    pub fn take_calls(&self) -> Vec<ToolCallRecord> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What ends the run although the guest was only told of an error (a
    /// `wasi:http` answer cannot trap): a journal or storage failure.
    pub fn stopped(&self) -> Option<Stop> {
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Decides, in the order the guest makes its requests, how this one is
    /// answered (the journal is read and numbered in that order).
    fn plan(&self, method: &http::Method, uri: &http::Uri, body: Option<&[u8]>) -> Plan {
        if !self.granted {
            let why = "this agent's manifest does not grant `http_fetch` (in `tools`), which its own requests need";
            return Plan::Refused(HttpError::HttpRequestDenied, why.into());
        }
        // Refused before anything is journaled (the tool host checks again).
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if !crate::manifest::host_allowed(host, &self.ctx.allowed_hosts) {
            let why = format!("refused: {host} is not in this agent's allowed_hosts");
            return Plan::Refused(HttpError::HttpRequestDenied, why);
        }
        if self.sent + self.tool_calls > self.max {
            let why = format!("this run already made {} tool calls and requests, its cap", self.max);
            return Plan::Refused(HttpError::HttpRequestDenied, why);
        }
        if self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            let why = format!("this run already has {MAX_IN_FLIGHT} requests under way");
            return Plan::Refused(HttpError::ConnectionLimitReached, why);
        }
        let Some(journal) = &self.journal else {
            return Plan::Live(None, false);
        };
        let url = uri.to_string();
        let fingerprint = journal::fingerprint(&[
            b"http",
            method.as_str().as_bytes(),
            url.as_bytes(),
            body.unwrap_or_default(),
        ]);
        let (seq, commit, again) = match journal.take(JournalKind::Tool, &fingerprint, &format!("http {method}")) {
            Err(stop) => return Plan::Stopped(stop),
            Ok(Some(Replayed::Done(data))) => {
                return match serde_json::from_str(&data) {
                    Ok(stored) => Plan::Replayed(stored, Arc::clone(journal)),
                    Err(e) => Plan::Stopped(Stop::damaged_journal("http request", &e)),
                };
            }
            Ok(Some(Replayed::Started { seq, .. })) if method.is_safe() => (seq, None, true),
            Ok(Some(Replayed::Started { .. })) => {
                return Plan::Stopped(Stop {
                    code: "unfinished_write",
                    message: format!(
                        "the host stopped while an http {method} request was under way; it may have acted, so \
                         it is not sent again"
                    ),
                });
            }
            Ok(None) => match journal.begin(JournalKind::Tool, &fingerprint, "{}".into()) {
                Ok((seq, commit)) => (seq, Some((commit, !method.is_safe())), false),
                Err(stop) => return Plan::Stopped(stop),
            },
        };
        let journaled = Journaled {
            journal: Arc::clone(journal),
            fingerprint,
            seq,
            commit,
        };
        Plan::Live(Some(journaled), again)
    }

    /// Sends one request of the guest's (through `wasi:http` or
    /// `warden:agent/http`): planned now, in the guest's order; the future
    /// answers it, with why it failed. `body`: its body when known now (a
    /// durable run's replay then matches it too).
    pub fn request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        body: Option<&[u8]>,
    ) -> Pin<Box<dyn Future<Output = Sent> + Send>> {
        self.sent += 1;
        let id = format!("http_{}", self.sent);
        let arguments = json!({ "method": request.method().as_str(), "url": recorded_url(request.uri()) });
        let plan = self.plan(request.method(), request.uri(), body);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = InFlight(Arc::clone(&self.in_flight));
        let tools = Arc::clone(&self.tools);
        let mut ctx = self.ctx.clone();
        ctx.span_id = Some(crate::trace::span_id(&ctx.execution_id, &id));
        let effects = Arc::clone(&self.effects);
        // Announced unless it was in the run's earlier life.
        let announce = matches!(plan, Plan::Refused(..) | Plan::Live(_, false));
        let ledger = Ledger {
            id,
            arguments,
            announce,
            events: Arc::clone(&self.events),
            calls: Arc::clone(&self.calls),
            record: self.record.clone(),
            started: Instant::now(),
            ended: false,
        };
        // On the record from now, in the order the guest made its requests.
        ledger.start();
        Box::pin(async move {
            let _in_flight = in_flight;
            let mut ledger = ledger;
            // A request not sent: the guest may still be writing its body,
            // which is taken (and dropped) so that its writes succeed.
            let (sent, duration_ms) = match plan {
                Plan::Live(journaled, _) => {
                    let sent = live(tools.as_ref(), effects.as_ref(), &ctx, request, options, journaled).await;
                    (sent, ledger.started.elapsed().as_millis() as u64)
                }
                Plan::Refused(code, why) => {
                    drain(request).await;
                    (Err(Failure::Http(code, why)), 0)
                }
                Plan::Replayed(stored, journal) => {
                    let duration_ms = stored.duration_ms;
                    (replay(request, stored, &journal).await, duration_ms)
                }
                Plan::Stopped(stop) => {
                    drain(request).await;
                    (Err(Failure::Stop(stop)), 0)
                }
            };
            let (result, error) = match &sent {
                Ok(response) => (json!({ "status": response.status().as_u16() }), None),
                Err(Failure::Http(_, message)) => (Value::Null, Some(message.clone())),
                Err(Failure::Stop(stop)) => (Value::Null, Some(stop.message.clone())),
            };
            ledger.end(result, error, duration_ms);
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
        let pending = self.request(request, options, None);
        let stopped = Arc::clone(&self.stopped);
        Box::new(async move {
            let response = pending.await.map_err(|failure| match failure {
                Failure::Http(code, _) => code,
                Failure::Stop(stop) => {
                    let told = HttpError::InternalError(Some(stop.message.clone()));
                    stopped
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(stop);
                    told
                }
            })?;
            let done: Done = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_BYTES
    }
}

/// A URL as the record keeps it: without credentials, and cut to a length.
fn recorded_url(uri: &http::Uri) -> String {
    let mut text = match reqwest::Url::parse(&uri.to_string()) {
        Ok(mut url) => {
            if url.password().is_some() || !url.username().is_empty() {
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            url.to_string()
        }
        Err(_) => uri.to_string(),
    };
    if text.len() > MAX_RECORDED_URL {
        let mut cut = MAX_RECORDED_URL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Takes a request's body, up to the cap, and drops it.
async fn drain(request: http::Request<WasiBody>) {
    let _ = Limited::new(request.into_body(), MAX_REQUEST_BYTES).collect().await;
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
        let (parts, body) = read_body(request).await?;
        return send(tools, effects, ctx, parts, body, options).await;
    };
    match commit {
        Some((commit, true)) => {
            if let Err(e) = commit.await {
                return Err(Failure::Stop(Stop {
                    code: "storage_unavailable",
                    message: format!("the host could not record that a request starts ({e}), so it does not send it"),
                }));
            }
        }
        Some((commit, false)) => commit.detach(),
        None => {}
    }
    let (sent, request) = match read_body(request).await {
        Ok((parts, body)) => {
            let digest = request_digest(&parts.headers, &body);
            (send(tools, effects, ctx, parts, body, options).await, Some(digest))
        }
        Err(failure) => (Err(failure), None),
    };
    let result = match sent {
        Ok(response) => Stored::read(response).await,
        Err(Failure::Http(e, message)) => Err((code(&e).to_owned(), message)),
        Err(stop) => return Err(stop),
    };
    let stored = Stored {
        duration_ms: began.elapsed().as_millis() as u64,
        result,
        request,
    };
    let data = serde_json::to_string(&stored).unwrap_or_default();
    if let Err(stop) = journal.record(JournalKind::Tool, &fingerprint, Some(seq), data) {
        return Err(Failure::Stop(stop));
    }
    answer(stored.result)
}

/// A journaled request on replay: its body is read as the guest writes it
/// again, and (when its earlier life kept a digest) it must be the request
/// journaled, headers and body; its answer is the journaled one. Another
/// request fails the journal: the run makes no call after it.
async fn replay(request: http::Request<WasiBody>, stored: Stored, journal: &RunJournal) -> Sent {
    let read = read_body(request).await;
    if let (Some(journaled), Ok((parts, body))) = (&stored.request, &read)
        && request_digest(&parts.headers, body) != *journaled
    {
        let stop = Stop {
            code: "replay_divergence",
            message: format!(
                "the agent's http {} request to {} has other headers or another body than in its earlier life",
                parts.method,
                recorded_url(&parts.uri)
            ),
        };
        journal.diverged(stop.clone());
        return Err(Failure::Stop(stop));
    }
    answer(stored.result)
}

/// Reads a request's body whole (capped).
async fn read_body(request: http::Request<WasiBody>) -> Result<(http::request::Parts, Bytes), Failure> {
    let (parts, body) = request.into_parts();
    match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(body) => Ok((parts, body.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!("the request body is over {MAX_REQUEST_BYTES} bytes");
            Err(Failure::Http(HttpError::HttpRequestBodySize(None), message))
        }
        Err(e) => {
            let message = format!("reading the request body: {e}");
            Err(Failure::Http(HttpError::HttpRequestDenied, message))
        }
    }
}

/// Has the run's start stored, and sends a request whose body is read.
async fn send(
    tools: &dyn ToolHost,
    effects: &dyn Effects,
    ctx: &ToolCtx,
    parts: http::request::Parts,
    body: Bytes,
    options: Option<RequestOptions>,
) -> Sent {
    let host = parts.uri.host().unwrap_or_default().to_owned();
    if let Err(e) = effects.before_effect(Reach::Outside).await {
        return Err(Failure::Stop(Stop {
            code: "storage_unavailable",
            message: e.to_string(),
        }));
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
            Failure::Http(e, message)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_urls_lose_their_credentials_and_length() {
        let uri: http::Uri = "https://user:secret@api.example.com/x?q=1".parse().unwrap();
        assert_eq!(recorded_url(&uri), "https://api.example.com/x?q=1");
        let long: http::Uri = format!("https://a.example/{}", "a".repeat(3000)).parse().unwrap();
        assert_eq!(recorded_url(&long).len(), MAX_RECORDED_URL + '…'.len_utf8());
    }
}
