//! The durable runs' stores' traits: journals of host calls, and approval
//! requests with their decisions.

use async_trait::async_trait;

use super::{Commit, Queue, StoreError, Write};
use crate::record::{Approval, ApprovalStatus, Decision, Delivery, JournalEntry};

/// The journals of durable runs. An execution's journal is deleted with its
/// final record (a finished run is never replayed).
#[async_trait]
pub trait JournalStore: Queue {
    /// Adds entries (or, for a started entry now done, replaces it), in order
    /// with the other writes.
    fn append(&self, execution_id: &str, entries: Vec<JournalEntry>) -> Commit {
        self.queue(Write::Journal {
            execution_id: execution_id.to_owned(),
            entries,
        })
    }
    /// An execution's journal, in order.
    async fn load(&self, execution_id: &str) -> Result<Vec<JournalEntry>, StoreError>;
}

/// Filters and cursor of an approvals listing. Newest first; `after` is the
/// last id of the previous page.
#[derive(Debug, Default, Clone)]
pub struct ApprovalFilter {
    pub workspace: String,
    pub status: Option<ApprovalStatus>,
    pub agent_id: Option<String>,
    pub execution_id: Option<String>,
    pub after: Option<String>,
    pub limit: u32,
}

/// Approval requests and their decisions.
#[async_trait]
pub trait ApprovalStore: Queue {
    /// Stores a request with the webhook deliveries announcing it, in one
    /// commit (a request stored again keeps its first version).
    fn create(&self, approval: Approval, deliveries: Vec<Delivery>) -> Commit {
        self.queue(Write::Approval(Box::new(approval), deliveries))
    }
    /// Decides a request, only if it is still pending (the first decision wins:
    /// read it back to learn which one that was).
    fn decide(&self, id: &str, decision: Decision) -> Commit {
        self.queue(Write::Decide {
            id: id.to_owned(),
            decision: Box::new(decision),
        })
    }
    async fn get(&self, id: &str) -> Result<Option<Approval>, StoreError>;
    /// One page, newest first, and whether more follow.
    async fn list(&self, filter: ApprovalFilter) -> Result<(Vec<Approval>, bool), StoreError>;
    /// Pending requests whose timeout passed by `now`, at most `limit`.
    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Approval>, StoreError>;
    /// The newest request of an execution.
    async fn of_execution(&self, execution_id: &str) -> Result<Option<Approval>, StoreError>;
    /// Every request of these executions (one read for many: a batch of
    /// traces to export).
    async fn of_executions(&self, execution_ids: Vec<String>) -> Result<Vec<Approval>, StoreError>;
    /// Executions still `awaiting_approval` with no request pending: decided
    /// while nobody resumed them.
    async fn answered_waiting(&self) -> Result<Vec<String>, StoreError>;
    /// Every execution `awaiting_approval`: its id and its version's id.
    async fn waiting(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Executions `awaiting_approval` that a host whose lease ran out held
    /// (on a store several hosts share; none on a store of one host): id
    /// and version id.
    async fn waiting_of_stopped_hosts(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(Vec::new())
    }
}
