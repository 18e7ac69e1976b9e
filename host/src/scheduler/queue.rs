//! The queue's bookkeeping, with no I/O: per-agent queues ordered by priority then
//! arrival, per-agent concurrency slots, a global cap on running executions, and
//! the live executions (queued, waiting out a backoff, running). Every method runs
//! under the scheduler's lock and returns at once.
//!
//! Picking the next run: `ready` holds the head of every agent queue whose agent
//! has a free slot, so the best runnable execution is `ready`'s first entry and an
//! agent whose slots are full never holds back another agent's executions.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use crate::events::EventLog;
use crate::execution::Execution;
use crate::registry::Version;

/// Higher priority first, then first come first served.
pub type QueueKey = (Reverse<u8>, u64);

/// An execution and the version it runs.
pub struct Job {
    pub execution: Execution,
    pub version: Arc<Version>,
    /// Where the execution's events go.
    pub events: Arc<EventLog>,
}

/// Where the final record of a live execution is published.
pub type Done = watch::Sender<Option<Arc<Execution>>>;

pub struct Live {
    pub agent_id: String,
    pub state: LiveState,
    pub done: Done,
}

pub enum LiveState {
    Queued(QueueKey),
    /// Waiting out a retry backoff; joins the queue when it ends.
    Delayed(Box<Job>),
    /// Running; sending on the channel stops the guest.
    Running(Option<oneshot::Sender<()>>),
    CancelRequested,
}

struct AgentQueue {
    max_running: usize,
    running: usize,
    queue: BTreeMap<QueueKey, Job>,
}

#[derive(Default)]
pub struct Queue {
    next_seq: u64,
    pub running: usize,
    /// Accepted and not yet running (queued or delayed), plus reservations.
    pub waiting: usize,
    agents: HashMap<String, AgentQueue>,
    ready: BTreeSet<(QueueKey, String)>,
    pub live: HashMap<String, Live>,
}

impl Queue {
    pub fn key(&mut self, priority: u8) -> QueueKey {
        self.next_seq += 1;
        (Reverse(priority), self.next_seq)
    }

    /// Keeps `ready` holding exactly the agent's head when it has a free slot.
    fn refresh_ready(&mut self, agent_id: &str, old_head: Option<QueueKey>) {
        let Some(aq) = self.agents.get(agent_id) else {
            return;
        };
        if let Some(old) = old_head {
            self.ready.remove(&(old, agent_id.to_owned()));
        }
        if aq.running < aq.max_running
            && let Some((head, _)) = aq.queue.first_key_value()
        {
            self.ready.insert((*head, agent_id.to_owned()));
        }
    }

    fn head(&self, agent_id: &str) -> Option<QueueKey> {
        self.agents.get(agent_id)?.queue.first_key_value().map(|(k, _)| *k)
    }

    /// Puts a job in its agent's queue.
    pub fn push(&mut self, key: QueueKey, job: Job) {
        let agent_id = job.execution.agent_id.clone();
        let max_running = job.version.meta.limits.max_concurrency.max(1) as usize;
        let old_head = self.head(&agent_id);
        let aq = self.agents.entry(agent_id.clone()).or_insert_with(|| AgentQueue {
            max_running,
            running: 0,
            queue: BTreeMap::new(),
        });
        aq.max_running = max_running;
        aq.queue.insert(key, job);
        self.refresh_ready(&agent_id, old_head);
    }

    /// Takes a queued job out (cancelled before it ran).
    pub fn remove(&mut self, agent_id: &str, key: QueueKey) -> Option<Job> {
        let old_head = self.head(agent_id);
        let job = self.agents.get_mut(agent_id)?.queue.remove(&key)?;
        self.refresh_ready(agent_id, old_head);
        self.forget_idle(agent_id);
        Some(job)
    }

    /// Starts as many jobs as the global cap and the agents' slots allow.
    pub fn dispatch(&mut self, max_running: usize) -> Vec<(Job, oneshot::Receiver<()>)> {
        let mut started = Vec::new();
        while self.running < max_running {
            let Some((key, agent_id)) = self.ready.pop_first() else {
                break;
            };
            let Some(aq) = self.agents.get_mut(&agent_id) else {
                continue;
            };
            let Some(job) = aq.queue.remove(&key) else {
                continue;
            };
            aq.running += 1;
            self.running += 1;
            self.waiting = self.waiting.saturating_sub(1);
            self.refresh_ready(&agent_id, None);
            let (tx, rx) = oneshot::channel();
            if let Some(live) = self.live.get_mut(&job.execution.id) {
                live.state = LiveState::Running(Some(tx));
            }
            started.push((job, rx));
        }
        started
    }

    /// Gives back a running job's slot.
    pub fn release(&mut self, agent_id: &str) {
        self.running = self.running.saturating_sub(1);
        if let Some(aq) = self.agents.get_mut(agent_id) {
            aq.running = aq.running.saturating_sub(1);
            let head = self.head(agent_id);
            self.refresh_ready(agent_id, head);
            self.forget_idle(agent_id);
        }
    }

    fn forget_idle(&mut self, agent_id: &str) {
        if self
            .agents
            .get(agent_id)
            .is_some_and(|aq| aq.running == 0 && aq.queue.is_empty())
        {
            self.agents.remove(agent_id);
        }
    }

    /// Queued executions of an agent and how many of its slots are busy.
    pub fn agent_load(&self, agent_id: &str) -> (usize, usize) {
        self.agents
            .get(agent_id)
            .map_or((0, 0), |aq| (aq.queue.len(), aq.running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: &mut Queue, p: u8) -> QueueKey {
        q.key(p)
    }

    #[test]
    fn keys_order_by_priority_then_arrival() {
        let mut q = Queue::default();
        let a = key(&mut q, 50);
        let b = key(&mut q, 90);
        let c = key(&mut q, 50);
        let mut keys = [c, a, b];
        keys.sort();
        assert_eq!(keys, [b, a, c]);
    }
}
