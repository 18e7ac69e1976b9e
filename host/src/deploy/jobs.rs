//! Deploys made in the background (`POST /v1/agents?wait=false`): each is a job
//! the caller polls (`GET /v1/deploys/{id}`) while the host compiles, until it
//! is `deployed` or `failed`. Jobs live in memory: the newest
//! [`MAX_FINISHED`] finished ones are kept, and a restart forgets them all (a
//! deploy cut short by one is simply made again).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::record::{Agent, AgentVersion};
use crate::{ids, time};

/// Finished jobs kept for their callers to read.
const MAX_FINISHED: usize = 1_000;

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

#[derive(Default)]
pub struct DeployJobs(Mutex<Jobs>);

#[derive(Default)]
struct Jobs {
    by_id: HashMap<String, DeployJob>,
    /// Finished ones, oldest first.
    finished: VecDeque<String>,
}

impl DeployJobs {
    fn lock(&self) -> MutexGuard<'_, Jobs> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A job for a deploy that starts now; returns it as the caller first sees it.
    pub fn start(&self, workspace: &str, agent_name: &str, component_bytes: u64) -> DeployJob {
        let job = DeployJob {
            id: ids::deploy(),
            workspace: workspace.to_owned(),
            agent_name: agent_name.to_owned(),
            status: JobStatus::Compiling,
            component_bytes,
            created_at: time::now_ms(),
            ended_at: None,
            elapsed_ms: 0,
            deployed: None,
            error: None,
        };
        self.lock().by_id.insert(job.id.clone(), job.clone());
        job
    }

    /// The job's outcome.
    pub fn finish(&self, id: &str, outcome: Result<Deployed, JobError>) {
        let mut jobs = self.lock();
        let Some(job) = jobs.by_id.get_mut(id) else {
            return;
        };
        let now = time::now_ms();
        job.ended_at = Some(now);
        job.elapsed_ms = now - job.created_at;
        match outcome {
            Ok(deployed) => {
                job.status = JobStatus::Deployed;
                job.deployed = Some(deployed);
            }
            Err(error) => {
                job.status = JobStatus::Failed;
                job.error = Some(error);
            }
        }
        jobs.finished.push_back(id.to_owned());
        while jobs.finished.len() > MAX_FINISHED {
            if let Some(old) = jobs.finished.pop_front() {
                jobs.by_id.remove(&old);
            }
        }
    }

    /// A job of `workspace`'s, as it is now.
    pub fn get(&self, workspace: &str, id: &str) -> Option<DeployJob> {
        let jobs = self.lock();
        let mut job = jobs.by_id.get(id).filter(|j| j.workspace == workspace)?.clone();
        if job.ended_at.is_none() {
            job.elapsed_ms = time::now_ms() - job.created_at;
        }
        Some(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_seen_by_its_workspace_only_and_old_ones_go() {
        let jobs = DeployJobs::default();
        let job = jobs.start("default", "hello", 10);
        assert_eq!(
            jobs.get("default", &job.id).map(|j| j.status),
            Some(JobStatus::Compiling)
        );
        assert!(jobs.get("other", &job.id).is_none());
        let failed = JobError {
            code: "wrong_world".into(),
            message: "no".into(),
        };
        jobs.finish(&job.id, Err(failed));
        let seen = jobs.get("default", &job.id).expect("kept");
        assert_eq!(seen.status, JobStatus::Failed);
        assert!(seen.ended_at.is_some());
        for _ in 0..MAX_FINISHED {
            let next = jobs.start("default", "hello", 10);
            jobs.finish(
                &next.id,
                Err(JobError {
                    code: "x".into(),
                    message: "y".into(),
                }),
            );
        }
        assert!(jobs.get("default", &job.id).is_none(), "the oldest finished job went");
    }
}
