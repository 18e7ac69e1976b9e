//! Schedules, the use cases: create, change, pause, resume, delete and
//! trigger schedules of a workspace's agents, "make repeatable" from an
//! execution, and fire them ([`firing`]): each slot a run through the one way
//! in (`trigger: "schedule"`), never twice, honouring the overlap policy and
//! the catch-up window. Patterns are read in their zone ([`cron`]).

pub mod cron;
mod firing;

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use self::cron::{Pattern, PatternError};
use crate::executions::{Accepted, Executions, SubmitError};
use crate::record::{Execution, Overlap, Schedule};
use crate::registry::Registry;
use crate::store::{Backend, ExecutionStore, Hold, ScheduleFilter, ScheduleStore, StoreError, Stores};
use crate::{ids, time};

/// How many slots a schedule's view lists ahead.
const NEXT_RUNS: usize = 5;
/// The default catch-up window: a slot missed by at most this long still runs.
const DEFAULT_CATCHUP_SECS: u64 = 60;
/// Locks that changes to the same schedule share (firing included; across
/// hosts, a hold in the store as well).
const STRIPES: usize = 32;

/// A new schedule, as asked for.
#[derive(Default)]
pub struct ScheduleSpec {
    /// Agent id or name.
    pub agent: String,
    pub version: Option<u32>,
    pub cron: String,
    pub timezone: Option<String>,
    pub input: Option<Arc<RawValue>>,
    pub metadata: Option<Arc<RawValue>>,
    pub priority: Option<u8>,
    pub overlap: Option<Overlap>,
    pub catchup_window_secs: Option<u64>,
    pub enabled: Option<bool>,
    pub end_at: Option<i64>,
}

/// Changes to a schedule: what is given changes.
#[derive(Default)]
pub struct SchedulePatch {
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub input: Option<Arc<RawValue>>,
    pub metadata: Option<Arc<RawValue>>,
    pub priority: Option<u8>,
    pub overlap: Option<Overlap>,
    pub catchup_window_secs: Option<u64>,
    pub enabled: Option<bool>,
    /// `Some(None)`: no end.
    pub end_at: Option<Option<i64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A field is wrong: `field` names it.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("no schedule {0:?}")]
    NotFound(String),
    #[error("no agent with id or name {0:?}")]
    AgentNotFound(String),
    #[error("no execution {0:?}")]
    ExecutionNotFound(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PatternError> for ScheduleError {
    fn from(e: PatternError) -> Self {
        let field = match e {
            PatternError::Cron(_) => "cron",
            PatternError::Zone(_) => "timezone",
        };
        ScheduleError::Invalid {
            field,
            message: e.to_string(),
        }
    }
}

/// A schedule with its pattern in words and its next slots.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    #[serde(flatten)]
    #[schema(inline)]
    pub schedule: Schedule,
    pub description: String,
    /// The next slots (RFC 3339), while it is enabled.
    pub next_runs: Vec<String>,
}

pub struct Schedules {
    store: Arc<dyn ScheduleStore>,
    executions_store: Arc<dyn ExecutionStore>,
    /// Whether this host leads (only the leading host fires schedules).
    backend: Arc<dyn Backend>,
    executions: Arc<Executions>,
    registry: Arc<Registry>,
    /// Wakes the firing loop (a schedule made or changed).
    wake: tokio::sync::Notify,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid {
        field,
        message: message.into(),
    }
}

fn json_object(field: &'static str, value: Option<Arc<RawValue>>) -> Result<Arc<RawValue>, ScheduleError> {
    match value {
        Some(v) if v.get().starts_with('{') && crate::json_text::check(v.get()).is_ok() => Ok(v),
        Some(_) => Err(invalid(field, format!("{field} must be a JSON object"))),
        None => crate::json_text::raw("{}".to_owned())
            .map(Into::into)
            .map_err(|e| invalid(field, e.to_string())),
    }
}

/// A schedule's turn to change ([`Schedules::turn`]); ended, it releases
/// the hold across hosts first, then this host's lock.
struct Turn<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    hold: Option<Box<dyn Hold>>,
}

impl Turn<'_> {
    async fn end(self) {
        if let Some(hold) = self.hold {
            hold.release().await;
        }
    }
}

