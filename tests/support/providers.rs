//! Loopback model providers for tests: real HTTP servers on 127.0.0.1 that speak
//! OpenAI's chat-completions protocol and Anthropic's Messages protocol, streamed
//! (SSE) or not, with switchable failures. Their answers are fixed: with tools and
//! no tool result yet, they call the first tool with `{"order_id": "A-1001"}`;
//! otherwise they answer "Order A-1001 has shipped." Each answer reports 120
//! prompt tokens (20 of them cached) and 30 completion tokens.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const ANSWER: &str = "Order A-1001 has shipped.";
pub const PROMPT_TOKENS: u64 = 120;
pub const CACHED_TOKENS: u64 = 20;
pub const COMPLETION_TOKENS: u64 = 30;

/// How the fake provider behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// HTTP 500 every time.
    ServerError,
    /// Answers only after this long.
    Slow(Duration),
    /// Request number N (from 1) answers only after this long; others at once.
    SlowAt(u32, Duration),
    /// A stream of bytes that are not events of the protocol.
    Garbage,
    /// HTTP 429 (Retry-After: 0) for the first N requests, then normal.
    RateLimited(u32),
    /// Streams answers with no usage at all (as some servers do).
    NoUsage,
    /// Streams the first words of its answer (OpenAI, streaming), then
    /// nothing more, never ending.
    Stall,
}

/// The words a stalled answer streams before it stalls.
pub const STALLED: &str = "Order A-1001 ";

/// Request bodies with the key header each carried.
pub type Seen = Arc<Mutex<Vec<(Value, Option<String>)>>>;

pub struct FakeProvider {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU32>,
    /// Bodies and auth headers of the requests seen.
    pub seen: Seen,
    /// How many of the requests came over HTTP/2.
    pub http2: Arc<AtomicU32>,
    /// The `traceparent` header of each request (`None` if it had none).
    pub traceparents: Arc<Mutex<Vec<Option<String>>>>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    mode: Mode,
    requests: Arc<AtomicU32>,
    seen: Seen,
    http2: Arc<AtomicU32>,
    traceparents: Arc<Mutex<Vec<Option<String>>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
}

