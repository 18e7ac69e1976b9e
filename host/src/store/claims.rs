//! The shared queue's trait: on a store several hosts share, an execution
//! waits in the store with no owner until a host with room claims it, in
//! priority then arrival order, each agent's slots counted across every
//! host. A store of one host has no shared queue: every method is a no-op and
//! its executions wait in the host's own queue.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::StoreError;
use crate::record::Execution;

/// What a host may claim: how many runs each agent may have at once, across
/// every host, how many it has on this host, and which versions it can run.
pub trait Slots: Sync {
    /// Each agent's runs on this host and the executions it claimed and has
    /// not started (a run that ended is not one, even before its end is
    /// stored).
    fn here(&self) -> std::collections::HashMap<String, usize>;
    /// `None`: an agent this host does not know (yet), left to others.
    fn of_agent(&self, agent_id: &str) -> Option<usize>;
    /// The versions this host has loaded and can run.
    fn runnable(&self) -> Vec<String>;
    /// What this host holds back until its agent has a slot across the
    /// hosts, claimed like waiting executions (by their priority and age):
    /// durable runs, unloaded while they waited for a decision, decided
    /// since, that it would resume (should nobody hold them); its
    /// conversations' turns whose turns before them ended.
    fn held_back(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where executions this host accepted (and another may run) are now.
#[derive(Debug, Default)]
pub struct Whereabouts {
    /// Taken by another host (waiting there, or running).
    pub elsewhere: Vec<String>,
    /// Ended (whoever ran them), or waiting for a decision, as stored.
    pub ended: Vec<Execution>,
    /// Not stored at all any more.
    pub gone: Vec<String>,
}

#[async_trait]
pub trait Claims: Send + Sync {
    /// Whether executions wait in the store for any host to claim them.
    fn shares_queue(&self) -> bool {
        false
    }
    /// What hints from other hosts wake (`None`: no other hosts).
    fn hinted(&self) -> Option<Arc<Notify>> {
        None
    }
    /// Hints every host to claim (and to look for the ends it follows).
    async fn hint(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Claims at most `room` waiting executions for this host (their
    /// `run_after`, if any, before `now`), and what it held back
    /// (`slots.held_back()`: a decided run to resume is returned
    /// `awaiting_approval`, a turn with its conversation): highest priority
    /// first, then the oldest, skipping agents whose runs and claims across
    /// every host fill their `slots`; hosts claim one at a time. Oldest first
    /// among equals. `surely`: something is known to wait (no need to look
    /// first).
    async fn claim(
        &self,
        _room: usize,
        _now: i64,
        _slots: &dyn Slots,
        _surely: bool,
    ) -> Result<Vec<Execution>, StoreError> {
        Ok(Vec::new())
    }
    /// Gives back executions this host claimed and will not start (it is
    /// shutting down): they wait for any host again (a decided run to
    /// resume, for any host to resume; a turn stays this host's, no longer
    /// counted by other hosts). Those given back (not turns).
    async fn give_back(&self, _ids: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    /// Claims one execution, if it still waits unclaimed (to cancel it).
    async fn claim_one(&self, _id: &str) -> Result<Option<Execution>, StoreError> {
        Ok(None)
    }
    /// After a restart: the runs this host held in memory as they waited for
    /// a decision are nobody's now (any host may resume them once decided).
    async fn release_waiting(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Takes an execution that waited for a decision (or was asked to
    /// cancel meanwhile) to resume it here, or to end it: whether this host
    /// holds it now.
    /// One host at a time: taken while nobody holds it (it was unloaded),
    /// this host does, or its host's lease ran out. (Always, on a store of
    /// one host.)
    async fn take_waiting(&self, _id: &str) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Where these executions are now.
    async fn whereabouts(&self, _ids: &[String]) -> Result<Whereabouts, StoreError> {
        Ok(Whereabouts::default())
    }
    /// Of these executions of this host (running or waiting here), those
    /// another host took over (this host's lease ran out meanwhile), whether
    /// it still runs them or ended them; those that went back to the shared
    /// queue and wait unclaimed are this host's again. (One waiting for a
    /// decision that another host took to resume is that host's.)
    async fn taken_over(&self, _ids: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}
