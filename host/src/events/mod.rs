//! Execution events: what happened during an execution, typed ([`EventData`]),
//! numbered from 1 per execution, and serialised once, when they happen, into
//! the JSON every reader gets (`{seq, type, ts, data}`): SSE subscribers, the
//! events API, and the store, which keeps them as they happen ([`log`]).

mod log;

use std::sync::OnceLock;

use serde::Serialize;
use serde::ser::Serializer;
use serde_json::Value;
use serde_json::value::RawValue;

pub use self::log::{EventHub, EventLog, EventSink, Subscription};
use crate::record::{Approval, Artifact, ExecError, Execution, LogLine, Status, Step, Timing, Usage};
use crate::time;

/// The type of an event (SSE `event:`, the JSON's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Status,
    Log,
    Step,
    Content,
    Thinking,
    ToolStart,
    ToolEnd,
    Artifact,
    /// An approval request was opened or decided.
    Approval,
    /// The run completed: the record's summary. Terminal.
    Done,
    /// The run ended otherwise (failed, cancelled): its error. Terminal.
    Error,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        EventKind::Status,
        EventKind::Log,
        EventKind::Step,
        EventKind::Content,
        EventKind::Thinking,
        EventKind::ToolStart,
        EventKind::ToolEnd,
        EventKind::Artifact,
        EventKind::Approval,
        EventKind::Done,
        EventKind::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Log => "log",
            EventKind::Step => "step",
            EventKind::Content => "content",
            EventKind::Thinking => "thinking",
            EventKind::ToolStart => "tool_start",
            EventKind::ToolEnd => "tool_end",
            EventKind::Artifact => "artifact",
            EventKind::Approval => "approval",
            EventKind::Done => "done",
            EventKind::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// `done` and `error` end an execution's events.
    pub fn is_terminal(self) -> bool {
        matches!(self, EventKind::Done | EventKind::Error)
    }
}

/// What happened, borrowed from whoever reports it and serialised at once.
pub enum EventData<'a> {
    /// The execution's status changed.
    Status(Status),
    Log(&'a LogLine),
    Step(&'a Step),
    /// A piece of a model's answer, as it streams in.
    Content(&'a str),
    /// A piece of a model's reasoning, as it streams in.
    Thinking(&'a str),
    ToolStart {
        id: &'a str,
        name: &'a str,
        arguments: &'a Value,
    },
    ToolEnd {
        id: &'a str,
        name: &'a str,
        duration_ms: u64,
        error: Option<&'a str>,
    },
    Artifact(&'a Artifact),
    Approval(&'a Approval),
    /// The summary of a completed execution's record.
    Done(&'a Execution),
    /// How an execution that did not complete ended.
    Error(&'a Execution),
}

impl EventData<'_> {
    pub fn kind(&self) -> EventKind {
        match self {
            EventData::Status(_) => EventKind::Status,
            EventData::Log(_) => EventKind::Log,
            EventData::Step(_) => EventKind::Step,
            EventData::Content(_) => EventKind::Content,
            EventData::Thinking(_) => EventKind::Thinking,
            EventData::ToolStart { .. } => EventKind::ToolStart,
            EventData::ToolEnd { .. } => EventKind::ToolEnd,
            EventData::Artifact(_) => EventKind::Artifact,
            EventData::Approval(_) => EventKind::Approval,
            EventData::Done(_) => EventKind::Done,
            EventData::Error(_) => EventKind::Error,
        }
    }

    /// The last events of an execution that ended: its final status, then `done`
    /// (completed) or `error`.
    pub fn end_of(execution: &Execution) -> [EventData<'_>; 2] {
        let last = if execution.status == Status::Completed {
            EventData::Done(execution)
        } else {
            EventData::Error(execution)
        };
        [EventData::Status(execution.status), last]
    }
}

#[derive(Serialize)]
struct StatusData {
    status: Status,
}

#[derive(Serialize)]
struct DeltaData<'a> {
    delta: &'a str,
}

#[derive(Serialize)]
struct ToolStartData<'a> {
    id: &'a str,
    name: &'a str,
    arguments: &'a Value,
}

#[derive(Serialize)]
struct ToolEndData<'a> {
    id: &'a str,
    name: &'a str,
    duration_ms: u64,
    error: Option<&'a str>,
}

/// A `done` event carries an output up to this size; a larger one is read from
/// the execution (the event says `output_bytes`), so the record keeps the one
/// copy of it.
pub const EVENT_OUTPUT_BYTES: usize = 64 << 10;

#[derive(Serialize)]
struct DoneData<'a> {
    status: Status,
    output: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_bytes: Option<usize>,
    token_usage: &'a Usage,
    cost_usd: f64,
    model_used: &'a Option<String>,
    n_steps: u32,
    n_tool_calls: u32,
    timing: Timing,
}

#[derive(Serialize)]
struct ErrorData<'a> {
    status: Status,
    error: &'a Option<ExecError>,
}

impl Serialize for EventData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EventData::Status(status) => StatusData { status: *status }.serialize(s),
            EventData::Log(line) => line.serialize(s),
            EventData::Step(step) => step.serialize(s),
            EventData::Content(delta) | EventData::Thinking(delta) => DeltaData { delta }.serialize(s),
            EventData::ToolStart { id, name, arguments } => ToolStartData { id, name, arguments }.serialize(s),
            EventData::ToolEnd {
                id,
                name,
                duration_ms,
                error,
            } => ToolEndData {
                id,
                name,
                duration_ms: *duration_ms,
                error: *error,
            }
            .serialize(s),
            EventData::Artifact(artifact) => artifact.serialize(s),
            EventData::Approval(approval) => approval.serialize(s),
            EventData::Done(e) => DoneData {
                status: e.status,
                output: e.output.as_deref().filter(|o| o.get().len() <= EVENT_OUTPUT_BYTES),
                output_bytes: e
                    .output
                    .as_deref()
                    .map(|o| o.get().len())
                    .filter(|&n| n > EVENT_OUTPUT_BYTES),
                token_usage: &e.token_usage,
                cost_usd: e.cost_usd,
                model_used: &e.model_used,
                n_steps: e.n_steps,
                n_tool_calls: e.n_tool_calls,
                timing: e.timing(),
            }
            .serialize(s),
            EventData::Error(e) => ErrorData {
                status: e.status,
                error: &e.error,
            }
            .serialize(s),
        }
    }
}

