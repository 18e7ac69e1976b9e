//! The record of one request of a guest's: its `tool_start` and `tool_end`
//! events, its `tool` step and its tool call. The call is on the run's record
//! from its start, as cut short, and made whole when the request ends: a run
//! that ends first (cancelled, timed out, or done without waiting) still shows
//! the request it left under way.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

use crate::events::{EventData, EventLog};
use crate::record::ToolCallRecord;
use crate::runtime::capture::RunRecord;

const CUT_SHORT: &str = "cut short: the run ended or was cancelled first";

pub struct Ledger {
    pub id: String,
    pub arguments: Value,
    /// Its events are announced (not in the run's earlier life).
    pub announce: bool,
    pub events: Arc<EventLog>,
    pub calls: Arc<Mutex<Vec<ToolCallRecord>>>,
    pub record: RunRecord,
    pub started: Instant,
    pub ended: bool,
}

impl Ledger {
    fn calls(&self) -> std::sync::MutexGuard<'_, Vec<ToolCallRecord>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request starts: announced, and on the record as cut short.
    pub fn start(&self) {
        if self.announce {
            self.events.emit(EventData::ToolStart {
                id: &self.id,
                name: "http",
                arguments: &self.arguments,
            });
        }
        self.calls().push(ToolCallRecord {
            id: self.id.clone(),
            name: "http".into(),
            arguments: self.arguments.clone(),
            result: Value::Null,
            error: Some(CUT_SHORT.into()),
            duration_ms: 0,
        });
    }

    /// The request ended.
    pub fn end(&mut self, result: Value, error: Option<String>, duration_ms: u64) {
        self.ended = true;
        if self.announce {
            crate::metrics::tool_call("http", error.is_none(), duration_ms);
            self.events.emit(EventData::ToolEnd {
                id: &self.id,
                name: "http",
                duration_ms,
                error: error.as_deref(),
            });
        }
        self.record.step(
            "tool".into(),
            json!({ "id": self.id, "name": "http", "duration_ms": duration_ms, "error": error }).to_string(),
        );
        if let Some(call) = self.calls().iter_mut().find(|c| c.id == self.id) {
            call.result = result;
            call.error = error;
            call.duration_ms = duration_ms;
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if self.announce {
            self.events.emit(EventData::ToolEnd {
                id: &self.id,
                name: "http",
                duration_ms,
                error: Some(CUT_SHORT),
            });
        }
        if let Some(call) = self.calls().iter_mut().find(|c| c.id == self.id) {
            call.duration_ms = duration_ms;
        }
    }
}
