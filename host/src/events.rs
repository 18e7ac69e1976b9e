//! Execution events: an ordered log per execution (`status`, `step`, `log`,
//! `content`, `thinking`, `tool_start`, `tool_end`, then one `done` or `error`),
//! numbered from 1, kept in memory while the execution is live and stored with its
//! final record. Live subscribers get what was logged after their cursor and then
//! everything new, without gaps or duplicates; a slow subscriber only ever lags
//! itself (it catches up from the log), never the execution.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use crate::time;

/// Events buffered per live subscriber before it must catch up from the log.
const CHANNEL: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(serialize_with = "time::serialize")]
    pub ts: i64,
    /// Serialised once, when emitted.
    pub data: Box<RawValue>,
    /// The whole event as JSON, made on first delivery and shared by every
    /// subscriber.
    #[serde(skip)]
    json: OnceLock<String>,
}

impl Event {
    /// The event as JSON text (what SSE `data:` carries).
    pub fn json(&self) -> &str {
        self.json
            .get_or_init(|| serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned()))
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.kind, "done" | "error")
    }
}

/// One execution's events.
pub struct EventLog {
    inner: Mutex<LogInner>,
}

struct LogInner {
    events: Vec<Arc<Event>>,
    /// Made on the first subscription: most executions never have one, and a
    /// channel costs a buffer of `CHANNEL` slots.
    live: Option<broadcast::Sender<Arc<Event>>>,
    closed: bool,
}

/// What a subscriber starts from: the events after its cursor, then (unless the
/// log is closed) a receiver of the next ones.
pub struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    pub live: Option<broadcast::Receiver<Arc<Event>>>,
    pub log: Arc<EventLog>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(LogInner {
                events: Vec::new(),
                live: None,
                closed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends an event; a terminal one closes the log.
    pub fn emit<T: Serialize + ?Sized>(&self, kind: &'static str, data: &T) {
        let data = serde_json::to_string(data)
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
            .unwrap_or_else(|| RawValue::NULL.to_owned());
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        let event = Arc::new(Event {
            seq: inner.events.len() as u64 + 1,
            kind,
            ts: time::now_ms(),
            data,
            json: OnceLock::new(),
        });
        inner.closed = event.is_terminal();
        if let Some(live) = &inner.live {
            let _ = live.send(Arc::clone(&event));
        }
        inner.events.push(event);
    }

    /// Events after `after` (what a lagging subscriber catches up with).
    pub fn after(&self, after: u64) -> Vec<Arc<Event>> {
        let inner = self.lock();
        inner.events.iter().skip(after as usize).cloned().collect()
    }

    /// Every event so far (what is stored at the end).
    pub fn all(&self) -> Vec<Arc<Event>> {
        self.after(0)
    }
}

/// The event logs of live executions.
#[derive(Default)]
pub struct EventHub {
    logs: Mutex<HashMap<String, Arc<EventLog>>>,
}

impl EventHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<EventLog>>> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log of a new live execution.
    pub fn open(&self, id: &str) -> Arc<EventLog> {
        let log = Arc::new(EventLog::new());
        self.lock().insert(id.to_owned(), Arc::clone(&log));
        log
    }

    /// The log of a live execution, if it is live.
    pub fn get(&self, id: &str) -> Option<Arc<EventLog>> {
        self.lock().get(id).cloned()
    }

    /// Forgets a finished execution's log (once it is stored).
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Subscribes to a live execution after `after`.
    pub fn subscribe(&self, id: &str, after: u64) -> Option<Subscription> {
        let log = self.get(id)?;
        let mut inner = log.lock();
        let backlog = inner.events.iter().skip(after as usize).cloned().collect();
        let live = if inner.closed {
            None
        } else {
            Some(
                inner
                    .live
                    .get_or_insert_with(|| broadcast::channel(CHANNEL).0)
                    .subscribe(),
            )
        };
        drop(inner);
        Some(Subscription { backlog, live, log })
    }
}
