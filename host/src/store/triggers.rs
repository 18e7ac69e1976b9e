//! The triggers' stores' traits: schedules, incoming webhooks, and outgoing
//! webhooks (subscriptions and the deliveries owed to them).

use async_trait::async_trait;

use super::{Commit, Hold, Queue, StoreError, Write};
use crate::record::{Delivery, Hook, Schedule, Subscription};

/// Filters and cursor of a schedules listing. Newest first; `after` is the
/// last id of the previous page.
#[derive(Debug, Default, Clone)]
pub struct ScheduleFilter {
    pub workspace: String,
    pub agent_id: Option<String>,
    pub enabled: Option<bool>,
    pub after: Option<String>,
    pub limit: u32,
}

/// Schedules and where each one is: its next slot, its last run, a run fixed
/// for a slot before it was made.
#[async_trait]
pub trait ScheduleStore: Queue {
    /// Creates or replaces a schedule.
    fn save(&self, schedule: Schedule) -> Commit {
        self.queue(Write::Schedule(Box::new(schedule)))
    }
    fn delete(&self, id: &str) -> Commit {
        self.queue(Write::DeleteSchedule(id.to_owned()))
    }
    async fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError>;
    /// One page, newest first, and whether more follow.
    async fn list(&self, filter: ScheduleFilter) -> Result<(Vec<Schedule>, bool), StoreError>;
    /// Enabled schedules whose next slot is at or before `now` (at most
    /// `limit`, the most overdue first), and any schedule with a run fixed but
    /// maybe not made or a slot waiting for its previous run.
    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Schedule>, StoreError>;
    /// The earliest next slot of any enabled schedule.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    /// On a store several hosts share: keeps other hosts from changing the
    /// schedule (an edit, the leader firing it) until the hold is released.
    /// `None` on a store of one host, whose own lock suffices.
    async fn hold_schedule(&self, _id: &str) -> Result<Option<Box<dyn Hold>>, StoreError> {
        Ok(None)
    }
}

/// Incoming webhooks, with their secrets.
#[async_trait]
pub trait HookStore: Queue {
    fn create(&self, hook: Hook) -> Commit {
        self.queue(Write::Hook(Box::new(hook)))
    }
    fn delete(&self, id: &str) -> Commit {
        self.queue(Write::DeleteHook(id.to_owned()))
    }
    async fn get(&self, id: &str) -> Result<Option<Hook>, StoreError>;
    /// A workspace's hooks, oldest first.
    async fn list(&self, workspace: &str) -> Result<Vec<Hook>, StoreError>;
}

/// Outgoing webhooks: subscriptions and the deliveries owed to them (an
/// outbox: deliveries are stored with what they announce, then sent).
#[async_trait]
pub trait WebhookStore: Queue {
    fn subscribe(&self, subscription: Subscription) -> Commit {
        self.queue(Write::Subscribe(Box::new(subscription)))
    }
    /// Deletes a subscription and its deliveries.
    fn unsubscribe(&self, id: &str) -> Commit {
        self.queue(Write::Unsubscribe(id.to_owned()))
    }
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError>;
    /// Every subscription, oldest first.
    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    /// Adds deliveries, or replaces them as they are now (an attempt made);
    /// a subscription deleted meanwhile gets none.
    fn deliver(&self, deliveries: Vec<Delivery>) -> Commit {
        self.queue(Write::Deliver(deliveries))
    }
    async fn delivery(&self, subscription_id: &str, id: &str) -> Result<Option<Delivery>, StoreError>;
    /// Deletes delivered and failed deliveries made before `before`.
    fn sweep(&self, before: i64) -> Commit {
        self.queue(Write::SweepDeliveries(before))
    }
    /// Pending deliveries due at `now`, the most overdue first, at most `limit`.
    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    /// The earliest next attempt of any pending delivery.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    /// A subscription's deliveries, newest first, after `after`, and whether
    /// more follow.
    async fn deliveries(
        &self,
        subscription_id: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<Delivery>, bool), StoreError>;
}
