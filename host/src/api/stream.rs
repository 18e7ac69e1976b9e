//! Execution events over HTTP: `GET /v1/executions/{id}/events` (JSON pages) and
//! `GET /v1/executions/{id}/stream` (Server-Sent Events: `id:` is the sequence
//! number, `event:` the type; `Last-Event-ID` or `?after=N` resumes; a finished
//! execution replays and closes after its `done` or `error`; keep-alive comments
//! while idle). `execute` with `mode: "stream"` answers with the same stream.
//! `POST /v1/executions/{id}/stream-token` gives a short-lived token that opens
//! the stream as `?access_token=` for clients that cannot send headers.

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
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, cursor, page_limit};
use crate::app::App;
use crate::auth::Caller;
use crate::events::{Event, EventLog};
use crate::store::{EventBudget, EventStore, ExecutionStore};

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;
/// A page of events stops growing at this many bytes (it holds at least one).
const PAGE_BYTES: usize = 1 << 20;
/// What a stream reads of stored events at a time: what one subscriber holds
/// beyond the event being sent, however slowly it reads.
const STREAM_BATCH: EventBudget = EventBudget {
    events: 256,
    bytes: 32 << 10,
};

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
    /// `artifact`, then `done` or `error`; or, when the host shuts down before
    /// the execution ends, `shutdown` (no id: reconnect with `Last-Event-ID`).
    event: String,
    /// The event as JSON: `{seq, type, ts, data}`.
    data: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Events `{seq, type, ts, data}`.
    #[schema(value_type = Vec<Object>)]
    data: Vec<Box<RawValue>>,
    has_more: bool,
    next_cursor: Option<u64>,
}

/// Where an execution's events after a cursor are: the store has those up to
/// `stored_until` (all of them for a finished execution); a live execution's log
/// has the rest (`backlog`), then delivers new ones as they happen (`live`).
struct Source {
    stored_until: Option<u64>,
    backlog: Vec<Arc<Event>>,
    live: Option<(broadcast::Receiver<Arc<Event>>, Arc<EventLog>)>,
}

async fn source(app: &Arc<App>, id: &str, after: u64) -> Result<Source, ApiError> {
    if let Some(sub) = app.executions.events().subscribe(id, after) {
        return Ok(Source {
            stored_until: sub.stored_until,
            backlog: sub.backlog,
            live: sub.live.map(|rx| (rx, sub.log)),
        });
    }
    if app.stores.executions.workspace_of(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no execution {id:?}")));
    }
    Ok(Source {
        stored_until: Some(u64::MAX),
        backlog: Vec::new(),
        live: None,
    })
}

/// Stored events after `after` within `budget`, none past `until`.
async fn read_stored(
    store: &dyn EventStore,
    id: &str,
    after: u64,
    until: u64,
    budget: EventBudget,
) -> Result<Vec<Arc<Event>>, ApiError> {
    let mut events = store.read(id, after, budget).await?;
    events.retain(|e| e.seq <= until);
    Ok(events)
}

