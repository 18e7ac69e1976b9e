//! The store traits, on SQLite: writes become [`Write`]s for the writer thread,
//! reads become queries on the pool.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::apply::Write;
use super::{SqliteStore, read, summary};
use crate::events::{Event, EventSink};
use crate::record::{Agent, AgentSummary, AgentVersion, ApiKey, Artifact, Execution, LogLine, Status, Step};
use crate::store::{
    AgentStore, Backend, Commit, EventBudget, EventStore, ExecutionFilter, ExecutionStore, FinalRecord,
    IdempotencyRecord, IdempotencyStore, KeyStore, KvStore, StorageFailure, StoreError,
};

#[async_trait]
impl ExecutionStore for SqliteStore {
    fn save(&self, execution: Execution) -> Commit {
        self.write(Write::Execution(Box::new(execution)))
    }

    fn finish(&self, record: FinalRecord) -> Commit {
        serialize(&record.events);
        self.write(Write::Finish(Box::new(record)))
    }

    fn set_status(&self, id: &str, from: Status, to: Status) -> Commit {
        self.write(Write::Status {
            id: id.to_owned(),
            from,
            to,
        })
    }

    fn set_running(&self, id: &str, started_at: i64) -> Commit {
        self.write(Write::Running {
            id: id.to_owned(),
            started_at,
        })
    }

    fn link_retry(&self, id: &str, retried_by: &str) -> Commit {
        self.write(Write::LinkRetry {
            id: id.to_owned(),
            retried_by: retried_by.to_owned(),
        })
    }

    fn put_artifact(&self, artifact: Artifact) -> Commit {
        self.write(Write::Artifact(Box::new(artifact)))
    }

    fn sweep(&self, before: i64) -> Commit {
        self.write(Write::Sweep { before })
    }

    async fn get(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| read::execution(c, &id)).await
    }

    async fn workspace_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| read::execution_workspace(c, &id)).await
    }

    async fn list(&self, filter: ExecutionFilter) -> Result<(Vec<Execution>, bool), StoreError> {
        self.query(move |c| read::executions(c, &filter)).await
    }

    async fn unfinished(&self) -> Result<Vec<Execution>, StoreError> {
        self.query(read::unfinished_executions).await
    }

    async fn count(&self, status: Status) -> Result<u64, StoreError> {
        self.query(move |c| read::count(c, status)).await
    }

    async fn logs(&self, id: &str, after: u32, limit: u32) -> Result<(Vec<LogLine>, bool), StoreError> {
        let id = id.to_owned();
        self.query(move |c| read::logs(c, &id, after, limit)).await
    }

    async fn steps(&self, id: &str) -> Result<Vec<Step>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| read::steps(c, &id)).await
    }

    async fn artifacts(&self, execution_id: &str) -> Result<Vec<Artifact>, StoreError> {
        let id = execution_id.to_owned();
        self.query(move |c| read::artifacts(c, &id)).await
    }

    async fn artifact(&self, execution_id: &str, id: &str) -> Result<Option<Artifact>, StoreError> {
        let (execution_id, id) = (execution_id.to_owned(), id.to_owned());
        self.query(move |c| read::artifact(c, &execution_id, &id)).await
    }

    async fn summary(&self, agent_id: &str, since: i64) -> Result<AgentSummary, StoreError> {
        let agent_id = agent_id.to_owned();
        self.query(move |c| summary::summary(c, &agent_id, since)).await
    }
}

/// Makes the events' JSON here, on the caller's thread: the writer thread does
/// every write in turn, and should only copy it.
fn serialize(events: &[Arc<Event>]) {
    for event in events {
        event.json();
    }
}