/// One event as it is streamed and stored: its number, its type, and its JSON
/// (`{"seq":…,"type":…,"ts":…,"data":…}`), made once, when first asked for
/// (most runs' events are never streamed, and stored from worker threads).
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub kind: EventKind,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// Logged here: its time and data; the whole JSON once asked for.
    Logged {
        ts: i64,
        data: Box<str>,
        json: OnceLock<Box<str>>,
    },
    /// Read back from the store, as it was stored.
    Stored(Box<str>),
}

/// The part of a stored event's JSON a reader needs to route it.
#[derive(serde::Deserialize)]
struct Head<'a> {
    seq: u64,
    #[serde(rename = "type", borrow)]
    kind: &'a str,
}

impl Event {
    /// Event number `seq`, happening now. `data` is the event's data already
    /// serialised (done outside any lock).
    fn new(seq: u64, kind: EventKind, data: String) -> Self {
        Self {
            seq,
            kind,
            body: Body::Logged {
                ts: time::now_ms(),
                data: data.into_boxed_str(),
                json: OnceLock::new(),
            },
        }
    }

    /// An event read back from its stored JSON; `None` if it is not one.
    pub fn from_json(json: &str) -> Option<Self> {
        let head: Head<'_> = serde_json::from_str(json).ok()?;
        Some(Self {
            seq: head.seq,
            kind: EventKind::parse(head.kind)?,
            body: Body::Stored(json.into()),
        })
    }

    /// The event as JSON text (what SSE `data:` carries and the store keeps).
    pub fn json(&self) -> &str {
        match &self.body {
            Body::Logged { ts, data, json } => json.get_or_init(|| {
                format!(
                    r#"{{"seq":{},"type":"{}","ts":"{}","data":{data}}}"#,
                    self.seq,
                    self.kind.as_str(),
                    time::to_rfc3339(*ts)
                )
                .into_boxed_str()
            }),
            Body::Stored(json) => json,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.kind.is_terminal()
    }
}

/// An event's data as JSON text (`null` if it cannot be serialised).
fn data_json(data: &EventData<'_>) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_once_and_read_back() {
        let line = LogLine {
            seq: 1,
            ts: 0,
            level: crate::record::LogLevel::Info,
            stream: crate::record::LogStream::Log,
            message: "hi \"there\"".into(),
        };
        let data = EventData::Log(&line);
        let event = Event::new(7, data.kind(), data_json(&data));
        let v: Value = serde_json::from_str(event.json()).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["type"], "log");
        assert_eq!(v["data"]["message"], "hi \"there\"");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        let back = Event::from_json(event.json()).unwrap();
        assert_eq!((back.seq, back.kind), (7, EventKind::Log));
        assert!(Event::from_json(r#"{"seq":1,"type":"nope"}"#).is_none());
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        let status = EventData::Status(Status::Queued);
        assert_eq!(data_json(&status), r#"{"status":"queued"}"#);
        assert_eq!(data_json(&EventData::Content("a")), r#"{"delta":"a"}"#);
    }
}
