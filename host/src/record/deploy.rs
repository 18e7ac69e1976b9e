//! Deploys made in the background (`POST /v1/agents?wait=false`), as stored
//! and as the API shows them: what was sent (the manifest, the component's
//! hash), where the deploy stands, and how it ended.

use serde::Serialize;

use super::{Agent, AgentVersion};
use crate::time;

/// A new version, deployed: the agent, the version, and warnings about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Deployed {
    pub agent: Agent,
    pub version: AgentVersion,
    /// What may not work as the manifest hopes: a model only the offline
    /// `scripted` provider answers (a typo looks like success), or one no
    /// provider serves.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Compiling (and storing) the component.
    Compiling,
    Deployed,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Compiling => "compiling",
            JobStatus::Deployed => "deployed",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "compiling" => JobStatus::Compiling,
            "deployed" => JobStatus::Deployed,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }
}

/// Why a deploy failed: the code and message the synchronous deploy answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeployJob {
    /// `dep_...`.
    pub id: String,
    #[serde(skip)]
    pub workspace: String,
    /// The agent's name (from the manifest).
    pub agent_name: String,
    pub status: JobStatus,
    /// The component's size.
    pub component_bytes: u64,
    /// The component's SHA-256 (its bytes are a blob from the start).
    #[serde(skip)]
    pub component_hash: String,
    /// The manifest as it was sent (what a deploy a restart cut short is made
    /// with again).
    #[serde(skip)]
    pub manifest: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<i64>,
    /// How long it has taken so far (or took).
    pub elapsed_ms: i64,
    /// `deployed`: what the synchronous deploy answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed: Option<Deployed>,
    /// `failed`: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

impl DeployJob {
    /// Ends the job now: deployed, or failed.
    pub fn end(&mut self, outcome: Result<Deployed, JobError>, now: i64) {
        self.ended_at = Some(now);
        self.elapsed_ms = now - self.created_at;
        match outcome {
            Ok(deployed) => {
                self.status = JobStatus::Deployed;
                self.deployed = Some(deployed);
            }
            Err(error) => {
                self.status = JobStatus::Failed;
                self.error = Some(error);
            }
        }
    }

    /// As it stands at `now` (a job still compiling has taken until now).
    pub fn at(mut self, now: i64) -> Self {
        if self.ended_at.is_none() {
            self.elapsed_ms = now - self.created_at;
        }
        self
    }
}
