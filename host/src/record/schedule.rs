//! Schedules: an agent run on a cron pattern in a time zone, with what to do
//! when a run is still going at the next slot and after downtime. Pure data;
//! firing lives in `schedules`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time;

/// What a slot does while the schedule's previous run has not ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The slot is skipped.
    #[default]
    Skip,
    /// One run waits for the previous to end (more slots meanwhile are skipped).
    BufferOne,
    /// It runs anyway.
    Allow,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::Allow => "allow",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Overlap::Skip, Overlap::BufferOne, Overlap::Allow]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// A schedule, as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: String,
    #[serde(skip)]
    pub workspace: String,
    pub agent_id: String,
    /// Runs this version; none: the agent's latest at each run.
    pub version: Option<u32>,
    /// Five fields (minute to weekday) or six (with seconds first).
    pub cron: String,
    /// IANA zone the pattern is read in (`UTC`, `Europe/Paris`).
    pub timezone: String,
    #[schema(value_type = serde_json::Value)]
    pub input: Arc<RawValue>,
    #[schema(value_type = Object)]
    pub metadata: Arc<RawValue>,
    pub priority: u8,
    pub overlap: Overlap,
    /// After downtime, the newest slot missed is still run if it is at most
    /// this old (one run at most); older ones are skipped.
    pub catchup_window_secs: u64,
    pub enabled: bool,
    /// No slot after this time runs (the schedule then disables itself).
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end_at: Option<i64>,
    /// The next slot it fires at (none: disabled or ended).
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run_at: Option<i64>,
    /// The newest slot it fired or skipped.
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_slot: Option<i64>,
    /// The execution of its newest run.
    pub last_execution_id: Option<String>,
    /// A slot that waits for the previous run to end (`buffer_one`).
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub buffered_slot: Option<i64>,
    /// The run fixed for `last_slot` before it was created: after a restart,
    /// it is created then if it does not exist (a slot never runs twice).
    #[serde(skip)]
    pub pending_execution_id: Option<String>,
    /// Runs made and slots skipped (overlap or downtime).
    pub runs: u64,
    pub skipped: u64,
    /// Why its last slot could not run, if it could not.
    pub last_error: Option<String>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}
