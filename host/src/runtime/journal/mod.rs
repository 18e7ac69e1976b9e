//! The journal of one durable run, as the run uses it: while entries recorded
//! before (by the same execution on an earlier life) last, host calls are
//! answered from them in order, and a call that asks for something else fails
//! the run `replay_divergence`; after that, each call's result is recorded.
//!
//! Entries queue in memory and go to the store (through its batching writer,
//! after the run's start and its events so far) with the next start of a call
//! beyond the sandbox or a write, or a suspension, while the run is short and
//! its events are held back too; once it proves long ([`RunJournal::eager`],
//! when its events start to be stored as they happen) and in a resumed life,
//! each entry goes as it is made, so that no stored event ever comes before
//! the journal entries it was made after. A short run's results stay in
//! memory: they are reads, which a restart may make again, and most such runs
//! end before anything is written (a finished run's journal is dropped).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::Stop;
use crate::config::DurabilityConfig;
use crate::ports::Effects;
use crate::record::{JournalEntry, JournalKind};
use crate::store::{Commit, JournalStore};

pub use self::sources::{MonotonicClock, WallClock};
use self::sources::{fresh_seed, parse_seed};

mod sources;

/// A journaled call found on replay.
pub enum Replayed {
    /// It finished: its result (JSON text).
    Done(String),
    /// It started and never finished: what its start recorded, and its number.
    Started { data: String, seq: u32 },
}

/// Results held in memory at most before they go to the store anyway.
const MAX_PENDING: usize = 64;

pub struct RunJournal {
    execution_id: String,
    inner: Mutex<Inner>,
    store: Arc<dyn JournalStore>,
    effects: Arc<dyn Effects>,
    caps: DurabilityConfig,
    /// The random seed of the run (journaled first).
    seed: [u8; 32],
    /// Added to the host's monotonic clock, so that readings after a replay
    /// never go back behind the journaled ones.
    mono_base: Instant,
    mono_offset: u64,
    /// Each entry goes to the store as it is made.
    eager: std::sync::atomic::AtomicBool,
}

struct Inner {
    replay: VecDeque<JournalEntry>,
    next_seq: u32,
    /// Not yet handed to the store.
    pending: Vec<JournalEntry>,
    entries: u64,
    bytes: usize,
    /// A failure found where it could not be reported (a clock reading): the
    /// next host call, or the run's end, reports it.
    failed: Option<Stop>,
}

/// A digest of what a call asked for, to compare on replay.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    crate::digest::hex(&hash.finalize()[..12])
}

fn divergence(message: String) -> Stop {
    Stop {
        code: "replay_divergence",
        message,
    }
}

