//! The event log of each live execution: appended as things happen, fanned out to
//! live subscribers at once, and handed to the store (through an [`EventSink`];
//! its writer batches them). A subscriber gets what was logged after its cursor
//! and then everything new, without gaps or duplicates; a slow one only ever lags
//! itself (it catches up from the log), never the execution.
//!
//! Storing: most runs end within milliseconds, and their events are best stored
//! in the one commit of their final record. So a log holds its events back until
//! its first [`EventLog::flush`] (the run proved long, or is about to act beyond
//! its sandbox), then hands over each as it happens; what is still held at the
//! end goes with the final record.
//!
//! An execution's last events are special: they are stored with its final record,
//! in one commit, and only published once that commit is done, so nobody hears of
//! an end the store does not have. [`EventLog::end`] numbers them and closes the
//! log to anything else; [`EventLog::publish_end`] delivers them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use super::{Event, EventData, data_json};

/// Events buffered per live subscriber before it must catch up from the log.
const CHANNEL: usize = 256;

/// Where events go as they happen (the store), in order.
pub trait EventSink: Send + Sync {
    fn append(&self, execution_id: &Arc<str>, events: Vec<Arc<Event>>);
}

/// One live execution's events.
pub struct EventLog {
    execution_id: Arc<str>,
    sink: Option<Arc<dyn EventSink>>,
    inner: Mutex<LogInner>,
}

struct LogInner {
    /// The number of `events[0]`: 1, or more for an execution whose earlier
    /// events were logged before a restart (they are in the store).
    first_seq: u64,
    events: Vec<Arc<Event>>,
    /// Made on the first subscription: most executions never have one, and a
    /// channel costs a buffer of `CHANNEL` slots.
    live: Option<broadcast::Sender<Arc<Event>>>,
    /// Events held back until the first flush (`None` once flushed, or when
    /// nothing is stored).
    held: Option<Vec<Arc<Event>>>,
    state: State,
}

enum State {
    Open,
    /// The last events are numbered and being stored; nothing else is logged.
    Ending(Vec<Arc<Event>>),
    Closed,
}

impl LogInner {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }

    fn push(&mut self, event: Arc<Event>) {
        if let Some(live) = &self.live {
            let _ = live.send(Arc::clone(&event));
        }
        self.events.push(event);
    }
}

/// What a subscriber starts from: events after its cursor that only the store
/// has (numbers `after + 1 ..= stored_until`), the log's own after that, then
/// (unless the log is closed) a receiver of the next ones.
pub struct Subscription {
    pub stored_until: Option<u64>,
    pub backlog: Vec<Arc<Event>>,
    pub live: Option<broadcast::Receiver<Arc<Event>>>,
    pub log: Arc<EventLog>,
}

