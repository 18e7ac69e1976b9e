//! The running host: every part built once, at start, and wired together (the
//! store, the runtime, the registry, deploys, executions, memory, schedules,
//! auth). The API holds
//! the app; nothing below it does: each part gets the narrow handles it needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::{Auth, DEFAULT_WORKSPACE};
use crate::bundled;
use crate::config::Config;
use crate::deploy::Deployer;
use crate::executions::{Executions, Parts};
use crate::llm::Llm;
use crate::manifest::Manifest;
use crate::memory::Memory;
use crate::ports::TraceSink;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::schedules::Schedules;
use crate::store::Stores;
use crate::tools::Tools;
use crate::webhooks::Webhooks;
use crate::webhooks::outgoing::Outgoing;

pub struct App {
    pub config: Config,
    pub stores: Stores,
    pub runtime: Arc<Runtime>,
    pub registry: Arc<Registry>,
    pub deployer: Arc<Deployer>,
    pub executions: Arc<Executions>,
    pub memory: Arc<Memory>,
    pub schedules: Arc<Schedules>,
    pub webhooks: Webhooks,
    pub outgoing: Arc<Outgoing>,
    pub auth: Auth,
    /// Where ended executions' traces go (OTLP export), if anywhere.
    pub traces: Option<Arc<dyn TraceSink>>,
    pub started: Instant,
}

impl App {
    /// Opens the data dir, loads every deployed version (from the compiled cache,
    /// without recompiling), recovers what a restart interrupted and, on a first
    /// start, deploys the bundled examples.
    pub async fn open(config: Config) -> anyhow::Result<Arc<App>> {
        config.validate()?;
        if config.metrics.enabled {
            crate::metrics::install();
        }
        let stores = Stores::connect(&config.data_dir, &config.store).await?;
        if let Some(lease) = stores.backend.lease() {
            // On a shared store, this host's lease comes first.
            stores.backend.heartbeat().await?;
            tokio::spawn(beat(Arc::clone(&stores.backend), lease));
        }
        let auth = Auth::new(config.auth.clone(), Arc::clone(&stores.keys)).await?;
        if auth.is_open() {
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
            Arc::new(tokio::task::spawn_blocking(move || Runtime::new(&config)).await??)
        };
        let registry = Arc::new(Registry::default());
        let llm = Arc::new(Llm::new(&config.llm, &config.pricing)?);
        let deployer = Arc::new(Deployer::new(
            &config,
            &stores,
            Arc::clone(&runtime),
            Arc::clone(&registry),
            Arc::clone(&llm),
        ));
        deployer.load().await?;
        // Deploys made in the background that a restart cut short go on.
        deployer.resume(true).await?;
        let memory = Arc::new(Memory::new(&stores, config.memory));
        let outgoing = Outgoing::open(&stores, config.webhooks.clone(), config.retention_secs).await?;
        #[cfg(feature = "otlp")]
        let traces = crate::otlp::Exporter::start(&config.otlp, Arc::clone(&stores.approvals))?
            .map(|exporter| exporter as Arc<dyn TraceSink>);
        // Without the feature, `validate` refused an endpoint: there is none.
        #[cfg(not(feature = "otlp"))]
        let traces: Option<Arc<dyn TraceSink>> = None;
        let executions = Executions::new(
            &config,
            &stores,
            Parts {
                registry: Arc::clone(&registry),
                runtime: Arc::clone(&runtime),
                llm,
                tools: Arc::new(Tools::new(config.tools.clone(), &config.mcp, Arc::clone(&stores.kv))?),
                memory: Arc::clone(&memory),
                outbox: Arc::clone(&outgoing) as Arc<dyn crate::ports::Outbox>,
                traces: traces.clone(),
            },
        );
        executions.start().await?;
        let schedules = Schedules::new(&stores, Arc::clone(&executions), Arc::clone(&registry));
        schedules.start();
        outgoing.start(executions.closing());
        let webhooks = Webhooks::new(&stores, Arc::clone(&executions), Arc::clone(&registry));
        if config.deploy_examples && registry.is_empty() {
            for example in bundled::EXAMPLES {
                let manifest = Manifest::from_json(example.manifest)
                    .map_err(|e| anyhow::anyhow!("bundled example {}: {e}", example.name))?;
                let deployed = deployer
                    .deploy(DEFAULT_WORKSPACE, manifest, Bytes::from_static(example.wasm))
                    .await;
                match deployed {
                    Ok(_) => tracing::info!(agent = example.name, "deployed bundled example"),
                    // Another host on the shared store deployed them at once.
                    Err(e) if stores.backend.lease().is_some() => {
                        deployer.load().await?;
                        anyhow::ensure!(
                            registry.get(DEFAULT_WORKSPACE, example.name).is_some(),
                            "deploying bundled example {}: {e}",
                            example.name
                        );
                    }
                    Err(e) => anyhow::bail!("deploying bundled example {}: {e}", example.name),
                }
            }
        }
        let app = Arc::new(App {
            config,
            stores,
            runtime,
            registry,
            deployer,
            executions,
            memory,
            schedules,
            webhooks,
            outgoing,
            auth,
            traces,
            started: Instant::now(),
        });
        if let Some(lease) = app.stores.backend.lease() {
            tokio::spawn(share(Arc::downgrade(&app), lease));
        }
        Ok(app)
    }

