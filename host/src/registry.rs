//! Deployed agents in memory: each agent with its versions, each version with its
//! prepared component (`AgentPre`), or why it cannot run. Filled from the store at start and by deploys;
//! lookups on the execute path take a read lock and clone an `Arc`. Every lookup
//! a caller can make names its workspace: another workspace's agent is not found.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::manifest::{InputError, InputSchema};
use crate::record::{Agent, AgentVersion};
use crate::runtime::{AgentPre, RunState};
use serde_json::value::RawValue;

/// The longest an input's check against a schema may take.
const INPUT_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A deployed version: ready to instantiate, or why it cannot run.
pub struct Version {
    pub meta: AgentVersion,
    /// The prepared component, or why it could not be loaded (its blob is
    /// missing or damaged and no usable compiled copy exists).
    pub pre: Result<AgentPre<RunState>, String>,
    /// The manifest's `input_schema`, compiled.
    pub input_schema: Option<InputSchema>,
}

impl Version {
    /// Checks an input against the version's `input_schema`, off the async
    /// workers (a schema's patterns are the deployer's) and within
    /// [`INPUT_CHECK_TIMEOUT`] (its cost was bounded at deploy; this is the
    /// backstop).
    pub async fn check_input(self: &Arc<Self>, input: &Arc<RawValue>) -> Result<(), Vec<InputError>> {
        if self.input_schema.is_none() {
            return Ok(());
        }
        let version = Arc::clone(self);
        let input = Arc::clone(input);
        let checked = tokio::time::timeout(
            INPUT_CHECK_TIMEOUT,
            tokio::task::spawn_blocking(move || {
                let value: serde_json::Value = serde_json::from_str(input.get()).unwrap_or_default();
                match &version.input_schema {
                    Some(schema) => schema.check(&value),
                    None => Ok(()),
                }
            }),
        )
        .await;
        let failed = |message: String| {
            Err(vec![InputError {
                path: String::new(),
                message,
            }])
        };
        match checked {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => failed(format!("the input could not be checked: {e}")),
            Err(_) => failed(format!(
                "checking the input against the agent's input_schema took longer than {} ms",
                INPUT_CHECK_TIMEOUT.as_millis()
            )),
        }
    }

    /// A deployed version, its manifest's input schema compiled.
    pub fn new(meta: AgentVersion, pre: AgentPre<RunState>) -> Result<Self, String> {
        let input_schema = meta.manifest.input_schema()?;
        Ok(Self {
            meta,
            pre: Ok(pre),
            input_schema,
        })
    }

    /// A deployed version that cannot run, and why (it stays listed).
    pub fn unavailable(meta: AgentVersion, reason: String) -> Self {
        Self {
            meta,
            pre: Err(reason),
            input_schema: None,
        }
    }
}

pub struct Entry {
    pub agent: Agent,
    /// Index `v - 1` holds version `v`.
    pub versions: Vec<Arc<Version>>,
}

impl Entry {
    pub fn latest(&self) -> Option<&Arc<Version>> {
        self.versions.last()
    }

    pub fn version(&self, v: u32) -> Option<&Arc<Version>> {
        self.versions.get((v as usize).checked_sub(1)?)
    }
}

pub struct Registry {
    inner: RwLock<Inner>,
    /// The workspace of each deploy, as it happens (for lists that follow them).
    deployed: tokio::sync::broadcast::Sender<String>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            deployed: tokio::sync::broadcast::channel(64).0,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Entries are replaced whole on deploy, so readers clone an `Arc`.
    by_id: HashMap<String, Arc<Entry>>,
    /// (workspace, name) → agent id.
    id_by_name: HashMap<(String, String), String>,
    /// Agent id of each version id.
    agent_of_version: HashMap<String, String>,
}

impl Registry {
    /// Finds an agent of `workspace` by id (`agt_...`) or by name.
    pub fn get(&self, workspace: &str, id_or_name: &str) -> Option<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let id = match inner.id_by_name.get(&(workspace.to_owned(), id_or_name.to_owned())) {
            Some(id) => id.as_str(),
            None => id_or_name,
        };
        inner.by_id.get(id).filter(|e| e.agent.workspace == workspace).cloned()
    }

    /// The workspace of an agent (any workspace's; for checking ownership).
    /// The id of a workspace's agent named `id_or_name` (the text itself when
    /// there is none: a filter that matches nothing).
    pub fn agent_id(&self, workspace: &str, id_or_name: String) -> String {
        self.get(workspace, &id_or_name)
            .map(|e| e.agent.id.clone())
            .unwrap_or(id_or_name)
    }

    pub fn workspace_of(&self, agent_id: &str) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.by_id.get(agent_id).map(|e| e.agent.workspace.clone())
    }

    /// How many runs of an agent may run at once (its latest version's limit).
    pub fn max_concurrency(&self, agent_id: &str) -> Option<usize> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let latest = inner.by_id.get(agent_id)?.latest()?;
        Some(latest.meta.limits.max_concurrency as usize)
    }

    /// The ids of every version this host can run.
    pub fn runnable_versions(&self) -> Vec<String> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .by_id
            .values()
            .flat_map(|e| e.versions.iter().filter(|v| v.pre.is_ok()).map(|v| v.meta.id.clone()))
            .collect()
    }

    /// Finds a version by its id, with its agent.
    pub fn version(&self, version_id: &str) -> Option<(Arc<Entry>, Arc<Version>)> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let entry = inner.by_id.get(inner.agent_of_version.get(version_id)?)?;
        let version = entry.versions.iter().find(|v| v.meta.id == version_id)?;
        Some((Arc::clone(entry), Arc::clone(version)))
    }

    /// Adds a version (and the agent, the first time).
    pub fn insert(&self, agent: Agent, version: Version) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner
            .id_by_name
            .insert((agent.workspace.clone(), agent.name.clone()), agent.id.clone());
        inner.agent_of_version.insert(version.meta.id.clone(), agent.id.clone());
        let mut versions = inner
            .by_id
            .get(&agent.id)
            .map(|e| e.versions.clone())
            .unwrap_or_default();
        versions.push(Arc::new(version));
        versions.sort_by_key(|v| v.meta.version);
        let workspace = agent.workspace.clone();
        inner
            .by_id
            .insert(agent.id.clone(), Arc::new(Entry { agent, versions }));
        drop(inner);
        // Nobody listening is fine.
        let _ = self.deployed.send(workspace);
    }

    /// Hears the workspace of every deploy from now on.
    pub fn deploys(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.deployed.subscribe()
    }

    /// Every agent of a workspace, by name.
    pub fn list(&self, workspace: &str) -> Vec<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut entries: Vec<Arc<Entry>> = inner
            .by_id
            .values()
            .filter(|e| e.agent.workspace == workspace)
            .cloned()
            .collect();
        entries.sort_by(|a, b| a.agent.name.cmp(&b.agent.name));
        entries
    }

    /// Versions that cannot run, host-wide.
    pub fn unavailable(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .by_id
            .values()
            .map(|e| e.versions.iter().filter(|v| v.pre.is_err()).count())
            .sum()
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
