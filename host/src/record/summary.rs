//! An agent's activity over a period: counts by status, durations, tokens,
//! cost, its most frequent errors and its last run. Pure data.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Status, Usage};
use crate::time;

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct AgentSummary {
    pub agent_id: String,
    /// The period starts here (and runs to now).
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub since: i64,
    /// Executions created in the period.
    pub executions: u64,
    /// How many are in each status now.
    pub by_status: BTreeMap<String, u64>,
    /// Run durations (start to end) of those that ended.
    pub duration_ms: Durations,
    pub token_usage: Usage,
    pub cost_usd: f64,
    /// The most frequent error codes, most frequent first (at most 5).
    pub top_errors: Vec<ErrorCount>,
    /// The newest execution of the agent (of any period).
    pub last_run: Option<LastRun>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Durations {
    pub p50: Option<i64>,
    pub p95: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorCount {
    pub code: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastRun {
    pub id: String,
    pub status: Status,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}