    /// On SIGTERM or SIGINT: refuses new executions and starts nothing more,
    /// lets what runs finish within `shutdown_grace_ms`, then ends every stream
    /// and answers every caller still waiting. The server stops after this.
    pub async fn drain(&self) {
        self.executions.drain();
        // Another host leads from its next heartbeat, and runs what this one
        // claimed and will not start.
        self.stores.backend.resign().await;
        self.executions.give_back().await;
        tracing::info!(
            grace_ms = self.config.shutdown_grace_ms,
            "draining: new executions are refused"
        );
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let still = self.executions.wait_idle(grace).await;
        if still > 0 {
            tracing::warn!(running = still, "the grace is over; what still runs ends as on a crash");
        }
        self.executions.close();
    }

    /// Commits what is queued and stops the store. Call after the server stops.
    pub async fn close(&self) {
        if let Some(traces) = &self.traces {
            traces.flush().await;
        }
        self.stores.close().await;
    }
}

/// On a store several hosts share, three times a lease: renews this host's
/// lease (and the lead), on its own so that nothing slow delays it, from the
/// first beat until the store closes (a draining host's runs keep their lease
/// to the end).
async fn beat(backend: Arc<dyn crate::store::Backend>, lease: Duration) {
    let mut beat = tokio::time::interval(lease / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    loop {
        beat.tick().await;
        match backend.heartbeat().await {
            Ok(()) => {}
            Err(crate::store::StoreError::Closed) => return,
            Err(e) => tracing::error!(error = %e, "could not renew this host's lease"),
        }
    }
}

/// On a store several hosts share, three times a lease: loads the versions
/// other hosts deployed and the webhook subscriptions as they are, hands
/// decisions made on other hosts to the runs here that wait for them, stops
/// the runs other hosts were asked to cancel and those other hosts took over,
/// and takes over the deploys and executions of hosts whose lease ran out.
/// Ends with the app.
async fn share(app: std::sync::Weak<App>, lease: Duration) {
    let mut beat = tokio::time::interval(lease / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let Some(app) = app.upgrade() else { return };
        if let Err(e) = app.deployer.load().await {
            tracing::warn!(error = %format!("{e:#}"), "could not load the versions other hosts deployed");
        }
        if let Err(e) = app.outgoing.reload().await {
            tracing::warn!(error = %format!("{e:#}"), "could not read the webhook subscriptions again");
        }
        if let Err(e) = app.executions.take_decisions().await {
            tracing::warn!(error = %format!("{e:#}"), "could not read the decisions made on other hosts");
        }
        if let Err(e) = app.executions.cancel_asked().await {
            tracing::warn!(error = %e, "could not read the cancels asked on other hosts");
        }
        if let Err(e) = app.executions.surrender_taken().await {
            tracing::warn!(error = %e, "could not look for executions other hosts took over");
        }
        if let Err(e) = app.deployer.resume(false).await {
            tracing::warn!(error = %e, "could not take over the deploys of stopped hosts");
        }
        if let Err(e) = app.executions.adopt().await {
            tracing::warn!(error = %format!("{e:#}"), "could not take over the executions of stopped hosts");
        }
    }
}
