//! Scheduling, the mechanism: a bounded queue of jobs ordered by priority then
//! arrival, run within the host's cap and each agent's concurrency slots, with a
//! cancel signal per running job and a channel per job that announces its end.
//!
//! It knows nothing of what a job is or does: callers hand it jobs, and every
//! method that frees room returns the jobs that may start now ([`Started`]) for
//! the caller to run. It never spawns, sleeps or stores anything; a job waiting
//! out a delay is held until the caller ends the delay. On a store several
//! hosts share, a job accepted here may wait in the store's queue instead, or
//! run on another host: it is followed here ([`Scheduler::follow`]) for
//! whoever waits for its end, until it is claimed here ([`Scheduler::claimed`])
//! or its end is announced.

mod elsewhere;
mod queue;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{oneshot, watch};

use self::queue::{Queue, QueueKey};

/// What the scheduler needs to know of a job.
pub trait Job: Send + 'static {
    fn id(&self) -> &str;
    fn agent_id(&self) -> &str;
    /// 0 to 100, higher first.
    fn priority(&self) -> u8;
    /// How many jobs of its agent may run at once.
    fn max_concurrency(&self) -> usize;
}

/// Receives a job's outcome (`None` until it ends).
pub type Watch<O> = watch::Receiver<Option<O>>;
/// Where a job's outcome is announced.
pub type Done<O> = watch::Sender<Option<O>>;

/// A job that may start now, with the signal that asks it to stop.
pub struct Started<J> {
    pub job: J,
    /// Resolves when a cancel is asked (a dropped sender is not a cancel).
    pub cancel: oneshot::Receiver<()>,
}

/// The queue is full.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the queue is full ({0} executions waiting); try again shortly")]
pub struct QueueFull(pub usize);

/// What a cancel did.
pub enum Cancel<J, O> {
    /// It was waiting (queued or delayed): here it is, out of the queue; its end
    /// is the caller's to announce on `done`.
    Dequeued { job: J, done: Done<O> },
    /// It was running: it has been asked to stop.
    Signalled,
    /// A stop had been asked already.
    AlreadyRequested,
    /// It is not here (finished, or unknown).
    NotLive,
    /// It waits in the store's shared queue, or another host runs it: it
    /// is followed here, untouched.
    Elsewhere,
}

struct Live<J, O> {
    agent_id: String,
    state: LiveState<J>,
    done: Done<O>,
}

enum LiveState<J> {
    Queued(QueueKey),
    /// Waiting out a delay (a retry's backoff; a conversation's turn behind
    /// others, or held back for a slot); joins the queue when it ends.
    Delayed(Box<J>),
    /// Running; sending on the channel asks it to stop.
    Running(Option<oneshot::Sender<()>>),
    CancelRequested,
    /// Waiting in the shared queue or run by another host; `counted` when it
    /// holds a place of this host's queue (it was accepted here).
    Elsewhere {
        counted: bool,
    },
    /// Running here, but another host took it over (this host's lease ran
    /// out): asked to stop, and followed from its end on, which is not its
    /// outcome.
    Surrendered,
}

struct Inner<J, O> {
    queue: Queue<J>,
    /// Nothing more starts (the host is shutting down).
    paused: bool,
    /// Accepted and not yet running (queued or delayed), plus reservations.
    waiting: usize,
    /// Of `waiting`, those followed elsewhere (not in this host's queue).
    elsewhere: usize,
    live: HashMap<String, Live<J, O>>,
}

pub struct Scheduler<J, O> {
    inner: Mutex<Inner<J, O>>,
    max_running: usize,
    max_queued: usize,
}

/// Room for one more waiting job, held until it is queued or dropped.
pub struct Reservation<'a, J, O> {
    scheduler: &'a Scheduler<J, O>,
    used: bool,
}

impl<J, O> Drop for Reservation<'_, J, O> {
    fn drop(&mut self) {
        if !self.used {
            let mut inner = self.scheduler.lock();
            inner.waiting = inner.waiting.saturating_sub(1);
        }
    }
}