/// Whether an execution has events after the last of `page`.
async fn more_after(app: &Arc<App>, id: &str, page: &[Arc<Event>]) -> bool {
    let Some(last) = page.last() else {
        return false;
    };
    if last.is_terminal() {
        return false;
    }
    // Either the store or the live log (which may hold nothing yet beyond
    // what the store has) may have the next one.
    if app
        .executions
        .events()
        .get(id)
        .is_some_and(|log| !log.after(last.seq).is_empty())
    {
        return true;
    }
    let budget = EventBudget { events: 1, bytes: 1 };
    app.executions
        .stored_events()
        .read(id, last.seq, budget)
        .await
        .is_ok_and(|more| !more.is_empty())
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
    let after = cursor("after", q.after)?;
    let source = source(&app, &id, after).await?;
    let budget = EventBudget {
        events: limit + 1,
        bytes: PAGE_BYTES,
    };
    let mut events = match source.stored_until {
        Some(until) => read_stored(app.executions.stored_events().as_ref(), &id, after, until, budget).await?,
        None => Vec::new(),
    };
    let mut bytes: usize = events.iter().map(|e| e.json().len()).sum();
    if events.len() <= limit && bytes < PAGE_BYTES {
        for event in source.backlog {
            if events.len() > limit || (bytes >= PAGE_BYTES && !events.is_empty()) {
                break;
            }
            bytes += event.json().len();
            events.push(event);
        }
    }
    // Cut by count or by size: either way, the client reads on from the cursor.
    let has_more = events.len() > limit || (bytes >= PAGE_BYTES && more_after(&app, &id, &events).await);
    events.truncate(limit);
    let next_cursor = if has_more { events.last().map(|e| e.seq) } else { None };
    let data = events
        .iter()
        .filter_map(|e| RawValue::from_string(e.json().to_owned()).ok())
        .collect();
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
    /// A stream token from `POST /v1/executions/{id}/stream-token`, instead of
    /// the `Authorization` header (which `EventSource` cannot send).
    #[allow(dead_code, reason = "read by the authentication middleware")]
    access_token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StreamToken {
    /// Opens this execution's stream as `?access_token=`, as the key that
    /// asked for it, until `expires_at`.
    token: String,
    /// RFC 3339; about a minute from now.
    expires_at: String,
    /// The stream's path with the token.
    stream_url: String,
}

/// A short-lived token that opens this execution's stream without the API key
/// in a URL (for `EventSource`, which cannot send headers).
#[utoipa::path(post, path = "/v1/executions/{id}/stream-token", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The token", body = StreamToken), (status = 401, description = "No API key, or not a valid one", body = ErrorBody), (status = 404, description = "No such resource in the caller's workspace", body = ErrorBody), (status = 429, description = "Over the key's rate limit", body = ErrorBody)))]
pub async fn stream_token(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<StreamToken>, ApiError> {
    super::executions::check_owner(&app, &caller, &id).await?;
    let (token, expires) = app.auth.stream_token(&caller, &id);
    Ok(Json(StreamToken {
        stream_url: format!("/v1/executions/{id}/stream?access_token={token}"),
        token,
        expires_at: crate::time::to_rfc3339(expires),
    }))
}

/// The `Last-Event-ID` header, as documented: an event number, not null
/// (the handler reads it itself).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "describes the header; `resume_from` reads it")]
pub struct ResumeHeader {
    /// Resume after this event.
    #[param(rename = "Last-Event-ID", required = false, minimum = 0)]
    last_event_id: i64,
}

/// The resume point: `Last-Event-ID`, else `?after=`, else the start. A bad
/// `?after=` is refused even when the header wins.
fn resume_from(headers: &HeaderMap, after: Option<i64>) -> Result<u64, ApiError> {
    let after = cursor("after", after)?;
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::bad_request("invalid_request", "Last-Event-ID must be an event's sequence number")
            }),
        None => Ok(after),
    }
}

/// An execution's events as Server-Sent Events, live; closes after `done` or `error`.
#[utoipa::path(get, path = "/v1/executions/{id}/stream", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), StreamQuery, ResumeHeader),
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
    stream_from(&app, id, after).await
}

/// The SSE stream of a just-submitted execution (`mode: "stream"`).
pub async fn stream_new(
    app: &Arc<App>,
    id: &str,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, ApiError> {
    stream_from(app, id.to_owned(), 0).await
}

async fn stream_from(
    app: &Arc<App>,
    id: String,
    after: u64,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>, ApiError> {
    let source = source(app, &id, after).await?;
    // On a store several hosts share, another host may run it (from the
    // start, or once it takes it from the shared queue): its events are then
    // read from the store as they are stored.
    let tail = app.stores.backend.lease().is_some().then(|| Tail {
        events: Arc::clone(app.executions.stored_events()),
        executions: Arc::clone(&app.stores.executions),
        id: id.clone(),
    });
    let feed = Feed {
        queue: VecDeque::new(),
        stored: source
            .stored_until
            .map(|until| (Arc::clone(app.executions.stored_events()), id, until)),
        backlog: source.backlog,
        live: source.live,
        tail,
        closing: app.executions.closing(),
        last: after,
        finished: false,
    };
    Ok(sse(feed))
}

fn to_sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.seq.to_string())
        .event(event.kind.as_str())
        .data(event.json())
}

