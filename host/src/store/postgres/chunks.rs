//! Events as stored on Postgres: a writer batch's events of one execution
//! become rows of consecutive events (JSON arrays), each at most
//! [`CHUNK_BYTES`].

use std::collections::HashMap;

use super::sql::{self, Tx};
use crate::events::Event;

/// Most bytes of one stored row of events (a single larger event is a row of
/// its own).
const CHUNK_BYTES: usize = 64 << 10;

/// The batch's events, by execution, in the order they came.
#[derive(Default)]
pub(super) struct Chunks<'a> {
    index: HashMap<&'a str, usize>,
    chunks: Vec<(&'a str, Vec<&'a Event>)>,
}

impl<'a> Chunks<'a> {
    pub(super) fn add(&mut self, execution_id: &'a str, event: &'a Event) {
        let i = *self.index.entry(execution_id).or_insert_with(|| {
            self.chunks.push((execution_id, Vec::new()));
            self.chunks.len() - 1
        });
        self.chunks[i].1.push(event);
    }

    pub(super) fn insert(&self, tx: &mut Tx<'_>) -> anyhow::Result<()> {
        if self.chunks.is_empty() {
            return Ok(());
        }
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
                let last = row.last().map_or(first.seq, |e| e.seq);
                tx.execute(
                    "INSERT INTO event_chunks (execution_id, first_seq, last_seq, events)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (execution_id, first_seq) DO UPDATE SET last_seq = EXCLUDED.last_seq,
                        events = EXCLUDED.events",
                    &[id, &sql::int(first.seq), &sql::int(last), &json.as_str()],
                )?;
                rest = after;
            }
        }
        Ok(())
    }
}
