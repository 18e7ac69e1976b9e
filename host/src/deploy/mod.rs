//! Deploying agents: a component and its manifest are checked (the manifest's
//! fields, WebAssembly, a component implementing the world), compiled once,
//! stored (the bytes as a blob, the version as a row), and registered; and, at
//! start, every stored version loaded again from the compiled cache. A deploy
//! may also run in the background, as a stored job its caller polls
//! ([`jobs`]).

mod jobs;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::config::{Config, HostLimits, McpConfig};
use crate::digest::sha256_hex;
use crate::llm::Llm;
use crate::manifest::Manifest;
use crate::record::{Agent, AgentVersion, DeployJob, Deployed};
use crate::registry::{Registry, Version};
use crate::runtime::Runtime;
use crate::runtime::component::{ComponentError, check_header};
use crate::store::{AgentStore, Backend, BlobStore, StoreError, Stores};
use crate::tools::mcp::McpClient;
use crate::{ids, time};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Component(#[from] ComponentError),
    #[error("{0}")]
    Manifest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

pub struct Deployer {
    runtime: Arc<Runtime>,
    llm: Arc<Llm>,
    registry: Arc<Registry>,
    agents: Arc<dyn AgentStore>,
    blobs: Arc<dyn BlobStore>,
    backend: Arc<dyn Backend>,
    limits: HostLimits,
    max_running: u32,
    mcp: McpConfig,
    /// Whether tools may reach private addresses (plain http to them is fine).
    allow_private: bool,
    /// One deploy at a time picks version numbers.
    lock: Mutex<()>,
    /// The deploys made in the background that compile here now.
    compiling: jobs::Compiling,
}

impl Deployer {
    pub fn new(
        config: &Config,
        stores: &Stores,
        runtime: Arc<Runtime>,
        registry: Arc<Registry>,
        llm: Arc<Llm>,
    ) -> Self {
        Self {
            runtime,
            llm,
            registry,
            agents: Arc::clone(&stores.agents),
            blobs: Arc::clone(&stores.blobs),
            backend: Arc::clone(&stores.backend),
            limits: config.limits,
            max_running: config.max_concurrent_executions,
            mcp: config.mcp.clone(),
            allow_private: config.tools.allow_private_addresses,
            lock: Mutex::new(()),
            compiling: jobs::Compiling::default(),
        }
    }

    /// Loads every stored version into the registry: from the compiled cache
    /// when its artifact matches its recorded digest, else compiled again from
    /// its blob. A version that cannot be loaded is logged and registered as
    /// unavailable (executing it says why); the others load. Versions already
    /// registered are left as they are: called again, this loads what other
    /// hosts deployed meanwhile (on a store several hosts share).
    pub async fn load(&self) -> anyhow::Result<()> {
        let _deploys = self.lock.lock().await;
        let agents = self.agents.agents().await?;
        let mut versions = self.agents.versions().await?;
        versions.retain(|v| self.registry.version(&v.id).is_none());
        if versions.is_empty() {
            return Ok(());
        }
        let engine = self.runtime.engine_key();
        let digests = self.agents.compiled(&engine).await?;
        let runtime = Arc::clone(&self.runtime);
        let blobs = Arc::clone(&self.blobs);
        // Reading, hashing and deserialising artifacts is CPU work: one thread
        // per core, each on its share of the components (the versions of one
        // component go to one thread, which loads it once).
        let prepared = tokio::task::spawn_blocking(move || {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut shares: Vec<Vec<_>> = vec![Vec::new(); cores];
            let mut assigned = HashMap::new();
            for meta in versions {
                let next = assigned.len() % cores;
                let share = *assigned.entry(meta.component_hash.clone()).or_insert(next);
                shares[share].push(meta);
            }
            let prepared = std::thread::scope(|scope| {
                let workers: Vec<_> = shares
                    .iter()
                    .map(|part| {
                        let (runtime, blobs, digests) = (&runtime, &blobs, &digests);
                        scope.spawn(move || {
                            part.iter()
                                .map(|meta| {
                                    let hash = &meta.component_hash;
                                    let verified = digests.get(hash).map(String::as_str);
                                    let pre =
                                        runtime.prepare(hash, verified, || stored_component(blobs.as_ref(), hash));
                                    (meta.clone(), pre)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    .collect::<Vec<_>>()
            });
            crate::allocator::give_back();
            prepared
        })
        .await?;
        for (meta, pre) in prepared {
            let Some(agent) = agents.iter().find(|a| a.id == meta.agent_id) else {
                continue;
            };
            if let Ok((_, _, Some(digest))) = &pre {
                self.agents
                    .record_compiled(&engine, &meta.component_hash, digest)
                    .await?;
            }
            let version = match pre.map_err(|e| e.to_string()) {
                Ok((pre, _, _)) => Version::new(meta.clone(), pre),
                Err(e) => Err(e),
            };
            match version {
                Ok(version) => self.registry.insert(agent.clone(), version),
                Err(e) => {
                    tracing::error!(agent = %agent.name, version = meta.version, error = %e,
                        "deployed version could not be loaded; it cannot run until redeployed");
                    self.registry.insert(agent.clone(), Version::unavailable(meta, e));
                }
            }
        }
        Ok(())
    }

    /// Each MCP server's `auth_env` must name a credential the host lets go to
    /// that server from this workspace.
    fn check_mcp_credentials(&self, workspace: &str, manifest: &Manifest) -> Result<(), DeployError> {
        for (i, server) in manifest.mcp_servers.iter().enumerate() {
            McpClient::credential_allowed(&self.mcp, self.allow_private, workspace, server)
                .map_err(|e| DeployError::Manifest(format!("manifest.mcp_servers[{i}].auth_env: {e}")))?;
        }
        Ok(())
    }

    /// What a deploy checks before compiling (in milliseconds): the manifest,
    /// its MCP credentials, the component's header and imports, the storage.
    pub fn check(&self, workspace: &str, manifest: &Manifest, bytes: &[u8]) -> Result<(), DeployError> {
        manifest.validate().map_err(DeployError::Manifest)?;
        self.check_mcp_credentials(workspace, manifest)?;
        check_header(bytes)?;
        crate::runtime::imports::check(bytes)?;
        if let Some(failure) = self.backend.failing() {
            return Err(DeployError::Store(StoreError::Unavailable(failure.error)));
        }
        Ok(())
    }

    /// Validates, compiles and records a new version of the manifest's agent in
    /// `workspace`.
    /// Returns the agent, the version, and warnings about it (models only the
    /// offline provider answers, or none does).
    pub async fn deploy(&self, workspace: &str, manifest: Manifest, bytes: Bytes) -> Result<Deployed, DeployError> {
        self.deploy_as(workspace, manifest, bytes, None).await
    }

    /// [`Deployer::deploy`], or a background deploy's `job` (whose component
    /// is stored already, and whose end is stored with the version).
    async fn deploy_as(
        &self,
        workspace: &str,
        manifest: Manifest,
        bytes: Bytes,
        job: Option<DeployJob>,
    ) -> Result<Deployed, DeployError> {
        self.check(workspace, &manifest, &bytes)?;
        // On a shared store, what other hosts deployed first: the next
        // version number is counted from theirs.
        if self.backend.lease().is_some() {
            self.load().await.map_err(DeployError::Internal)?;
        }
        let runtime = Arc::clone(&self.runtime);
        let blobs = Arc::clone(&self.blobs);
        let engine = self.runtime.engine_key();
        let verified = self.agents.compiled(&engine).await?;
        let stored = job.as_ref().map(|j| j.component_hash.clone());
        let (hash, pre, written) = tokio::task::spawn_blocking(move || {
            let blob_stored = stored.is_some();
            let hash = stored.unwrap_or_else(|| sha256_hex(&bytes));
            let prepared = runtime
                .prepare(&hash, verified.get(&hash).map(String::as_str), || Ok(bytes.to_vec()))
                .and_then(|(pre, _, written)| {
                    if !blob_stored {
                        blobs.put(&hash, &bytes).map_err(|e| stored_error(&e))?;
                    }
                    Ok((pre, written))
                });
            let size = bytes.len() as u64;
            // Whether it compiled or not, what compiling took goes back.
            drop(bytes);
            crate::allocator::give_back();
            let (pre, written) = prepared?;
            Ok::<_, ComponentError>(((hash, size), pre, written))
        })
        .await
        .map_err(|e| DeployError::Internal(e.into()))??;
        if let Some(digest) = &written {
            self.agents.record_compiled(&engine, &hash.0, digest).await?;
        }

        let _guard = self.lock.lock().await;
        let now = time::now_ms();
        let (mut agent, number) = match self.registry.get(workspace, &manifest.name) {
            Some(entry) => (entry.agent.clone(), entry.agent.latest_version + 1),
            None => (
                Agent {
                    id: ids::agent(),
                    workspace: workspace.to_owned(),
                    name: manifest.name.clone(),
                    description: String::new(),
                    latest_version: 0,
                    created_at: now,
                    updated_at: now,
                },
                1,
            ),
        };
        agent.description = manifest.description.clone();
        agent.latest_version = number;
        agent.updated_at = now;
        let version = AgentVersion {
            id: ids::agent_version(),
            agent_id: agent.id.clone(),
            version: number,
            label: manifest.version.clone(),
            limits: manifest.effective_limits(&self.limits, self.max_running),
            manifest,
            component_hash: hash.0,
            component_size: hash.1,
            created_at: now,
        };
        let prepared = Version::new(version.clone(), pre).map_err(DeployError::Manifest)?;
        let models = if version.manifest.models.is_empty() {
            vec!["scripted".to_owned()]
        } else {
            version.manifest.models.to_vec()
        };
        let warnings: Vec<String> = models.iter().filter_map(|m| self.llm.warning_for(m)).collect();
        let deployed = Deployed {
            agent,
            version,
            warnings,
        };
        let job = job.map(|mut job| {
            job.end(Ok(deployed.clone()), time::now_ms());
            job
        });
        self.agents
            .deploy(deployed.agent.clone(), deployed.version.clone(), job)
            .await?;
        self.registry.insert(deployed.agent.clone(), prepared);
        for warning in &deployed.warnings {
            tracing::warn!(agent = %deployed.agent.name, version = deployed.version.version, "{warning}");
        }
        Ok(deployed)
    }
}

/// A stored component's bytes (checked against their content hash).
fn stored_component(blobs: &dyn BlobStore, hash: &str) -> Result<Vec<u8>, ComponentError> {
    blobs.get(hash).map_err(|e| {
        ComponentError::Unavailable(format!(
            "its component cannot be loaded ({e}) and no usable compiled copy exists; redeploy it"
        ))
    })
}

/// A failed blob write: a full disk is storage being unavailable, anything else
/// an internal failure.
fn stored_error(e: &anyhow::Error) -> ComponentError {
    if crate::files::disk_full(e) {
        ComponentError::StorageFull(format!("{e:#}"))
    } else {
        ComponentError::Internal(format!("{e:#}"))
    }
}
