//! The running host: config, store, runtime, registry and execution slots, wired
//! once at start. Deploying lives here because it touches all of them; HTTP and
//! CLI concerns do not.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::agent::{Agent, AgentVersion};
use crate::auth::{Auth, DEFAULT_WORKSPACE, keys};
use crate::config::Config;
use crate::events::EventHub;
use crate::idempotency::IdempotencyKeys;
use crate::llm::Llm;
use crate::manifest::Manifest;
use crate::registry::{Registry, Version};
use crate::runtime::Runtime;
use crate::runtime::component::{ComponentError, check_header};
use crate::scheduler::{self, Scheduler};
use crate::store::blobs::sha256_hex;
use crate::store::writer::Write;
use crate::store::{Store, StoreError, read};
use crate::tools::Tools;
use crate::{bundled, ids, time};

pub struct App {
    pub config: Config,
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub registry: Registry,
    pub scheduler: Scheduler,
    pub idempotency: IdempotencyKeys,
    pub llm: Arc<Llm>,
    pub tools: Arc<Tools>,
    pub events: EventHub,
    pub auth: Auth,
    pub started: Instant,
    deploy_lock: Mutex<()>,
}

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

impl App {
    /// Opens the data dir, loads every deployed version (from the compiled cache,
    /// without recompiling) and, on a first start, deploys the bundled examples.
    pub async fn open(config: Config) -> anyhow::Result<Arc<App>> {
        config.validate()?;
        let store = Store::open(&config.data_dir)?;
        let any_key = store.read(|conn| Ok(keys::any_active(conn)?)).await?;
        if !any_key {
            anyhow::ensure!(
                config.addr.ip().is_loopback(),
                "refusing to serve on {} without API keys: anyone who can reach it could run code here. \
                 Create a key first (`warden keys create --workspace <name> --name <name> --admin`) \
                 or listen on a loopback address",
                config.addr
            );
            tracing::warn!(
                "no API keys exist: serving open on loopback, every request acts as the `default` workspace's admin"
            );
        }
        let runtime = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || Runtime::new(&config)).await??
        };
        let app = Arc::new(App {
            scheduler: Scheduler::new(&config),
            idempotency: IdempotencyKeys::new(config.idempotency_ttl_secs),
            llm: Arc::new(Llm::new(&config.llm, &config.pricing)?),
            tools: Arc::new(Tools::new(config.tools.clone())?),
            events: EventHub::default(),
            auth: Auth::new(config.auth.clone(), any_key),
            config,
            store,
            runtime: Arc::new(runtime),
            registry: Registry::default(),
            started: Instant::now(),
            deploy_lock: Mutex::new(()),
        });
        app.tools.attach(&app);
        app.load_deployed().await?;
        let since = time::now_ms() - app.idempotency.ttl_ms();
        app.idempotency
            .load(app.store.read(move |conn| read::idempotency_keys(conn, since)).await?);
        scheduler::recover(&app).await?;
        tokio::spawn(expire_idempotency_keys(Arc::downgrade(&app)));
        if app.config.retention_secs > 0 {
            tokio::spawn(sweep_old_executions(Arc::downgrade(&app)));
        }
        if app.config.deploy_examples && app.registry.is_empty() {
            for example in bundled::EXAMPLES {
                let manifest = Manifest::from_json(example.manifest)
                    .map_err(|e| anyhow::anyhow!("bundled example {}: {e}", example.name))?;
                app.deploy(DEFAULT_WORKSPACE, manifest, Bytes::from_static(example.wasm))
                    .await
                    .map_err(|e| anyhow::anyhow!("deploying bundled example {}: {e}", example.name))?;
                tracing::info!(agent = example.name, "deployed bundled example");
            }
        }
        Ok(app)
    }

    async fn load_deployed(&self) -> anyhow::Result<()> {
        let (agents, versions) = self
            .store
            .read(|conn| Ok((read::agents(conn)?, read::versions(conn)?)))
            .await?;
        let runtime = Arc::clone(&self.runtime);
        let blobs = self.store.blobs.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            versions
                .into_iter()
                .map(|meta| {
                    let pre = runtime.prepare(&meta.component_hash, || blobs.get(&meta.component_hash));
                    (meta, pre)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        for (meta, pre) in prepared {
            let Some(agent) = agents.iter().find(|a| a.id == meta.agent_id) else {
                continue;
            };
            match pre
                .map_err(|e| e.to_string())
                .and_then(|(pre, _)| Version::new(meta.clone(), pre))
            {
                Ok(version) => self.registry.insert(agent.clone(), version),
                Err(e) => tracing::error!(agent = %agent.name, version = meta.version, error = %e,
                    "deployed version could not be loaded; it cannot run until redeployed"),
            }
        }
        Ok(())
    }

    /// Validates, compiles and records a new version of the manifest's agent in
    /// `workspace`.
    pub async fn deploy(
        &self,
        workspace: &str,
        manifest: Manifest,
        bytes: Bytes,
    ) -> Result<(Agent, AgentVersion), DeployError> {
        manifest.validate().map_err(DeployError::Manifest)?;
        check_header(&bytes)?;
        let runtime = Arc::clone(&self.runtime);
        let blobs = self.store.blobs.clone();
        let (hash, pre) = tokio::task::spawn_blocking(move || {
            let hash = sha256_hex(&bytes);
            let (pre, _) = runtime.prepare(&hash, || Ok(bytes.to_vec()))?;
            blobs
                .put(&hash, &bytes)
                .map_err(|e| ComponentError::Internal(format!("{e:#}")))?;
            Ok::<_, ComponentError>(((hash, bytes.len() as u64), pre))
        })
        .await
        .map_err(|e| DeployError::Internal(e.into()))??;

        let _guard = self.deploy_lock.lock().await;
        let now = time::now_ms();
        let existing = self.registry.get(workspace, &manifest.name);
        let (mut agent, number) = match existing {
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
            limits: manifest.effective_limits(&self.config.limits, self.config.max_concurrent_executions),
            manifest,
            component_hash: hash.0,
            component_size: hash.1,
            created_at: now,
        };
        let prepared = Version::new(version.clone(), pre).map_err(DeployError::Manifest)?;
        self.store
            .writer
            .commit(Write::Deploy {
                agent: agent.clone(),
                version: Box::new(version.clone()),
            })
            .await?;
        self.registry.insert(agent.clone(), prepared);
        Ok((agent, version))
    }

    /// Commits what is queued and stops the writer. Call after the server stops.
    pub async fn close(&self) {
        self.store.close().await;
    }
}

/// Forgets expired idempotency keys every few minutes, for as long as the app lives.
async fn expire_idempotency_keys(app: std::sync::Weak<App>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        let before = app.idempotency.expire(time::now_ms());
        app.store.writer.send(Write::ExpireIdempotencyKeys { before });
    }
}

/// Deletes finished executions past the retention time, for as long as the app
/// lives.
async fn sweep_old_executions(app: std::sync::Weak<App>) {
    let every = match app.upgrade() {
        Some(app) => std::time::Duration::from_millis(app.config.retention_sweep_ms.max(1)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        let keep_ms = (app.config.retention_secs.min(i64::MAX as u64 / 1000) * 1000) as i64;
        let before = time::now_ms() - keep_ms;
        if let Err(e) = app.store.writer.commit(Write::Sweep { before }).await {
            tracing::warn!(error = %e, "retention sweep failed");
        }
    }
}