impl EventLog {
    /// The log of an execution whose events so far number `after` (0 for a new
    /// one); its events go to `sink`, if there is one, from its first flush.
    pub fn new(execution_id: &str, after: u64, sink: Option<Arc<dyn EventSink>>) -> Self {
        Self {
            execution_id: execution_id.into(),
            inner: Mutex::new(LogInner {
                first_seq: after + 1,
                events: Vec::new(),
                live: None,
                held: sink.as_ref().map(|_| Vec::new()),
                state: State::Open,
            }),
            sink,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs an event (ignored once the log is ending). A terminal event is never
    /// emitted this way: see [`EventLog::end`].
    pub fn emit(&self, data: EventData<'_>) {
        let kind = data.kind();
        debug_assert!(!kind.is_terminal(), "terminal events go through `end`");
        let json = data_json(&data);
        let mut inner = self.lock();
        if !matches!(inner.state, State::Open) {
            return;
        }
        let event = Arc::new(Event::new(inner.next_seq(), kind, json));
        match (&mut inner.held, &self.sink) {
            (Some(held), _) => held.push(Arc::clone(&event)),
            // Under the lock, so the store receives an execution's events in order.
            (None, Some(sink)) => sink.append(&self.execution_id, vec![Arc::clone(&event)]),
            (None, None) => {}
        }
        inner.push(event);
    }

    /// Hands the events held back to the store, and each next one as it happens.
    pub fn flush(&self) {
        let mut inner = self.lock();
        if let (Some(held), Some(sink)) = (inner.held.take(), &self.sink)
            && !held.is_empty()
        {
            sink.append(&self.execution_id, held);
        }
    }

    /// Hands the events held back so far to the store, and goes on holding the
    /// next ones (what the run stores next, its journal, must come after them).
    pub fn store_held(&self) {
        let mut inner = self.lock();
        if let (Some(held), Some(sink)) = (inner.held.as_mut(), &self.sink)
            && !held.is_empty()
        {
            sink.append(&self.execution_id, std::mem::take(held));
        }
    }

    /// Numbers the execution's last events and closes the log to anything else.
    /// Returns what the store still needs: the events held back, then the last
    /// ones. The last ones are not delivered (nor sent to the sink): the caller
    /// stores them with the final record, then calls [`EventLog::publish_end`].
    pub fn end(&self, data: &[EventData<'_>]) -> Vec<Arc<Event>> {
        let json: Vec<String> = data.iter().map(data_json).collect();
        let mut inner = self.lock();
        if !matches!(inner.state, State::Open) {
            return Vec::new();
        }
        let first = inner.next_seq();
        let last: Vec<Arc<Event>> = data
            .iter()
            .zip(json)
            .enumerate()
            .map(|(i, (d, json))| Arc::new(Event::new(first + i as u64, d.kind(), json)))
            .collect();
        let mut to_store = inner.held.take().unwrap_or_default();
        to_store.extend(last.iter().cloned());
        inner.state = State::Ending(last);
        to_store
    }

    /// The execution is unloaded (it waits for a decision): what is held goes
    /// to the store, the log closes, and its subscribers' live feeds end (they
    /// read on from the store, later, after its last event).
    pub fn unload(&self) {
        self.flush();
        let mut inner = self.lock();
        inner.state = State::Closed;
        inner.live = None;
    }

    /// Whether anybody follows the log live (a stream).
    pub fn is_followed(&self) -> bool {
        self.lock().live.as_ref().is_some_and(|live| live.receiver_count() > 0)
    }

    /// Another host took the execution over: the log closes, its held events
    /// dropped (that host numbers and stores the execution's events from
    /// what the store has), and its subscribers' live feeds end (they read
    /// on from the store).
    pub fn abandon(&self) {
        let mut inner = self.lock();
        inner.state = State::Closed;
        inner.held = None;
        inner.live = None;
    }

    /// Delivers the last events (once they are stored) and closes the log.
    pub fn publish_end(&self) {
        let mut inner = self.lock();
        if let State::Ending(events) = std::mem::replace(&mut inner.state, State::Closed) {
            for event in events {
                inner.push(event);
            }
        }
        // Dropping the sender ends every subscriber's live feed.
        inner.live = None;
    }

    /// Events after `after` that the log holds (what a lagging subscriber catches
    /// up with).
    pub fn after(&self, after: u64) -> Vec<Arc<Event>> {
        let inner = self.lock();
        let skip = after.saturating_sub(inner.first_seq - 1) as usize;
        inner.events.iter().skip(skip).cloned().collect()
    }

    /// Subscribes after `after`.
    fn subscribe(self: &Arc<Self>, after: u64) -> Subscription {
        let mut inner = self.lock();
        let stored_until = (after + 1 < inner.first_seq).then(|| inner.first_seq - 1);
        let skip = after.saturating_sub(inner.first_seq - 1) as usize;
        let backlog = inner.events.iter().skip(skip).cloned().collect();
        let live = match inner.state {
            State::Closed => None,
            _ => Some(
                inner
                    .live
                    .get_or_insert_with(|| broadcast::channel(CHANNEL).0)
                    .subscribe(),
            ),
        };
        drop(inner);
        Subscription {
            stored_until,
            backlog,
            live,
            log: Arc::clone(self),
        }
    }
}

/// The event logs of live executions, and where their events are stored.
pub struct EventHub {
    logs: Mutex<HashMap<String, Arc<EventLog>>>,
    sink: Arc<dyn EventSink>,
}

impl EventHub {
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self {
            logs: Mutex::default(),
            sink,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<EventLog>>> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log of a live execution whose events so far number `after`; its
    /// events are stored as they happen when `store` is set.
    pub fn open(&self, id: &str, after: u64, store: bool) -> Arc<EventLog> {
        let sink = store.then(|| Arc::clone(&self.sink));
        let log = Arc::new(EventLog::new(id, after, sink));
        self.lock().insert(id.to_owned(), Arc::clone(&log));
        log
    }

    /// The log of a live execution, if it is live.
    pub fn get(&self, id: &str) -> Option<Arc<EventLog>> {
        self.lock().get(id).cloned()
    }

    /// Forgets a finished execution's log (once its end is stored and published).
    pub fn close(&self, id: &str) {
        let mut logs = self.lock();
        logs.remove(id);
        // The room of a burst past is given back.
        if logs.capacity() > 1024 && logs.len() * 4 < logs.capacity() {
            let len = logs.len();
            logs.shrink_to(len * 2);
        }
    }

    /// Subscribes to a live execution after `after`.
    pub fn subscribe(&self, id: &str, after: u64) -> Option<Subscription> {
        Some(self.get(id)?.subscribe(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<u64>>);

    impl EventSink for Recorder {
        fn append(&self, _: &Arc<str>, events: Vec<Arc<Event>>) {
            self.0.lock().unwrap().extend(events.iter().map(|e| e.seq));
        }
    }

    #[test]
    fn events_are_held_until_a_flush_and_the_end_is_published_only_when_stored() {
        let sink = Arc::new(Recorder::default());
        let hub = EventHub::new(sink.clone());
        let log = hub.open("exec_1", 0, true);
        log.emit(EventData::Status(Status::Queued));
        assert!(sink.0.lock().unwrap().is_empty(), "held back until the run proves long");
        log.flush();
        log.emit(EventData::Status(Status::Running));
        assert_eq!(*sink.0.lock().unwrap(), [1, 2], "then each as it happens");
        let mut sub = hub.subscribe("exec_1", 1).unwrap();
        assert_eq!(sub.stored_until, None);
        assert_eq!(sub.backlog.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
        let end = log.end(&[EventData::Status(Status::Failed), EventData::Content("x")]);
        assert_eq!(end.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        // Nothing more is logged once the end is numbered; the end is not sunk.
        log.emit(EventData::Content("late"));
        assert_eq!(*sink.0.lock().unwrap(), [1, 2]);
        let live = sub.live.as_mut().unwrap();
        assert!(live.try_recv().is_err(), "the end is not delivered before it is stored");
        log.publish_end();
        assert_eq!(live.try_recv().unwrap().seq, 3);
        assert_eq!(live.try_recv().unwrap().seq, 4);
        assert!(live.try_recv().is_err());
        let late = hub.subscribe("exec_1", 0).unwrap();
        assert_eq!(late.backlog.len(), 4);
        assert!(late.live.is_none());

        // A short run's held events go with its end.
        let short = hub.open("exec_3", 0, true);
        short.emit(EventData::Status(Status::Queued));
        let end = short.end(&[EventData::Status(Status::Completed)]);
        assert_eq!(end.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(*sink.0.lock().unwrap(), [1, 2], "nothing of it was sunk");
    }

    #[test]
    fn a_log_continued_after_a_restart_points_before_itself_to_the_store() {
        let hub = EventHub::new(Arc::new(Recorder::default()));
        let log = hub.open("exec_2", 5, false);
        log.emit(EventData::Status(Status::Queued));
        let sub = hub.subscribe("exec_2", 2).unwrap();
        assert_eq!(sub.stored_until, Some(5));
        assert_eq!(sub.backlog[0].seq, 6);
        assert!(hub.subscribe("exec_2", 5).unwrap().stored_until.is_none());
        assert_eq!(log.after(5).len(), 1);
        assert_eq!(log.after(6).len(), 0);
    }
}