/// What a stream sends next: what is queued; else stored events, read a batch
/// at a time up to where the live log starts; then the live log's backlog; then
/// its new events as they happen, until the host closes.
struct Feed {
    queue: VecDeque<Arc<Event>>,
    stored: Option<(Arc<dyn EventStore>, String, u64)>,
    backlog: Vec<Arc<Event>>,
    live: Option<(broadcast::Receiver<Arc<Event>>, Arc<EventLog>)>,
    /// An execution another host runs: its stored events, read every
    /// [`TAIL_EVERY`] until its end.
    tail: Option<Tail>,
    closing: watch::Receiver<bool>,
    last: u64,
    finished: bool,
}

/// How often a stream of an execution another host runs reads the store.
const TAIL_EVERY: Duration = Duration::from_millis(200);

/// Where a stream of an execution another host runs reads it.
struct Tail {
    events: Arc<dyn EventStore>,
    executions: Arc<dyn ExecutionStore>,
    id: String,
}

impl Tail {
    /// Events stored after `last`; `None` when there are none and the
    /// execution has ended (its end and last events are stored together).
    async fn next(&self, last: u64) -> Option<Vec<Arc<Event>>> {
        let read = || read_stored(self.events.as_ref(), &self.id, last, u64::MAX, STREAM_BATCH);
        match read().await {
            Ok(more) if !more.is_empty() => return Some(more),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(execution = %self.id, error = ?e, "reading stored events for a stream");
                return Some(Vec::new());
            }
        }
        match self.executions.get(&self.id).await {
            Ok(Some(e)) if e.status.is_terminal() => match read().await {
                Ok(more) if !more.is_empty() => Some(more),
                _ => None,
            },
            Ok(None) => None,
            _ => Some(Vec::new()),
        }
    }
}

/// What a refill found.
enum Refill {
    More,
    /// Nothing more will come.
    End,
    /// The host is closing: the stream ends with a `shutdown` notice.
    Closing,
}

/// The last message of a stream the host ends before its execution did:
/// reconnect later with `Last-Event-ID` to read on.
fn shutdown_notice(last: u64) -> SseEvent {
    SseEvent::default().event("shutdown").data(format!(
        r#"{{"reason":"the host is shutting down","last_event_id":{last}}}"#
    ))
}

impl Feed {
    /// Queues what comes next.
    async fn refill(&mut self) -> Refill {
        if let Some((store, id, until)) = self.stored.take() {
            match read_stored(store.as_ref(), &id, self.last, until, STREAM_BATCH).await {
                Ok(more) if !more.is_empty() => {
                    self.queue.extend(more);
                    self.stored = Some((store, id, until));
                    return Refill::More;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(execution = %id, error = ?e, "reading stored events for a stream"),
            }
        }
        if !self.backlog.is_empty() {
            self.queue.extend(std::mem::take(&mut self.backlog));
            return Refill::More;
        }
        let Some((rx, log)) = self.live.as_mut() else {
            let Some(tail) = &self.tail else {
                return Refill::End;
            };
            tokio::select! {
                () = tokio::time::sleep(TAIL_EVERY) => {}
                _ = self.closing.wait_for(|c| *c) => return Refill::Closing,
            }
            return match tail.next(self.last).await {
                Some(more) => {
                    self.queue.extend(more);
                    Refill::More
                }
                None => Refill::End,
            };
        };
        let received = tokio::select! {
            received = rx.recv() => received,
            _ = self.closing.wait_for(|c| *c) => return Refill::Closing,
        };
        match received {
            Ok(event) => self.queue.push_back(event),
            // Fell behind: catch up from the log itself, in order.
            Err(broadcast::error::RecvError::Lagged(_)) => self.queue.extend(log.after(self.last)),
            Err(broadcast::error::RecvError::Closed) => {
                self.queue.extend(log.after(self.last));
                self.live = None;
            }
        }
        Refill::More
    }
}

fn sse(feed: Feed) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let counted = crate::metrics::Subscribed::open();
    let stream = futures_util::stream::unfold((feed, counted), |(mut feed, counted)| async move {
        loop {
            if feed.finished {
                return None;
            }
            if let Some(event) = feed.queue.pop_front() {
                if event.seq <= feed.last {
                    continue;
                }
                feed.last = event.seq;
                feed.finished = event.is_terminal();
                return Some((Ok(to_sse(&event)), (feed, counted)));
            }
            match feed.refill().await {
                Refill::More => {}
                Refill::End => return None,
                Refill::Closing => {
                    feed.finished = true;
                    return Some((Ok(shutdown_notice(feed.last)), (feed, counted)));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
