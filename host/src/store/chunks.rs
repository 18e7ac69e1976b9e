//! Events as every backend stores them: a writer batch's events of one
//! execution become rows of consecutive events (JSON arrays), each at most
//! [`CHUNK_BYTES`] (or one event); and a read of them, row by row, that stops
//! once its budget is spent.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::EventBudget;
use crate::events::Event;

/// Most bytes of one stored row of events (a single larger event is a row of
/// its own).
const CHUNK_BYTES: usize = 64 << 10;

/// The batch's events, by execution, in the order they came.
#[derive(Default)]
pub struct Chunks<'a> {
    index: HashMap<&'a str, usize>,
    chunks: Vec<(&'a str, Vec<&'a Event>)>,
}

/// One row to store: an execution's events `first..=last`, as a JSON array.
pub struct Row<'a> {
    pub execution_id: &'a str,
    pub first: u64,
    pub last: u64,
    pub json: &'a str,
}

impl<'a> Chunks<'a> {
    pub fn add(&mut self, execution_id: &'a str, event: &'a Event) {
        let i = *self.index.entry(execution_id).or_insert_with(|| {
            self.chunks.push((execution_id, Vec::new()));
            self.chunks.len() - 1
        });
        self.chunks[i].1.push(event);
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Hands each row to `store`, in order.
    pub fn rows(&self, mut store: impl FnMut(Row<'_>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut json = String::new();
        for (id, events) in &self.chunks {
            // Rows of at most CHUNK_BYTES (or one event): a reader loads only
            // the rows its page needs.
            let mut rest: &[&Event] = events;
            while let Some(first) = rest.first() {
                let mut bytes = first.json().len();
                let n = 1 + rest[1..]
                    .iter()
                    .take_while(|e| {
                        bytes += e.json().len() + 1;
                        bytes <= CHUNK_BYTES
                    })
                    .count();
                let (row, after) = rest.split_at(n);
                json.clear();
                json.push('[');
                for (i, event) in row.iter().enumerate() {
                    if i > 0 {
                        json.push(',');
                    }
                    json.push_str(event.json());
                }
                json.push(']');
                store(Row {
                    execution_id: id,
                    first: first.seq,
                    last: row.last().map_or(first.seq, |e| e.seq),
                    json: &json,
                })?;
                rest = after;
            }
        }
        Ok(())
    }
}

/// Events read from stored rows: those after `after`, within a budget.
pub struct EventPage<'a> {
    execution_id: &'a str,
    after: u64,
    budget: EventBudget,
    events: Vec<Arc<Event>>,
    bytes: usize,
}

impl<'a> EventPage<'a> {
    pub fn new(execution_id: &'a str, after: u64, budget: EventBudget) -> Self {
        Self {
            execution_id,
            after,
            budget,
            events: Vec::new(),
            bytes: 0,
        }
    }

    /// Whether the budget is spent (read no more rows).
    pub fn spent(&self) -> bool {
        self.events.len() >= self.budget.events || self.bytes >= self.budget.bytes
    }

    /// Events still wanted (at least one).
    pub fn wanted(&self) -> usize {
        self.budget.events.saturating_sub(self.events.len()).max(1)
    }

    /// Takes the events of one stored row (a damaged one is skipped, logged).
    pub fn add(&mut self, chunk: &str) {
        let id = self.execution_id;
        let events: Vec<&RawValue> = match serde_json::from_str(chunk) {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(execution = id, error = %e, "a stored event chunk is not JSON; skipped");
                return;
            }
        };
        for raw in events {
            if self.spent() {
                break;
            }
            match Event::from_json(raw.get()) {
                Some(event) if event.seq > self.after => {
                    self.bytes += raw.get().len();
                    self.events.push(Arc::new(event));
                }
                Some(_) => {}
                None => tracing::warn!(execution = id, "a stored event is not one; skipped"),
            }
        }
    }

    pub fn into_events(self) -> Vec<Arc<Event>> {
        self.events
    }
}
