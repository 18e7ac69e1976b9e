//! Execution events over HTTP: `GET /v1/executions/{id}/events` (JSON pages) and
//! `GET /v1/executions/{id}/stream` (Server-Sent Events: `id:` is the sequence
//! number, `event:` the type; `Last-Event-ID` or `?after=N` resumes; a finished
//! execution replays and closes after its `done` or `error`; keep-alive comments
//! while idle). `execute` with `mode: "stream"` answers with the same stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, cursor, page_limit};
use crate::app::App;
use crate::auth::Caller;
use crate::events::{Event, EventLog};
use crate::store::read;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this sequence number.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// One Server-Sent Event as it goes on the wire.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the stream's messages; axum's `Event` writes them.
pub struct SseMessage {
    /// The event's sequence number (send it back as `Last-Event-ID`).
    id: String,
    /// `status`, `step`, `log`, `content`, `thinking`, `tool_start`, `tool_end`,
    /// `artifact`, then `done` or `error`.
    event: String,
    /// The event as JSON: `{seq, type, ts, data}`.
    data: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Events `{seq, type, ts, data}`.
    #[schema(value_type = Vec<Object>)]
    data: Vec<Value>,
    has_more: bool,
    next_cursor: Option<u64>,
}

fn to_value(e: &Event) -> Value {
    serde_json::to_value(e).unwrap_or_default()
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or(0)
}

/// Where events come from: a live log (backlog, then new ones) or the stored log.
struct Source {
    backlog: Vec<Item>,
    live: Option<(broadcast::Receiver<Arc<Event>>, Arc<EventLog>)>,
}

async fn source(app: &Arc<App>, id: &str, after: u64) -> Result<Source, ApiError> {
    if let Some(sub) = app.events.subscribe(id, after) {
        return Ok(Source {
            backlog: sub.backlog.into_iter().map(Item::Live).collect(),
            live: sub.live.map(|rx| (rx, sub.log)),
        });
    }
    let lookup = id.to_owned();
    let (exists, stored) = app
        .store
        .read(move |conn| {
            Ok((
                read::execution_workspace(conn, &lookup)?.is_some(),
                read::events(conn, &lookup)?,
            ))
        })
        .await?;
    if !exists {
        return Err(ApiError::NotFound(format!("no execution {id:?}")));
    }
    let all: Vec<Value> = stored
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    Ok(Source {
        backlog: all.into_iter().filter(|e| seq(e) > after).map(Item::Stored).collect(),
        live: None,
    })
}

/// An execution's events as JSON pages.
#[utoipa::path(get, path = "/v1/executions/{id}/events", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), EventsQuery),
    responses((status = 200, description = "A page of events", body = EventPage), (status = 400, description = "A malformed query string", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn events(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let limit = page_limit(q.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let mut data: Vec<Value> = source(&app, &id, cursor("after", q.after)?)
        .await?
        .backlog
        .into_iter()
        .map(|item| match item {
            Item::Live(e) => to_value(&e),
            Item::Stored(v) => v,
        })
        .collect();
    let has_more = data.len() > limit;
    data.truncate(limit);
    let next_cursor = if has_more { data.last().map(seq) } else { None };
    Ok(Json(EventPage {
        data,
        has_more,
        next_cursor,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    #[param(minimum = 0)]
    after: Option<i64>,
}

/// The resume point: `Last-Event-ID`, else `?after=`, else the start.
fn resume_from(headers: &HeaderMap, after: Option<i64>) -> Result<u64, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::bad_request("invalid_request", "Last-Event-ID must be an event's sequence number")
            }),
        None => cursor("after", after),
    }
}

/// An execution's events as Server-Sent Events, live; closes after `done` or `error`.
#[utoipa::path(get, path = "/v1/executions/{id}/stream", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Resume after this event")),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream", body = SseMessage), (status = 400, description = "A bad Last-Event-ID or query", body = ErrorBody), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn stream(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let after = resume_from(&headers, q.after)?;
    let source = source(&app, &id, after).await?;
    Ok(sse(source, after))
}

/// The SSE stream of a just-submitted execution (`mode: "stream"`).
pub async fn stream_new(
    app: &Arc<App>,
    id: &str,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, ApiError> {
    Ok(sse(source(app, id, 0).await?, 0))
}

/// An event to send: live (shared, serialised once) or read back from the store.
enum Item {
    Live(Arc<Event>),
    Stored(Value),
}

impl Item {
    fn seq(&self) -> u64 {
        match self {
            Item::Live(e) => e.seq,
            Item::Stored(v) => seq(v),
        }
    }

    fn sse(&self) -> (String, SseEvent) {
        let (kind, data) = match self {
            Item::Live(e) => (e.kind.to_owned(), e.json().to_owned()),
            Item::Stored(v) => (v["type"].as_str().unwrap_or("message").to_owned(), v.to_string()),
        };
        let event = SseEvent::default().id(self.seq().to_string()).event(&kind).data(data);
        (kind, event)
    }
}

struct Feed {
    queue: VecDeque<Item>,
    live: Option<(broadcast::Receiver<Arc<Event>>, Arc<EventLog>)>,
    last: u64,
    finished: bool,
}

fn sse(source: Source, after: u64) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let feed = Feed {
        queue: source.backlog.into(),
        live: source.live,
        last: after,
        finished: false,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            if feed.finished {
                return None;
            }
            if let Some(item) = feed.queue.pop_front() {
                let n = item.seq();
                if n <= feed.last {
                    continue;
                }
                feed.last = n;
                let (kind, sse) = item.sse();
                feed.finished = kind == "done" || kind == "error";
                return Some((Ok(sse), feed));
            }
            let (rx, log) = feed.live.as_mut()?;
            match rx.recv().await {
                Ok(event) => feed.queue.push_back(Item::Live(event)),
                // Fell behind: catch up from the log itself, in order.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    feed.queue.extend(log.after(feed.last).into_iter().map(Item::Live));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    feed.queue.extend(log.after(feed.last).into_iter().map(Item::Live));
                    feed.live = None;
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