impl FakeProvider {
    pub async fn start(protocol: Protocol, mode: Mode) -> FakeProvider {
        let shared = Shared {
            mode,
            requests: Arc::new(AtomicU32::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            http2: Arc::new(AtomicU32::new(0)),
            traceparents: Arc::default(),
        };
        let router = match protocol {
            Protocol::OpenAi => Router::new().route("/v1/chat/completions", post(openai)),
            Protocol::Anthropic => Router::new().route("/v1/messages", post(anthropic)),
        }
        .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeProvider {
            addr,
            requests: shared.requests,
            seen: shared.seen,
            http2: shared.http2,
            traceparents: shared.traceparents,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT` (OpenAI's base URL needs `/v1` after it).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What the fake model does with a conversation: call the first tool, or answer.
fn decide(body: &Value, tool_result_role: &str) -> Option<String> {
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let answered = messages.iter().any(|m| {
        m["role"] == tool_result_role
            || m["content"]
                .as_array()
                .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
    });
    if has_tools && !answered {
        let tools = body["tools"].as_array().cloned().unwrap_or_default();
        let first = &tools[0];
        let name = first["function"]["name"]
            .as_str()
            .or(first["name"].as_str())
            .unwrap_or("tool");
        Some(name.to_owned())
    } else {
        None
    }
}

/// Common handling: count, record, fail as told. `None` means answer normally.
async fn gate(shared: &Shared, version: Version, headers: &HeaderMap, body: &Value, auth: &str) -> Option<Response> {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if version == Version::HTTP_2 {
        shared.http2.fetch_add(1, Ordering::SeqCst);
    }
    let key = headers.get(auth).and_then(|v| v.to_str().ok()).map(str::to_owned);
    shared.seen.lock().unwrap().push((body.clone(), key));
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.traceparents.lock().unwrap().push(traceparent);
    match shared.mode {
        Mode::ServerError => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": { "message": "the fake model is down" } })),
            )
                .into_response(),
        ),
        Mode::RateLimited(times) if n <= times => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "0")],
                axum::Json(json!({ "error": { "message": "slow down" } })),
            )
                .into_response(),
        ),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Mode::SlowAt(at, d) if n == at => {
            tokio::time::sleep(d).await;
            None
        }
        Mode::Garbage => Some(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from("data: {this is not json\n\n"))
                .unwrap(),
        ),
        _ => None,
    }
}

fn sse(events: Vec<(Option<&str>, Value)>, done: bool) -> Response {
    let mut text = String::new();
    for (name, data) in events {
        if let Some(name) = name {
            text.push_str(&format!("event: {name}\n"));
        }
        text.push_str(&format!("data: {data}\n\n"));
    }
    if done {
        text.push_str("data: [DONE]\n\n");
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(text))
        .unwrap()
}

async fn openai(
    State(shared): State<Shared>,
    version: Version,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = gate(&shared, version, &headers, &body, "authorization").await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    let usage = json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": { "cached_tokens": CACHED_TOKENS },
    });
    let tool = decide(&body, "tool");
    if body["stream"] != true {
        let message = match &tool {
            Some(name) => json!({ "role": "assistant", "content": null, "tool_calls": [
                { "id": "call_1", "type": "function", "function": { "name": name, "arguments": "{\"order_id\":\"A-1001\"}" } }
            ]}),
            None => json!({ "role": "assistant", "content": ANSWER }),
        };
        let finish = if tool.is_some() { "tool_calls" } else { "stop" };
        return axum::Json(json!({
            "model": model,
            "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        (
            None,
            json!({ "model": model, "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] }),
        )
    };
    let mut events = vec![chunk(json!({ "role": "assistant" }), Value::Null)];
    if shared.mode == Mode::Stall {
        for word in STALLED.split_inclusive(' ') {
            events.push(chunk(json!({ "content": word }), Value::Null));
        }
        let mut text = String::new();
        for (_, data) in events {
            text.push_str(&format!("data: {data}\n\n"));
        }
        let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(text) });
        let never = futures_util::stream::pending();
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(futures_util::StreamExt::chain(first, never)))
            .unwrap();
    }
    match &tool {
        Some(name) => {
            events.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "id": "call_1", "type": "function", "function": { "name": name, "arguments": "{\"order_id\":" } }] }),
                Value::Null,
            ));
            events.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "\"A-1001\"}" } }] }),
                Value::Null,
            ));
            events.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            for word in ANSWER.split_inclusive(' ') {
                events.push(chunk(json!({ "content": word }), Value::Null));
            }
            events.push(chunk(json!({}), json!("stop")));
        }
    }
    if shared.mode != Mode::NoUsage {
        events.push((None, json!({ "model": model, "choices": [], "usage": usage })));
    }
    sse(events, true)
}

async fn anthropic(
    State(shared): State<Shared>,
    version: Version,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = gate(&shared, version, &headers, &body, "x-api-key").await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    let tool = decide(&body, "tool");
    let input_tokens = PROMPT_TOKENS - CACHED_TOKENS;
    if body["stream"] != true {
        let content = match &tool {
            Some(name) => {
                json!([{ "type": "tool_use", "id": "toolu_1", "name": name, "input": { "order_id": "A-1001" } }])
            }
            None => json!([{ "type": "text", "text": ANSWER }]),
        };
        return axum::Json(json!({
            "model": model,
            "content": content,
            "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" },
            "usage": { "input_tokens": input_tokens, "cache_read_input_tokens": CACHED_TOKENS, "output_tokens": COMPLETION_TOKENS },
        }))
        .into_response();
    }
    let mut events = vec![(
        Some("message_start"),
        json!({ "type": "message_start", "message": { "model": model, "usage": {
            "input_tokens": input_tokens, "cache_read_input_tokens": CACHED_TOKENS, "output_tokens": 1 } } }),
    )];
    let stop = match &tool {
        Some(name) => {
            events.push((
                Some("content_block_start"),
                json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "tool_use", "id": "toolu_1", "name": name, "input": {} } }),
            ));
            for part in ["{\"order_id\":", "\"A-1001\"}"] {
                events.push((
                    Some("content_block_delta"),
                    json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "input_json_delta", "partial_json": part } }),
                ));
            }
            "tool_use"
        }
        None => {
            events.push((
                Some("content_block_start"),
                json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
            ));
            for word in ANSWER.split_inclusive(' ') {
                events.push((
                    Some("content_block_delta"),
                    json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": word } }),
                ));
            }
            "end_turn"
        }
    };
    events.push((
        Some("content_block_stop"),
        json!({ "type": "content_block_stop", "index": 0 }),
    ));
    events.push((
        Some("message_delta"),
        json!({ "type": "message_delta", "delta": { "stop_reason": stop }, "usage": { "output_tokens": COMPLETION_TOKENS } }),
    ));
    events.push((Some("message_stop"), json!({ "type": "message_stop" })));
    sse(events, false)
}