impl EventSink for SqliteStore {
    fn append(&self, execution_id: &Arc<str>, events: Vec<Arc<Event>>) {
        serialize(&events);
        self.writer.send(Write::Events {
            execution_id: Arc::clone(execution_id),
            events,
        });
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn read(&self, execution_id: &str, after: u64, budget: EventBudget) -> Result<Vec<Arc<Event>>, StoreError> {
        let id = execution_id.to_owned();
        self.query(move |c| read::events(c, &id, after, budget)).await
    }

    async fn last_seq(&self, execution_id: &str) -> Result<u64, StoreError> {
        let id = execution_id.to_owned();
        self.query(move |c| read::last_event_seq(c, &id)).await
    }
}

#[async_trait]
impl AgentStore for SqliteStore {
    fn deploy(&self, agent: Agent, version: AgentVersion) -> Commit {
        self.write(Write::Deploy {
            agent,
            version: Box::new(version),
        })
    }

    async fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.query(read::agents).await
    }

    async fn versions(&self) -> Result<Vec<AgentVersion>, StoreError> {
        self.query(read::versions).await
    }

    fn record_compiled(&self, engine: &str, component_hash: &str, sha256: &str) -> Commit {
        self.write(Write::Compiled {
            engine: engine.to_owned(),
            component_hash: component_hash.to_owned(),
            sha256: sha256.to_owned(),
        })
    }

    async fn compiled(&self, engine: &str) -> Result<HashMap<String, String>, StoreError> {
        let engine = engine.to_owned();
        self.query(move |c| read::compiled(c, &engine)).await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    fn insert(&self, key: ApiKey, secret_sha256: String) -> Commit {
        self.write(Write::ApiKey { key, secret_sha256 })
    }

    async fn find(&self, id: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| read::key(c, &id)).await
    }

    async fn list(&self, workspace: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let workspace = workspace.map(str::to_owned);
        self.query(move |c| read::keys(c, workspace.as_deref())).await
    }

    async fn revoke(&self, id: &str, workspace: Option<&str>, at: i64) -> Result<Option<ApiKey>, StoreError> {
        self.write(Write::RevokeApiKey {
            id: id.to_owned(),
            workspace: workspace.map(str::to_owned),
            at,
        })
        .await?;
        let found = KeyStore::find(self, id).await?;
        Ok(found
            .map(|(key, _)| key)
            .filter(|key| workspace.is_none_or(|w| key.workspace == w)))
    }

    async fn any_active(&self) -> Result<bool, StoreError> {
        self.query(read::any_active_key).await
    }
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn get(&self, agent_id: &str, key: &str) -> Result<Option<String>, StoreError> {
        let (agent_id, key) = (agent_id.to_owned(), key.to_owned());
        self.query(move |c| read::kv_get(c, &agent_id, &key)).await
    }

    fn set(&self, agent_id: &str, key: &str, value: String, at: i64) -> Commit {
        self.write(Write::KvSet {
            agent_id: agent_id.to_owned(),
            key: key.to_owned(),
            value,
            updated_at: at,
        })
    }

    fn delete(&self, agent_id: &str, key: &str) -> Commit {
        self.write(Write::KvDelete {
            agent_id: agent_id.to_owned(),
            key: key.to_owned(),
        })
    }

    async fn list(&self, agent_id: &str, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let (agent_id, prefix) = (agent_id.to_owned(), prefix.to_owned());
        self.query(move |c| read::kv_list(c, &agent_id, &prefix, limit)).await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    fn put(&self, record: IdempotencyRecord) -> Commit {
        self.write(Write::IdempotencyKey(record))
    }

    fn forget(&self, key: &str, execution_id: &str) -> Commit {
        self.write(Write::ForgetIdempotencyKey {
            key: key.to_owned(),
            execution_id: execution_id.to_owned(),
        })
    }

    fn expire(&self, before: i64) -> Commit {
        self.write(Write::ExpireIdempotencyKeys { before })
    }

    async fn load(&self, since: i64) -> Result<Vec<IdempotencyRecord>, StoreError> {
        self.query(move |c| read::idempotency_keys(c, since)).await
    }
}

#[async_trait]
impl Backend for SqliteStore {
    fn version(&self) -> String {
        format!("sqlite {}", super::version())
    }

    fn failing(&self) -> Option<StorageFailure> {
        self.health.get()
    }

    async fn close(&self) {
        self.shutdown().await;
    }
}
