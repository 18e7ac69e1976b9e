//! The queue's bookkeeping, with no I/O and no clock: per-agent queues ordered by
//! priority then arrival, per-agent concurrency slots, and a global cap on
//! running jobs. Every method runs under the scheduler's lock and returns at once.
//!
//! Picking the next job: `ready` holds the head of every agent queue whose agent
//! has a free slot, so the best runnable job is `ready`'s first entry and an
//! agent whose slots are full never holds back another agent's jobs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Job;

/// Higher priority first, then first come first served.
pub type QueueKey = (Reverse<u8>, u64);

struct AgentQueue<J> {
    max_running: usize,
    running: usize,
    queue: BTreeMap<QueueKey, J>,
}

pub struct Queue<J> {
    next_seq: u64,
    pub running: usize,
    agents: HashMap<String, AgentQueue<J>>,
    ready: BTreeSet<(QueueKey, String)>,
}

impl<J> Default for Queue<J> {
    fn default() -> Self {
        Self {
            next_seq: 0,
            running: 0,
            agents: HashMap::new(),
            ready: BTreeSet::new(),
        }
    }
}

impl<J: Job> Queue<J> {
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
    pub fn push(&mut self, key: QueueKey, job: J) {
        let agent_id = job.agent_id().to_owned();
        let max_running = job.max_concurrency().max(1);
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
    pub fn remove(&mut self, agent_id: &str, key: QueueKey) -> Option<J> {
        let old_head = self.head(agent_id);
        let job = self.agents.get_mut(agent_id)?.queue.remove(&key)?;
        self.refresh_ready(agent_id, old_head);
        self.forget_idle(agent_id);
        Some(job)
    }

    /// The next job the global cap and the agents' slots allow, its slot taken.
    pub fn pop_runnable(&mut self, max_running: usize) -> Option<J> {
        while self.running < max_running {
            let (key, agent_id) = self.ready.pop_first()?;
            let Some(aq) = self.agents.get_mut(&agent_id) else {
                continue;
            };
            let Some(job) = aq.queue.remove(&key) else {
                continue;
            };
            aq.running += 1;
            self.running += 1;
            self.refresh_ready(&agent_id, None);
            return Some(job);
        }
        None
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

    /// Each agent's jobs running or queued.
    pub fn busy_by_agent(&self) -> HashMap<String, usize> {
        self.agents
            .iter()
            .map(|(agent, aq)| (agent.clone(), aq.running + aq.queue.len()))
            .collect()
    }

    /// Queued jobs of an agent and how many of its slots are busy.
    pub fn agent_load(&self, agent_id: &str) -> (usize, usize) {
        self.agents
            .get(agent_id)
            .map_or((0, 0), |aq| (aq.queue.len(), aq.running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(&'static str, &'static str, usize);

    impl Job for T {
        fn id(&self) -> &str {
            self.0
        }
        fn agent_id(&self) -> &str {
            self.1
        }
        fn priority(&self) -> u8 {
            50
        }
        fn max_concurrency(&self) -> usize {
            self.2
        }
    }

    fn ids(q: &mut Queue<T>, max: usize) -> Vec<&'static str> {
        std::iter::from_fn(|| q.pop_runnable(max)).map(|j| j.0).collect()
    }

    #[test]
    fn keys_order_by_priority_then_arrival() {
        let mut q = Queue::<T>::default();
        let a = q.key(50);
        let b = q.key(90);
        let c = q.key(50);
        let mut keys = [c, a, b];
        keys.sort();
        assert_eq!(keys, [b, a, c]);
    }

    #[test]
    fn priority_then_arrival_within_the_global_cap() {
        let mut q = Queue::default();
        for (id, p) in [("a", 10), ("b", 90), ("c", 50), ("d", 90)] {
            let key = q.key(p);
            q.push(key, T(id, "x", 10));
        }
        assert_eq!(ids(&mut q, 3), ["b", "d", "c"]);
        assert!(q.pop_runnable(3).is_none(), "the global cap holds");
        q.release("x");
        assert_eq!(ids(&mut q, 3), ["a"]);
        assert_eq!(q.running, 3);
    }

    #[test]
    fn a_full_agent_holds_back_only_itself() {
        let mut q = Queue::default();
        for id in ["s1", "s2", "s3"] {
            let key = q.key(90);
            q.push(key, T(id, "slow", 1));
        }
        let key = q.key(10);
        q.push(key, T("e1", "echo", 3));
        assert_eq!(ids(&mut q, 10), ["s1", "e1"]);
        assert_eq!(q.agent_load("slow"), (2, 1));
        q.release("slow");
        assert_eq!(ids(&mut q, 10), ["s2"]);
        // A queued job taken out is gone, and the agent's state with it once idle.
        let key = q.key(50);
        q.push(key, T("late", "other", 1));
        assert!(q.remove("other", key).is_some());
        assert_eq!(q.agent_load("other"), (0, 0));
        assert!(q.remove("other", key).is_none());
    }
}
