//! Where a durable run's clocks and randomness come from: the wall and the
//! monotonic clock, read through the journal, and the run's random seed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use super::RunJournal;
use crate::record::JournalKind;

pub(super) fn fresh_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut seed) {
        // The OS always has entropy for a running host; a run seeded from the
        // time instead is still unpredictable enough to its guest.
        tracing::warn!(error = %e, "no OS randomness for a run's seed");
        seed[..16].copy_from_slice(&crate::time::now_ms().to_le_bytes().repeat(2));
    }
    seed
}

pub(super) fn parse_seed(text: &str) -> Option<[u8; 32]> {
    let hex = text.trim_matches('"');
    let mut seed = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(seed)
}

/// The guest's wall clock, journaled.
pub struct WallClock(pub Arc<RunJournal>);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let ns = self.0.clock(JournalKind::WallClock, || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
        });
        Duration::from_nanos(ns)
    }
}

/// The guest's monotonic clock, journaled; after a replay it goes on from the
/// last journaled reading.
pub struct MonotonicClock(pub Arc<RunJournal>);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let journal = &self.0;
        journal.clock(JournalKind::MonotonicClock, || {
            let elapsed = journal.mono_base.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            journal.mono_offset.saturating_add(elapsed)
        })
    }
}