impl Schedules {
    pub fn new(stores: &Stores, executions: Arc<Executions>, registry: Arc<Registry>) -> Arc<Self> {
        Arc::new(Self {
            store: Arc::clone(&stores.schedules),
            executions_store: Arc::clone(&stores.executions),
            backend: Arc::clone(&stores.backend),
            executions,
            registry,
            wake: tokio::sync::Notify::new(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    fn stripe(&self, id: &str) -> &tokio::sync::Mutex<()> {
        let hash = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.stripes[hash % STRIPES]
    }

    /// A schedule's turn to change (an edit, a trigger, firing it): this
    /// host's lock on it and, on a store several hosts share, the hold that
    /// keeps the other hosts from changing it meanwhile (so that the leader
    /// firing it never undoes an edit made on another host, nor the edit a
    /// slot).
    async fn turn(&self, id: &str) -> Result<Turn<'_>, StoreError> {
        let local = self.stripe(id).lock().await;
        let hold = self.store.hold_schedule(id).await?;
        Ok(Turn { _local: local, hold })
    }

    /// Its pattern in words and its next slots.
    pub fn view(schedule: Schedule) -> ScheduleView {
        let (description, next_runs) = match Pattern::parse(&schedule.cron, &schedule.timezone) {
            Ok(p) => {
                let next = match (schedule.enabled, schedule.next_run_at) {
                    (true, Some(first)) => {
                        let mut slots = vec![first];
                        slots.extend(p.next_runs(first, NEXT_RUNS - 1));
                        slots.retain(|t| schedule.end_at.is_none_or(|end| *t <= end));
                        slots
                    }
                    _ => Vec::new(),
                };
                (p.describe(), next)
            }
            Err(e) => (e.to_string(), Vec::new()),
        };
        ScheduleView {
            schedule,
            description,
            next_runs: next_runs.into_iter().map(time::to_rfc3339).collect(),
        }
    }

    /// A schedule of `workspace`.
    pub async fn get(&self, workspace: &str, id: &str) -> Result<Schedule, ScheduleError> {
        self.store
            .get(id)
            .await?
            .filter(|s| s.workspace == workspace)
            .ok_or_else(|| ScheduleError::NotFound(id.to_owned()))
    }

    pub async fn list(&self, filter: ScheduleFilter) -> Result<(Vec<Schedule>, bool), StoreError> {
        self.store.list(filter).await
    }

    /// Creates a schedule; its first slot is the first after now.
    pub async fn create(&self, workspace: &str, spec: ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let entry = self
            .registry
            .get(workspace, &spec.agent)
            .ok_or_else(|| ScheduleError::AgentNotFound(spec.agent.clone()))?;
        if let Some(v) = spec.version
            && entry.version(v).is_none()
        {
            return Err(invalid(
                "version",
                format!("agent {:?} has no version {v}", entry.agent.name),
            ));
        }
        let now = time::now_ms();
        let mut schedule = Schedule {
            id: ids::schedule(),
            workspace: workspace.to_owned(),
            agent_id: entry.agent.id.clone(),
            version: spec.version,
            cron: spec.cron,
            timezone: spec.timezone.unwrap_or_else(|| "UTC".to_owned()),
            input: spec.input.unwrap_or_else(|| Arc::from(RawValue::NULL.to_owned())),
            metadata: json_object("metadata", spec.metadata)?,
            priority: spec.priority.unwrap_or(crate::executions::DEFAULT_PRIORITY),
            overlap: spec.overlap.unwrap_or_default(),
            catchup_window_secs: spec.catchup_window_secs.unwrap_or(DEFAULT_CATCHUP_SECS),
            enabled: spec.enabled.unwrap_or(true),
            end_at: spec.end_at,
            next_run_at: None,
            last_slot: None,
            last_execution_id: None,
            buffered_slot: None,
            pending_execution_id: None,
            runs: 0,
            skipped: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        self.check(&schedule).await?;
        schedule.next_run_at = self.first_slot(&schedule, now)?;
        if schedule.enabled && schedule.next_run_at.is_none() {
            let never = Pattern::parse(&schedule.cron, &schedule.timezone)?
                .next_after(now)
                .is_none();
            return Err(if never {
                invalid("cron", "cron: the pattern names no time to come")
            } else {
                invalid("end_at", "end_at: nothing is left to run before it")
            });
        }
        self.store.save(schedule.clone()).await?;
        self.wake.notify_one();
        Ok(schedule)
    }

    /// What every schedule must be: a pattern in a zone, a priority, an input
    /// its agent takes.
    async fn check(&self, s: &Schedule) -> Result<(), ScheduleError> {
        Pattern::parse(&s.cron, &s.timezone)?;
        if s.priority > 100 {
            return Err(invalid("priority", "priority must be 0 to 100"));
        }
        if s.catchup_window_secs > 366 * 24 * 3600 {
            return Err(invalid(
                "catchup_window_secs",
                "catchup_window_secs must be at most a year",
            ));
        }
        crate::json_text::check(s.input.get()).map_err(|e| invalid("input", e.to_string()))?;
        let entry = self
            .registry
            .get(&s.workspace, &s.agent_id)
            .ok_or_else(|| ScheduleError::AgentNotFound(s.agent_id.clone()))?;
        let version = match s.version {
            Some(v) => entry.version(v),
            None => entry.latest(),
        };
        if let Some(version) = version {
            version
                .check_input(&s.input)
                .await
                .map_err(|e| invalid("input", crate::manifest::describe(&e)))?;
        }
        Ok(())
    }

    /// The first slot after `now` (none when disabled or past its end).
    fn first_slot(&self, s: &Schedule, now: i64) -> Result<Option<i64>, ScheduleError> {
        if !s.enabled {
            return Ok(None);
        }
        let next = Pattern::parse(&s.cron, &s.timezone)?.next_after(now);
        Ok(next.filter(|t| s.end_at.is_none_or(|end| *t <= end)))
    }

    /// Changes a schedule; a new pattern, zone or resumption starts from now.
    pub async fn update(&self, workspace: &str, id: &str, patch: SchedulePatch) -> Result<Schedule, ScheduleError> {
        let turn = self.turn(id).await?;
        let changed = self.change(workspace, id, patch).await;
        turn.end().await;
        changed
    }

    /// [`Schedules::update`], its turn taken.
    async fn change(&self, workspace: &str, id: &str, patch: SchedulePatch) -> Result<Schedule, ScheduleError> {
        let mut s = self.get(workspace, id).await?;
        let was_enabled = s.enabled;
        // A new pattern or zone (or a resumption) starts from now; a new end
        // only cuts what is left. What is checked is checked again only when
        // it changes (a pause always works, even of a schedule gone wrong).
        let timing = patch.cron.is_some() || patch.timezone.is_some();
        let recheck =
            timing || patch.input.is_some() || patch.priority.is_some() || patch.catchup_window_secs.is_some();
        if let Some(v) = patch.cron {
            s.cron = v;
        }
        if let Some(v) = patch.timezone {
            s.timezone = v;
        }
        if let Some(v) = patch.input {
            s.input = v;
        }
        if let Some(v) = patch.metadata {
            s.metadata = json_object("metadata", Some(v))?;
        }
        if let Some(v) = patch.priority {
            s.priority = v;
        }
        if let Some(v) = patch.overlap {
            s.overlap = v;
        }
        if let Some(v) = patch.catchup_window_secs {
            s.catchup_window_secs = v;
        }
        if let Some(v) = patch.enabled {
            s.enabled = v;
        }
        if let Some(v) = patch.end_at {
            s.end_at = v;
        }
        if recheck {
            self.check(&s).await?;
        }
        let now = time::now_ms();
        if !timing && s.enabled == was_enabled {
            s.next_run_at = s.next_run_at.filter(|t| s.end_at.is_none_or(|end| *t <= end));
            if s.next_run_at.is_none() && s.enabled {
                return Err(invalid("end_at", "end_at: nothing is left to run, its end is past"));
            }
        }
        if timing || s.enabled != was_enabled {
            s.next_run_at = self.first_slot(&s, now)?;
            if !s.enabled {
                s.buffered_slot = None;
            }
            if s.enabled && s.next_run_at.is_none() {
                return Err(invalid("end_at", "end_at: nothing is left to run, its end is past"));
            }
        }
        s.updated_at = now;
        self.store.save(s.clone()).await?;
        self.wake.notify_one();
        Ok(s)
    }

    pub async fn set_enabled(&self, workspace: &str, id: &str, enabled: bool) -> Result<Schedule, ScheduleError> {
        let patch = SchedulePatch {
            enabled: Some(enabled),
            ..SchedulePatch::default()
        };
        self.update(workspace, id, patch).await
    }

    pub async fn delete(&self, workspace: &str, id: &str) -> Result<(), ScheduleError> {
        let turn = self.turn(id).await?;
        let deleted = async {
            self.get(workspace, id).await?;
            self.store.delete(id).await?;
            Ok(())
        }
        .await;
        turn.end().await;
        deleted
    }

    /// A run now, outside its slots (whatever its previous run is doing).
    pub async fn trigger(&self, workspace: &str, id: &str) -> Result<Accepted, ScheduleError> {
        let turn = self.turn(id).await?;
        let fired = async {
            let mut s = self.get(workspace, id).await?;
            self.fire(&mut s, time::now_ms(), true).await
        }
        .await;
        turn.end().await;
        fired
    }

    /// "Make repeatable": a schedule running an execution's agent version,
    /// input, metadata and priority on `cron`.
    pub async fn from_execution(
        &self,
        workspace: &str,
        execution: &Execution,
        cron: String,
        timezone: Option<String>,
    ) -> Result<Schedule, ScheduleError> {
        let spec = ScheduleSpec {
            agent: execution.agent_id.clone(),
            version: Some(execution.agent_version),
            cron,
            timezone,
            input: Some(Arc::clone(&execution.input)),
            metadata: Some(Arc::clone(&execution.metadata)),
            priority: Some(execution.priority),
            ..ScheduleSpec::default()
        };
        self.create(workspace, spec).await
    }

    /// Starts firing: a run fixed before a restart is made now if it was not.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(firing::run(Arc::downgrade(self), self.executions.closing()));
    }
}
