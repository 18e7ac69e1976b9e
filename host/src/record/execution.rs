//! The execution record: statuses, typed failures, the record as stored and as
//! the API shows it. Pure data; storing and scheduling live elsewhere.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Agent, AgentVersion, ToolCallRecord, Usage};
use crate::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Queued,
    Running,
    CancelRequested,
    Completed,
    Failed,
    Cancelled,
    /// Waiting for a person to answer an approval request.
    AwaitingApproval,
    /// An approval request was rejected (or expired) and the agent did not go on.
    Rejected,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Pending,
        Status::Queued,
        Status::Running,
        Status::CancelRequested,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
        Status::AwaitingApproval,
        Status::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Queued => "queued",
            Status::Running => "running",
            Status::CancelRequested => "cancel_requested",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::Cancelled | Status::Rejected
        )
    }

    /// Whether an execution in this status may move to `to`: every status
    /// change the lifecycle makes is one of these.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Pending, Queued | Cancelled | Failed)
                | (Queued, Running | Cancelled | Failed)
                | (
                    Running,
                    CancelRequested | Completed | Failed | Cancelled | AwaitingApproval | Rejected
                )
                | (AwaitingApproval, Running | CancelRequested | Cancelled | Failed)
                | (CancelRequested, Completed | Failed | Cancelled | Rejected)
        )
    }
}

/// What started an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `POST /v1/agents/{id}/execute`.
    Api,
    Schedule,
    /// Another execution's `agent_call`.
    Agent,
    Chat,
    Mcp,
    Webhook,
    /// A retry of another execution (by its agent's policy or on request).
    Retry,
}

impl Trigger {
    pub const ALL: [Trigger; 7] = [
        Trigger::Api,
        Trigger::Schedule,
        Trigger::Agent,
        Trigger::Chat,
        Trigger::Mcp,
        Trigger::Webhook,
        Trigger::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Schedule => "schedule",
            Trigger::Agent => "agent",
            Trigger::Chat => "chat",
            Trigger::Mcp => "mcp",
            Trigger::Webhook => "webhook",
            Trigger::Retry => "retry",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Why an execution failed: a machine-readable code and a message for a person.
/// `source` says who decided: the `host` (limits, traps, bad output) or the
/// `agent` (an error it returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecError {
    pub code: String,
    pub message: String,
    pub source: ErrorSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    Host,
    Agent,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Host => "host",
            ErrorSource::Agent => "agent",
        }
    }
}

impl ExecError {
    pub fn host(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            source: ErrorSource::Host,
        }
    }
}

/// One execution, as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Execution {
    pub id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_version_id: String,
    pub agent_version: u32,
    pub status: Status,
    pub trigger: Trigger,
    pub priority: u8,
    /// Input, output and metadata are shared, never copied, by every holder of
    /// the record (the run, its final write, those waiting for its end).
    #[schema(value_type = serde_json::Value)]
    pub input: Arc<RawValue>,
    #[schema(value_type = Option<serde_json::Value>)]
    pub output: Option<Arc<RawValue>>,
    pub error: Option<ExecError>,
    #[schema(value_type = Object)]
    pub metadata: Arc<RawValue>,
    pub fuel_used: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
    pub n_steps: u32,
    pub n_logs: u32,
    pub logs_truncated: bool,
    /// 1 for a first run; a retry's attempt is its original's plus one.
    pub attempt: u32,
    /// The execution this one retries.
    pub retry_of: Option<String>,
    /// The newest execution that retries this one.
    pub retried_by: Option<String>,
    /// The execution whose `agent_call` started this one.
    pub parent_id: Option<String>,
    /// How deep in `agent_call`s this execution is (0: nobody called it).
    pub depth: u32,
    /// The conversation this execution is a turn of.
    pub conversation_id: Option<String>,
    /// The memory stores attached to its run (by id).
    pub memory_store_ids: Vec<String>,
    /// A turn's place in its conversation: turns run in this order (its own
    /// id; a retry its agent's policy makes has its original's).
    #[serde(skip)]
    pub turn_key: Option<String>,
    /// Session memory its request sets when the turn starts (a JSON object).
    #[serde(skip)]
    pub session_set: Option<Arc<RawValue>>,
    /// The schedule that started it, and the slot it ran for.
    pub schedule_id: Option<String>,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_for: Option<i64>,
    /// The W3C trace it belongs to (32 hex digits): its caller's `traceparent`,
    /// its parent's, or its own. See `GET /v1/executions/{id}/trace`.
    pub trace_id: Option<String>,
    /// The caller's span it hangs under (16 hex digits): its `traceparent`'s
    /// parent id, or the span of the parent run's `agent_call`.
    pub trace_parent: Option<String>,
    /// The model its caller picked for it: the model of every call the agent
    /// makes without naming one (one of the manifest's `models`). `null`: the
    /// manifest's first.
    pub model: Option<String>,
    /// What the run's model calls streamed before it ended without an output
    /// (cancelled, failed, timed out): the partial answer.
    pub output_partial: Option<String>,
    /// Model tokens over all the run's calls.
    pub token_usage: Usage,
    /// Some of `token_usage` is the host's estimate: a provider reported none
    /// for a call (about four characters a token); it counts against the budget
    /// like reported usage.
    pub usage_estimated: bool,
    pub cost_usd: f64,
    /// The model of the last call (as the provider named it).
    pub model_used: Option<String>,
    /// Which provider served it (`scripted` for the offline one).
    pub llm_provider: Option<String>,
    pub n_tool_calls: u32,
    pub tool_calls: Vec<ToolCallRecord>,
    pub n_artifacts: u32,
    /// Artifacts that are images.
    pub n_screenshots: u32,
    /// Not shown: in `timing`.
    #[serde(skip)]
    pub first_token_ms: Option<i64>,
    #[serde(skip)]
    pub tool_ms: i64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// A queued retry waits until this time (its backoff).
    #[serde(serialize_with = "time::serialize_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub run_after: Option<i64>,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub queued_at: Option<i64>,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<i64>,
}

