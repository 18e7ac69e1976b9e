//! The store traits, on SQLite: writes become [`Write`]s for the writer thread,
//! reads become queries on the pool.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{SqliteStore, deploys, read, summary};
use crate::events::{Event, EventSink};
use crate::record::{Agent, AgentSummary, AgentVersion, ApiKey, Artifact, DeployJob, Execution, LogLine, Status, Step};
use crate::store::Write;
use crate::store::{
    AgentStore, Backend, EventBudget, EventStore, ExecutionFilter, ExecutionStore, IdempotencyRecord, IdempotencyStore,
    KeyStore, KvStore, StorageFailure, StoreError,
};

/// One host: its executions wait in its own queue.
impl crate::store::Claims for SqliteStore {}

#[async_trait]
impl ExecutionStore for SqliteStore {
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

impl EventSink for SqliteStore {
    fn append(&self, execution_id: &Arc<str>, events: Vec<Arc<Event>>) {
        crate::store::serialize(&events);
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
    async fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.query(read::agents).await
    }

    async fn versions(&self) -> Result<Vec<AgentVersion>, StoreError> {
        self.query(read::versions).await
    }

    async fn compiled(&self, engine: &str) -> Result<HashMap<String, String>, StoreError> {
        let engine = engine.to_owned();
        self.query(move |c| read::compiled(c, &engine)).await
    }

    async fn deploy_job(&self, id: &str) -> Result<Option<DeployJob>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| deploys::get(c, &id)).await
    }

    async fn take_deploy_jobs(&self, mine: bool) -> Result<Vec<DeployJob>, StoreError> {
        if !mine {
            return Ok(Vec::new());
        }
        self.query(deploys::compiling).await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn find(&self, id: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| read::key(c, &id)).await
    }

    async fn list(&self, workspace: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let workspace = workspace.map(str::to_owned);
        self.query(move |c| read::keys(c, workspace.as_deref())).await
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

    async fn list(&self, agent_id: &str, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let (agent_id, prefix) = (agent_id.to_owned(), prefix.to_owned());
        self.query(move |c| read::kv_list(c, &agent_id, &prefix, limit)).await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
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
