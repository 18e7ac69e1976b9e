//! Deploys made in the background (`POST /v1/agents?wait=false`). Each is a
//! job, stored before its caller hears of it (the component's bytes as a blob,
//! the manifest as it was sent), that the caller polls (`GET
//! /v1/deploys/{id}`) while a task of this host compiles, until it is
//! `deployed` (stored with its version, in one transaction) or `failed`
//! (while storage is failing it waits, then tries again). A restart resumes
//! the jobs it cut short, one at a time; on a store several
//! hosts share, any host answers for a job, and the jobs of a host whose
//! lease ran out are taken over. Ended jobs go with the retention sweep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{DeployError, Deployer, stored_error};
use crate::digest::sha256_hex;
use crate::manifest::Manifest;
use crate::record::{DeployJob, JobError, JobStatus};
use crate::runtime::component::ComponentError;
use crate::store::StoreError;
use crate::{ids, time};

/// The jobs compiling on this host, answered from here until their version
/// is registered (so that `deployed` always means the version runs here).
#[derive(Default)]
pub struct Compiling(Mutex<HashMap<String, DeployJob>>);

impl Compiling {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, DeployJob>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the job was not compiling here yet (now it is).
    fn start(&self, job: &DeployJob) -> bool {
        self.lock().insert(job.id.clone(), job.clone()).is_none()
    }

    fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    fn get(&self, id: &str) -> Option<DeployJob> {
        self.lock().get(id).cloned()
    }
}

impl Deployer {
    /// Checks a deploy (in milliseconds), stores its job and its component,
    /// and compiles it on a task of its own; the job as its caller first sees
    /// it. `manifest_text` is the manifest as it was sent. Past the checks the
    /// work is the task's: a caller that hangs up midway leaves no job half
    /// made.
    pub async fn submit(
        self: &Arc<Self>,
        workspace: &str,
        manifest_text: String,
        manifest: Manifest,
        bytes: Bytes,
    ) -> Result<DeployJob, DeployError> {
        self.check(workspace, &manifest, &bytes)?;
        let (told, answer) = oneshot::channel();
        let deployer = Arc::clone(self);
        let workspace = workspace.to_owned();
        tokio::spawn(async move {
            let accepted = deployer.accept(&workspace, manifest_text, &manifest, &bytes).await;
            let job = accepted.as_ref().ok().cloned();
            let _ = told.send(accepted);
            if let Some(job) = job {
                deployer.run(job, manifest, bytes).await;
            }
        });
        answer
            .await
            .map_err(|_| DeployError::Internal(anyhow::anyhow!("the deploy's task ended before it was stored")))?
    }

    /// Stores a new job: its row first, then its component (a retention sweep
    /// meanwhile keeps the blob of a job that compiles). A component that
    /// cannot be stored fails the job.
    async fn accept(
        &self,
        workspace: &str,
        manifest_text: String,
        manifest: &Manifest,
        bytes: &Bytes,
    ) -> Result<DeployJob, DeployError> {
        let hashed = bytes.clone();
        let hash = tokio::task::spawn_blocking(move || sha256_hex(&hashed))
            .await
            .map_err(|e| DeployError::Internal(e.into()))?;
        let job = DeployJob {
            id: ids::deploy(),
            workspace: workspace.to_owned(),
            agent_name: manifest.name.clone(),
            status: JobStatus::Compiling,
            component_bytes: bytes.len() as u64,
            component_hash: hash.clone(),
            manifest: manifest_text,
            created_at: time::now_ms(),
            ended_at: None,
            elapsed_ms: 0,
            deployed: None,
            error: None,
        };
        self.compiling.start(&job);
        if let Err(e) = self.agents.save_deploy_job(job.clone()).await {
            self.compiling.end(&job.id);
            return Err(e.into());
        }
        let (blobs, stored) = (Arc::clone(&self.blobs), bytes.clone());
        let put = tokio::task::spawn_blocking(move || blobs.put(&hash, &stored).map_err(|e| stored_error(&e)))
            .await
            .map_err(|e| DeployError::Internal(e.into()))
            .and_then(|put| put.map_err(DeployError::Component));
        if let Err(e) = put {
            self.fail(job, &e).await;
            return Err(e);
        }
        Ok(job)
    }

    /// A job of `workspace`'s, as it is now. One another host deployed is
    /// answered `deployed` once its version is loaded here too.
    pub async fn job(&self, workspace: &str, id: &str) -> Result<Option<DeployJob>, StoreError> {
        let job = match self.compiling.get(id) {
            Some(job) => Some(job),
            None => self.agents.deploy_job(id).await?,
        };
        let Some(job) = job.filter(|j| j.workspace == workspace) else {
            return Ok(None);
        };
        if let Some(deployed) = &job.deployed
            && self.registry.version(&deployed.version.id).is_none()
            && let Err(e) = self.load().await
        {
            tracing::warn!(error = %format!("{e:#}"), "could not load the versions other hosts deployed");
        }
        Ok(Some(job.at(time::now_ms())))
    }