impl<J, O> Scheduler<J, O> {
    fn lock(&self) -> MutexGuard<'_, Inner<J, O>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<J: Job, O> Scheduler<J, O> {
    /// At most `max_running` jobs run at once and `max_queued` wait.
    pub fn new(max_running: usize, max_queued: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                queue: Queue::default(),
                paused: false,
                waiting: 0,
                elsewhere: 0,
                live: HashMap::new(),
            }),
            max_running,
            max_queued,
        }
    }

    /// Reserves a place in the queue, or refuses when it is full.
    pub fn reserve(&self) -> Result<Reservation<'_, J, O>, QueueFull> {
        let mut inner = self.lock();
        if inner.waiting >= self.max_queued {
            return Err(QueueFull(inner.waiting));
        }
        inner.waiting += 1;
        Ok(Reservation {
            scheduler: self,
            used: false,
        })
    }

    /// Reserves a place for a job that was accepted before (after a restart):
    /// the queue's bound does not apply to it.
    pub fn reserve_accepted(&self) -> Reservation<'_, J, O> {
        self.lock().waiting += 1;
        Reservation {
            scheduler: self,
            used: false,
        }
    }

    /// Queues a job (or, `delayed`, holds it until [`Scheduler::end_delay`])
    /// without starting anything: call [`Scheduler::dispatch`] next.
    pub fn queue(&self, mut reservation: Reservation<'_, J, O>, job: J, delayed: bool) -> Watch<O> {
        reservation.used = true;
        let (done, watch) = watch::channel(None);
        let id = job.id().to_owned();
        let agent_id = job.agent_id().to_owned();
        let mut inner = self.lock();
        let state = if delayed {
            LiveState::Delayed(Box::new(job))
        } else {
            let key = inner.queue.key(job.priority());
            inner.queue.push(key, job);
            LiveState::Queued(key)
        };
        inner.live.insert(id, Live { agent_id, state, done });
        watch
    }

    /// The jobs that may start now.
    pub fn dispatch(&self) -> Vec<Started<J>> {
        let mut inner = self.lock();
        self.dispatch_locked(&mut inner)
    }

    fn dispatch_locked(&self, inner: &mut Inner<J, O>) -> Vec<Started<J>> {
        let mut started = Vec::new();
        if inner.paused {
            return started;
        }
        while let Some(job) = inner.queue.pop_runnable(self.max_running) {
            inner.waiting = inner.waiting.saturating_sub(1);
            let (stop, cancel) = oneshot::channel();
            if let Some(live) = inner.live.get_mut(job.id()) {
                live.state = LiveState::Running(Some(stop));
            }
            started.push(Started { job, cancel });
        }
        started
    }

    /// A delay ended: the job joins its queue (unless it was cancelled meanwhile).
    pub fn end_delay(&self, id: &str) -> Vec<Started<J>> {
        let mut inner = self.lock();
        let key = match inner.live.get_mut(id) {
            Some(live) => match std::mem::replace(&mut live.state, LiveState::CancelRequested) {
                LiveState::Delayed(job) => Some(job),
                other => {
                    live.state = other;
                    None
                }
            },
            None => None,
        };
        let Some(job) = key else {
            return Vec::new();
        };
        let key = inner.queue.key(job.priority());
        if let Some(live) = inner.live.get_mut(id) {
            live.state = LiveState::Queued(key);
        }
        inner.queue.push(key, *job);
        self.dispatch_locked(&mut inner)
    }

    /// A running job of `agent_id` ended: its slot is free. Returns the jobs that
    /// may start now.
    pub fn finished(&self, agent_id: &str) -> Vec<Started<J>> {
        let mut inner = self.lock();
        inner.queue.release(agent_id);
        self.dispatch_locked(&mut inner)
    }

    /// Announces a job's outcome to everyone watching and forgets it. Without
    /// an outcome (it was lost), watchers see the channel close instead.
    pub fn announce(&self, id: &str, outcome: Option<O>) {
        let live = {
            let mut inner = self.lock();
            let mut live = inner.live.remove(id);
            // Its run here ended; its outcome is the host's that took it over.
            if let Some(mut surrendered) = live.take_if(|l| matches!(l.state, LiveState::Surrendered)) {
                surrendered.state = LiveState::Elsewhere { counted: false };
                inner.live.insert(id.to_owned(), surrendered);
                return;
            }
            if let Some(Live {
                state: LiveState::Elsewhere { counted: true },
                ..
            }) = &live
            {
                inner.waiting = inner.waiting.saturating_sub(1);
                inner.elsewhere = inner.elsewhere.saturating_sub(1);
            }
            shrink(&mut inner.live);
            live
        };
        if let (Some(live), Some(outcome)) = (live, outcome) {
            live.done.send_replace(Some(outcome));
        }
    }

    /// Cancels a job: out of the queue if it waits, a stop signal if it runs.
    pub fn cancel(&self, id: &str) -> Cancel<J, O> {
        let mut inner = self.lock();
        let Some(live) = inner.live.get_mut(id) else {
            return Cancel::NotLive;
        };
        let agent_id = live.agent_id.clone();
        match std::mem::replace(&mut live.state, LiveState::CancelRequested) {
            state @ (LiveState::Elsewhere { .. } | LiveState::Surrendered) => {
                live.state = state;
                Cancel::Elsewhere
            }
            LiveState::Running(stop) => {
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
                Cancel::Signalled
            }
            LiveState::CancelRequested => Cancel::AlreadyRequested,
            LiveState::Delayed(job) => {
                inner.waiting = inner.waiting.saturating_sub(1);
                match inner.live.remove(id) {
                    Some(live) => Cancel::Dequeued {
                        job: *job,
                        done: live.done,
                    },
                    None => Cancel::NotLive,
                }
            }
            LiveState::Queued(key) => {
                let Some(job) = inner.queue.remove(&agent_id, key) else {
                    return Cancel::NotLive;
                };
                inner.waiting = inner.waiting.saturating_sub(1);
                match inner.live.remove(id) {
                    Some(live) => Cancel::Dequeued { job, done: live.done },
                    None => Cancel::NotLive,
                }
            }
        }
    }

    /// Starts nothing more: what runs goes on, what waits stays waiting.
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    /// The outcome of a live job, once it ends.
    pub fn watch(&self, id: &str) -> Option<Watch<O>> {
        self.lock().live.get(id).map(|l| l.done.subscribe())
    }

    /// The agent of a live job.
    pub fn live_agent(&self, id: &str) -> Option<String> {
        self.lock().live.get(id).map(|l| l.agent_id.clone())
    }

    /// Jobs running and waiting.
    pub fn load(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.queue.running, inner.waiting)
    }

    /// Each agent's jobs running or queued here.
    pub fn busy_by_agent(&self) -> HashMap<String, usize> {
        self.lock().queue.busy_by_agent()
    }

    /// Queued jobs of one agent and how many of its slots are busy.
    pub fn agent_load(&self, agent_id: &str) -> (usize, usize) {
        self.lock().queue.agent_load(agent_id)
    }
}

/// Gives back the room of a map that held many more entries than it does now
/// (a burst of executions past), so an idle host holds nothing for it.
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 1024 && map.len() * 4 < map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests;
