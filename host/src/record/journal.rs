//! The journal of a durable run: in order, the result of every host call whose
//! result the guest can observe, and the start of each call that acts beyond
//! the sandbox. Pure data; keeping and replaying it live elsewhere.

use serde::{Deserialize, Serialize};

/// What a journal entry answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalKind {
    /// The seed of the run's random sources (drawn from the host's).
    Seed,
    /// A reading of the wall clock (ns since the epoch).
    WallClock,
    /// A reading of the monotonic clock (ns).
    MonotonicClock,
    Llm,
    Tool,
    Artifact,
    Approval,
    /// A conversation's history, or a memory read or write.
    Memory,
}

impl JournalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalKind::Seed => "seed",
            JournalKind::WallClock => "wall_clock",
            JournalKind::MonotonicClock => "monotonic_clock",
            JournalKind::Llm => "llm",
            JournalKind::Tool => "tool",
            JournalKind::Artifact => "artifact",
            JournalKind::Approval => "approval",
            JournalKind::Memory => "memory",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            JournalKind::Seed,
            JournalKind::WallClock,
            JournalKind::MonotonicClock,
            JournalKind::Llm,
            JournalKind::Tool,
            JournalKind::Artifact,
            JournalKind::Approval,
            JournalKind::Memory,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// One host call of a run, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u32,
    pub kind: JournalKind,
    /// A digest of what the guest asked (its arguments), so a replay that asks
    /// for something else is caught; empty for clocks and the seed.
    pub fingerprint: String,
    /// Whether the call finished: `data` is then its result; otherwise the call
    /// was started (and `data` says what is needed to find it again).
    pub done: bool,
    /// JSON text.
    pub data: String,
}