impl RunJournal {
    /// The journal of a run that recorded `earlier` in its earlier lives
    /// (none for a new run).
    pub fn new(
        execution_id: &str,
        earlier: Vec<JournalEntry>,
        store: Arc<dyn JournalStore>,
        effects: Arc<dyn Effects>,
        caps: DurabilityConfig,
    ) -> Arc<Self> {
        let next_seq = earlier.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
        // A resumed life stores its events as they happen from the start.
        let eager = std::sync::atomic::AtomicBool::new(!earlier.is_empty());
        let last_mono = earlier
            .iter()
            .filter(|e| e.kind == JournalKind::MonotonicClock)
            .filter_map(|e| e.data.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        // The cap counts the run's whole journal, over all its lives.
        let entries = earlier.len() as u64;
        let bytes = earlier.iter().map(|e| e.data.len() + e.fingerprint.len()).sum();
        let mut replay: VecDeque<JournalEntry> = earlier.into();
        let mut pending = Vec::new();
        let mut failed = None;
        let seed = match replay.front() {
            Some(e) if e.kind == JournalKind::Seed => {
                let parsed = replay.pop_front().and_then(|e| parse_seed(&e.data));
                parsed.unwrap_or_else(|| {
                    failed = Some(divergence("the journal's random seed cannot be read back".into()));
                    fresh_seed()
                })
            }
            _ => {
                let seed = fresh_seed();
                pending.push(JournalEntry {
                    seq: next_seq,
                    kind: JournalKind::Seed,
                    fingerprint: String::new(),
                    done: true,
                    data: format!("\"{}\"", crate::digest::hex(&seed)),
                });
                seed
            }
        };
        let next_seq = next_seq + pending.len() as u32;
        let mono_base = Instant::now();
        Arc::new(Self {
            execution_id: execution_id.to_owned(),
            inner: Mutex::new(Inner {
                replay,
                next_seq,
                pending,
                entries,
                bytes,
                failed,
            }),
            store,
            effects,
            caps,
            seed,
            mono_base,
            mono_offset: last_mono,
            eager,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The run's random seed.
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    /// Whether earlier entries are still being replayed.
    pub fn replaying(&self) -> bool {
        !self.lock().replay.is_empty()
    }

    /// A failure found meanwhile (a clock reading that diverged, the cap), or,
    /// at the run's end, entries it never asked for.
    pub fn failure(&self, at_end: bool) -> Option<Stop> {
        let inner = self.lock();
        if let Some(stop) = &inner.failed {
            return Some(stop.clone());
        }
        let left = inner.replay.front()?;
        at_end.then(|| {
            divergence(format!(
                "the run ended without asking for what its journal holds next ({} entry {} of {})",
                left.kind.as_str(),
                left.seq,
                inner.replay.len()
            ))
        })
    }

    /// A divergence its caller found in what a journaled call answered (a
    /// replayed request other than its earlier life's): every call from now
    /// on fails with it (the first one found stands).
    pub fn diverged(&self, stop: Stop) {
        self.lock().failed.get_or_insert(stop);
    }

    /// The next journaled call, when it answers this one: `what` names the call
    /// for a divergence's message.
    pub fn take(&self, kind: JournalKind, fingerprint: &str, what: &str) -> Result<Option<Replayed>, Stop> {
        let mut inner = self.lock();
        if let Some(stop) = &inner.failed {
            return Err(stop.clone());
        }
        let Some(next) = inner.replay.front() else {
            return Ok(None);
        };
        if next.kind != kind || next.fingerprint != fingerprint {
            let stop = divergence(format!(
                "on replay the run asked for {what}, but its journal holds a {} call there (entry {})",
                next.kind.as_str(),
                next.seq
            ));
            inner.failed = Some(stop.clone());
            return Err(stop);
        }
        let Some(entry) = inner.replay.pop_front() else {
            return Ok(None);
        };
        Ok(Some(if entry.done {
            Replayed::Done(entry.data)
        } else {
            Replayed::Started {
                data: entry.data,
                seq: entry.seq,
            }
        }))
    }

    /// Queues an entry; `Err` when the run's journal is full.
    fn push(
        &self,
        inner: &mut Inner,
        seq: Option<u32>,
        kind: JournalKind,
        fingerprint: &str,
        done: bool,
        data: String,
    ) -> Result<u32, Stop> {
        if let Some(stop) = &inner.failed {
            return Err(stop.clone());
        }
        // A start's result replaces it: one entry.
        if seq.is_none() {
            inner.entries += 1;
        }
        inner.bytes += data.len() + fingerprint.len();
        if inner.entries > u64::from(self.caps.max_journal_entries) || inner.bytes > self.caps.max_journal_bytes {
            let stop = Stop {
                code: "journal_limit",
                message: format!(
                    "the run's journal outgrew its cap ({} entries, {} bytes): it made too many host calls or \
                     clock readings to stay durable",
                    self.caps.max_journal_entries, self.caps.max_journal_bytes
                ),
            };
            inner.failed = Some(stop.clone());
            return Err(stop);
        }
        let seq = seq.unwrap_or_else(|| {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            seq
        });
        inner.pending.push(JournalEntry {
            seq,
            kind,
            fingerprint: fingerprint.to_owned(),
            done,
            data,
        });
        Ok(seq)
    }

    /// Hands what is queued to the store, after the run's start and events.
    fn flush(&self, inner: &mut Inner) -> Commit {
        let entries = std::mem::take(&mut inner.pending);
        self.effects.keep();
        self.store.append(&self.execution_id, entries)
    }

    fn is_eager(&self) -> bool {
        self.eager.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The run proved long: its events are stored as they happen from now
    /// on, so what is queued goes first, and each entry as it is made.
    pub fn eager(&self) {
        let mut inner = self.lock();
        self.eager.store(true, std::sync::atomic::Ordering::Relaxed);
        if !inner.pending.is_empty() {
            self.flush(&mut inner).detach();
        }
    }

    /// Records a call's result (numbered `seq` when its start was recorded).
    /// (A write whose start is stored and whose result is not yet, when the
    /// host dies, is not made again: the run fails `unfinished_write`.)
    pub fn record(&self, kind: JournalKind, fingerprint: &str, seq: Option<u32>, data: String) -> Result<(), Stop> {
        let mut inner = self.lock();
        self.push(&mut inner, seq, kind, fingerprint, true, data)?;
        if inner.pending.len() >= MAX_PENDING || self.is_eager() {
            self.flush(&mut inner).detach();
        }
        Ok(())
    }

    /// Records that a call starts, numbered now (in the order the guest made
    /// its calls, whenever it finishes), and hands it to the store: the caller
    /// awaits the commit when the call acts beyond the host.
    pub fn begin(&self, kind: JournalKind, fingerprint: &str, data: String) -> Result<(u32, Commit), Stop> {
        let mut inner = self.lock();
        let seq = self.push(&mut inner, None, kind, fingerprint, false, data)?;
        Ok((seq, self.flush(&mut inner)))
    }

    /// Records that a call starts, and waits until that is stored when
    /// `durable` (the call acts beyond the host); returns the entry's number.
    pub async fn start(&self, kind: JournalKind, fingerprint: &str, data: String, durable: bool) -> Result<u32, Stop> {
        let (seq, commit) = self.begin(kind, fingerprint, data)?;
        if durable {
            commit.await.map_err(|e| Stop {
                code: "storage_unavailable",
                message: format!("the host could not record that a call starts ({e}), so it does not make it"),
            })?;
        } else {
            commit.detach();
        }
        Ok(seq)
    }

    /// Stores everything queued and waits for it (before the run is unloaded).
    pub async fn persist(&self) -> Result<(), Stop> {
        let commit = {
            let mut inner = self.lock();
            self.flush(&mut inner)
        };
        commit.await.map_err(|e| Stop {
            code: "storage_unavailable",
            message: format!("the host could not store the run's journal ({e})"),
        })
    }

    /// A clock reading: from the journal while it lasts, else `live`, recorded.
    fn clock(&self, kind: JournalKind, live: impl FnOnce() -> u64) -> u64 {
        let mut inner = self.lock();
        if inner.failed.is_none()
            && let Some(next) = inner.replay.front()
        {
            if next.kind == kind
                && let Some(value) = next.data.parse::<u64>().ok()
            {
                inner.replay.pop_front();
                return value;
            }
            let stop = divergence(format!(
                "on replay the run read the {} where its journal holds a {} call (entry {})",
                kind.as_str().replace('_', " "),
                next.kind.as_str(),
                next.seq
            ));
            inner.failed = Some(stop);
        }
        let value = live();
        // Past the cap the failure is reported by the next host call.
        if self.push(&mut inner, None, kind, "", true, value.to_string()).is_ok() && self.is_eager() {
            self.flush(&mut inner).detach();
        }
        value
    }
}

#[cfg(test)]
mod tests;
