//! The journal, against a store kept in memory: replay in order, divergence,
//! the cap.

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use super::sources::{MonotonicClock, WallClock};
use super::*;
use crate::ports::{EffectRefused, Reach};
use crate::store::StoreError;

#[derive(Default)]
struct Kept(Mutex<Vec<JournalEntry>>);

impl crate::store::Queue for Kept {
    fn queue(&self, write: crate::store::Write) -> Commit {
        if let crate::store::Write::Journal { entries, .. } = write {
            self.0.lock().unwrap().extend(entries);
        }
        Commit::ready(Ok(()))
    }
}

#[async_trait::async_trait]
impl JournalStore for Kept {
    async fn load(&self, _: &str) -> Result<Vec<JournalEntry>, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

struct Free;

#[async_trait::async_trait]
impl Effects for Free {
    async fn before_effect(&self, _: Reach) -> Result<(), EffectRefused> {
        Ok(())
    }

    fn keep(&self) {}
}

fn journal(store: &Arc<Kept>, earlier: Vec<JournalEntry>, max_entries: u32) -> Arc<RunJournal> {
    let caps = DurabilityConfig {
        max_journal_entries: max_entries,
        ..DurabilityConfig::default()
    };
    RunJournal::new("exec_1", earlier, store.clone(), Arc::new(Free), caps)
}

#[tokio::test]
async fn a_replay_answers_in_order_and_catches_a_divergence() {
    let store = Arc::new(Kept::default());
    let first = journal(&store, Vec::new(), 100);
    let wall = WallClock(Arc::clone(&first)).now();
    let seq = first
        .start(JournalKind::Tool, &fingerprint(&[b"kv"]), "{}".into(), true)
        .await
        .unwrap();
    first
        .record(JournalKind::Tool, &fingerprint(&[b"kv"]), Some(seq), "\"ok\"".into())
        .unwrap();
    first
        .record(JournalKind::Llm, &fingerprint(&[b"hi"]), None, "\"answer\"".into())
        .unwrap();
    let mono = MonotonicClock(Arc::clone(&first)).now();
    // A short run's results wait in memory; its write's start did not.
    let seqs = |kept: &[JournalEntry]| kept.iter().map(|e| (e.seq, e.done)).collect::<Vec<_>>();
    assert_eq!(seqs(&store.0.lock().unwrap()), [(1, true), (2, true), (3, false)]);
    assert_eq!(first.lock().pending.len(), 3);
    first.persist().await.unwrap();
    // Seed, clock, the tool's start then its result under the same number,
    // the model call, the clock.
    assert_eq!(
        seqs(&store.0.lock().unwrap()),
        [(1, true), (2, true), (3, false), (3, true), (4, true), (5, true)]
    );

    // Replayed: the same seed, the same clocks, the same answers.
    let mut earlier = store.0.lock().unwrap().clone();
    earlier.dedup_by(|b, a| {
        a.seq == b.seq && {
            *a = b.clone();
            true
        }
    });
    let again = journal(&store, earlier.clone(), 100);
    assert_eq!(again.seed(), first.seed());
    assert!(again.replaying());
    assert_eq!(WallClock(Arc::clone(&again)).now(), wall);
    assert!(matches!(
        again.take(JournalKind::Tool, &fingerprint(&[b"kv"]), "tool kv"),
        Ok(Some(Replayed::Done(d))) if d == "\"ok\""
    ));
    assert!(matches!(
        again.take(JournalKind::Llm, &fingerprint(&[b"hi"]), "a model call"),
        Ok(Some(Replayed::Done(_)))
    ));
    assert_eq!(MonotonicClock(Arc::clone(&again)).now(), mono);
    assert!(!again.replaying());
    assert!(MonotonicClock(Arc::clone(&again)).now() >= mono, "never back in time");
    assert!(again.failure(true).is_none());

    // Asking for something else where the journal holds a model call.
    let astray = journal(&store, earlier, 100);
    WallClock(Arc::clone(&astray)).now();
    let _ = astray.take(JournalKind::Tool, &fingerprint(&[b"kv"]), "tool kv");
    let stop = astray
        .take(JournalKind::Llm, &fingerprint(&[b"bye"]), "a call of model \"m\"")
        .err()
        .unwrap();
    assert_eq!(stop.code, "replay_divergence");
    assert!(stop.message.contains("a call of model \"m\""), "{}", stop.message);
    assert_eq!(astray.failure(true).unwrap().code, "replay_divergence");

    // A divergence a caller found in what it was answered (a replayed request
    // other than its earlier life's) fails every call after it, live ones too.
    let answered = journal(&store, earlier_again(&store), 100);
    WallClock(Arc::clone(&answered)).now();
    answered.diverged(Stop {
        code: "replay_divergence",
        message: "another request".into(),
    });
    let stop = answered
        .take(JournalKind::Tool, &fingerprint(&[b"kv"]), "tool kv")
        .err()
        .unwrap();
    assert_eq!(stop.message, "another request");
    assert!(
        answered.begin(JournalKind::Tool, "y", "{}".into()).is_err(),
        "nothing live after it"
    );
}

/// What a store kept, one entry per number (the last of each).
fn earlier_again(store: &Kept) -> Vec<JournalEntry> {
    let mut earlier = store.0.lock().unwrap().clone();
    earlier.dedup_by(|b, a| {
        a.seq == b.seq && {
            *a = b.clone();
            true
        }
    });
    earlier
}

#[test]
fn a_journal_past_its_cap_fails_the_run() {
    let store = Arc::new(Kept::default());
    let j = journal(&store, Vec::new(), 3);
    for _ in 0..5 {
        WallClock(Arc::clone(&j)).now();
    }
    assert_eq!(j.failure(false).unwrap().code, "journal_limit");
    let stop = j.record(JournalKind::Llm, "x", None, "1".into()).err().unwrap();
    assert_eq!(stop.code, "journal_limit");
}