    /// Resumes the jobs still compiling that this host takes (with `mine`,
    /// its own, which a restart cut short; always those of hosts whose lease
    /// ran out), one after another on a task of their own, each reading its
    /// component when its turn comes.
    pub async fn resume(self: &Arc<Self>, mine: bool) -> Result<(), StoreError> {
        let mut jobs = self.agents.take_deploy_jobs(mine).await?;
        jobs.retain(|job| self.compiling.start(job));
        if jobs.is_empty() {
            return Ok(());
        }
        tracing::info!(deploys = jobs.len(), "resuming deploys made in the background");
        let deployer = Arc::clone(self);
        tokio::spawn(async move {
            for job in jobs {
                let blobs = Arc::clone(&deployer.blobs);
                let hash = job.component_hash.clone();
                let read = tokio::task::spawn_blocking(move || blobs.get(&hash)).await;
                let bytes = match read {
                    Ok(Ok(bytes)) => Bytes::from(bytes),
                    Ok(Err(e)) => {
                        let error = format!("its component cannot be read again after the restart ({e}); deploy again");
                        let e = DeployError::Component(ComponentError::Unavailable(error));
                        deployer.fail(job, &e).await;
                        continue;
                    }
                    Err(e) => {
                        deployer.fail(job, &DeployError::Internal(e.into())).await;
                        continue;
                    }
                };
                match Manifest::from_json(&job.manifest) {
                    Ok(manifest) => deployer.run(job, manifest, bytes).await,
                    Err(e) => deployer.fail(job, &DeployError::Manifest(e)).await,
                }
            }
        });
        Ok(())
    }

    /// Compiles and stores a job's version, each attempt on a task of its
    /// own (should one fail unexpectedly, the job still ends, `internal`).
    /// While storage is failing it tries again, a while later each time; a
    /// host shutting down leaves the job to its restart.
    async fn run(self: &Arc<Self>, job: DeployJob, manifest: Manifest, bytes: Bytes) {
        let mut wait = RETRY_FIRST;
        loop {
            let deploying = {
                let (deployer, job) = (Arc::clone(self), job.clone());
                let (manifest, bytes) = (manifest.clone(), bytes.clone());
                tokio::spawn(async move {
                    let workspace = job.workspace.clone();
                    deployer.deploy_as(&workspace, manifest, bytes, Some(job)).await
                })
            };
            let outcome = deploying.await.unwrap_or_else(|e| {
                Err(DeployError::Internal(anyhow::anyhow!(
                    "the deploy failed in the host: {e}"
                )))
            });
            match outcome {
                Ok(_) => {}
                Err(DeployError::Store(StoreError::TakenOver(_))) => {
                    tracing::warn!(deploy = %job.id, "another host took this deploy over; it ends it");
                }
                Err(DeployError::Store(StoreError::Closed)) => {
                    tracing::info!(deploy = %job.id, "the host is shutting down; it makes this deploy when it is back");
                }
                Err(e) if storage_failing(&e) => {
                    tracing::warn!(deploy = %job.id, error = %e, retry_in_ms = wait.as_millis() as u64,
                        "storage is failing; the deploy is made again once it recovers");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                    continue;
                }
                Err(e) => return self.fail(job, &e).await,
            }
            self.compiling.end(&job.id);
            return;
        }
    }

    /// Ends a job `failed`, with the code and message a waiting deploy would
    /// have answered (stored again while storage is failing, until it is; a
    /// host shutting down leaves the job to its restart).
    async fn fail(&self, mut job: DeployJob, e: &DeployError) {
        let id = job.id.clone();
        job.end(Err(job_error(e)), time::now_ms());
        let mut wait = RETRY_FIRST;
        loop {
            match self.agents.save_deploy_job(job.clone()).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(_)) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(stored) => {
                    tracing::error!(deploy = %id, error = %stored, "could not store how this deploy failed; a restart makes it again");
                    break;
                }
            }
        }
        self.compiling.end(&id);
    }
}

/// The first wait before a deploy is made again while storage is failing,
/// and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Whether a deploy failed because storage is (for now), not because of
/// what was deployed.
fn storage_failing(e: &DeployError) -> bool {
    matches!(
        e,
        DeployError::Store(StoreError::Unavailable(_) | StoreError::Read(_))
            | DeployError::Component(ComponentError::StorageFull(_))
    )
}

/// The code and message of a failed deploy (an internal failure's detail
/// goes to the log only).
fn job_error(e: &DeployError) -> JobError {
    let (code, message) = match e {
        DeployError::Component(c @ ComponentError::StorageFull(_)) => (c.code(), format!("{c}; try again shortly")),
        DeployError::Component(c @ ComponentError::Internal(_)) => {
            tracing::error!(error = %c, "a deploy failed in the host");
            ("internal", "the deploy failed in the host; see its log".to_owned())
        }
        DeployError::Component(c) => (c.code(), c.to_string()),
        DeployError::Manifest(m) => ("invalid_manifest", m.clone()),
        DeployError::Store(s @ StoreError::Unavailable(_)) => {
            ("storage_unavailable", format!("{s}; try again shortly"))
        }
        DeployError::Store(_) | DeployError::Internal(_) => {
            tracing::error!(error = %e, "a deploy failed in the host");
            ("internal", "the deploy failed in the host; see its log".to_owned())
        }
    };
    JobError {
        code: code.to_owned(),
        message,
    }
}