/// Derived timings, in the record as `duration_ms` and `timing`.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct Timing {
    pub queued_ms: Option<i64>,
    pub run_ms: Option<i64>,
    pub total_ms: Option<i64>,
    /// From the start of the run to the first token of its first model call.
    pub first_token_ms: Option<i64>,
    /// Time spent in tool calls.
    pub tool_ms: i64,
}

impl Execution {
    /// A new execution of `version` of `agent`, queued at `now`: nothing run yet,
    /// input `null`, no metadata, priority 50, started by the API (set the rest
    /// with struct update syntax).
    pub fn queued(id: String, agent: &Agent, version: &AgentVersion, now: i64) -> Self {
        Self {
            id,
            agent_id: agent.id.clone(),
            agent_name: agent.name.clone(),
            agent_version_id: version.id.clone(),
            agent_version: version.version,
            status: Status::Queued,
            trigger: Trigger::Api,
            priority: 50,
            input: RawValue::NULL.to_owned().into(),
            output: None,
            error: None,
            metadata: RawValue::from_string("{}".to_owned())
                .unwrap_or_else(|_| RawValue::NULL.to_owned())
                .into(),
            fuel_used: None,
            peak_memory_bytes: None,
            n_steps: 0,
            n_logs: 0,
            logs_truncated: false,
            attempt: 1,
            retry_of: None,
            retried_by: None,
            parent_id: None,
            depth: 0,
            conversation_id: None,
            memory_store_ids: Vec::new(),
            turn_key: None,
            session_set: None,
            schedule_id: None,
            scheduled_for: None,
            trace_id: None,
            trace_parent: None,
            model: None,
            output_partial: None,
            token_usage: Usage::default(),
            usage_estimated: false,
            cost_usd: 0.0,
            model_used: None,
            llm_provider: None,
            n_tool_calls: 0,
            tool_calls: Vec::new(),
            n_artifacts: 0,
            n_screenshots: 0,
            first_token_ms: None,
            tool_ms: 0,
            created_at: now,
            run_after: None,
            queued_at: Some(now),
            started_at: None,
            completed_at: None,
        }
    }

    pub fn timing(&self) -> Timing {
        let diff = |a: Option<i64>, b: Option<i64>| Some(b? - a?);
        Timing {
            queued_ms: diff(Some(self.created_at), self.started_at),
            run_ms: diff(self.started_at, self.completed_at),
            total_ms: diff(Some(self.created_at), self.completed_at),
            first_token_ms: self.first_token_ms,
            tool_ms: self.tool_ms,
        }
    }
}

/// The record plus its derived fields, as the API serialises it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExecutionView<'a> {
    #[serde(flatten)]
    #[schema(inline)]
    pub execution: &'a Execution,
    pub duration_ms: Option<i64>,
    pub timing: Timing,
    /// Steps that acted on the world: tool calls.
    pub n_agent_actions: u32,
    pub output_url: String,
    pub logs_url: String,
    pub artifacts_url: String,
    pub events_url: String,
}

impl<'a> From<&'a Execution> for ExecutionView<'a> {
    fn from(execution: &'a Execution) -> Self {
        let timing = execution.timing();
        let base = format!("/v1/executions/{}", execution.id);
        Self {
            execution,
            duration_ms: timing.run_ms,
            timing,
            n_agent_actions: execution.n_tool_calls,
            logs_url: format!("{base}/logs"),
            artifacts_url: format!("{base}/artifacts"),
            events_url: format!("{base}/events"),
            output_url: base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_move_forward_only() {
        use Status::*;
        assert!(Queued.can_become(Running));
        assert!(Running.can_become(CancelRequested));
        assert!(CancelRequested.can_become(Cancelled));
        assert!(Queued.can_become(Cancelled));
        for terminal in [Completed, Failed, Cancelled] {
            assert!(terminal.is_terminal());
            assert!(Status::ALL.iter().all(|to| !terminal.can_become(*to)), "{terminal:?}");
        }
        assert!(!Running.can_become(Queued));
        assert!(
            !Queued.can_become(Completed),
            "a run that never started cannot complete"
        );
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
        }
    }
}
