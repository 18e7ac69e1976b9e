//! The store traits' reads on Postgres, for executions, events, agents and
//! their deploys, API keys, the kv tool and idempotency keys: each a query on
//! a pooled connection. Writes are the traits' own (queued [`Write`]s); events are
//! appended here, to the same queue.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{PgStore, deploys, hosts, read, read_error, summary};
use crate::events::{Event, EventSink};
use crate::record::{Agent, AgentSummary, AgentVersion, ApiKey, Artifact, DeployJob, Execution, LogLine, Status, Step};
use crate::store::{
    AgentStore, EventBudget, EventStore, ExecutionFilter, ExecutionStore, KeyStore, KvStore, StoreError, Write,
    serialize,
};

#[async_trait]
impl ExecutionStore for PgStore {
    async fn get(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        let c = self.reader().await?;
        read::execution(&c, id).await.map_err(read_error)
    }

    async fn workspace_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        let c = self.reader().await?;
        read::execution_workspace(&c, id).await.map_err(read_error)
    }

    async fn list(&self, filter: ExecutionFilter) -> Result<(Vec<Execution>, bool), StoreError> {
        let c = self.reader().await?;
        read::executions(&c, &filter).await.map_err(read_error)
    }

    async fn unfinished(&self) -> Result<Vec<Execution>, StoreError> {
        let c = self.reader().await?;
        hosts::take(&c, &self.host, true).await.map_err(read_error)
    }

    async fn held_elsewhere(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.reader().await?;
        hosts::held_elsewhere(&c, &self.host, id).await.map_err(read_error)
    }

    async fn cancels_asked(&self) -> Result<Vec<String>, StoreError> {
        let c = self.reader().await?;
        hosts::cancels_asked(&c, &self.host).await.map_err(read_error)
    }

    async fn orphans(&self) -> Result<Vec<Execution>, StoreError> {
        let c = self.reader().await?;
        hosts::take(&c, &self.host, false).await.map_err(read_error)
    }

    async fn count(&self, status: Status) -> Result<u64, StoreError> {
        let c = self.reader().await?;
        read::count(&c, status).await.map_err(read_error)
    }

    async fn logs(&self, id: &str, after: u32, limit: u32) -> Result<(Vec<LogLine>, bool), StoreError> {
        let c = self.reader().await?;
        read::logs(&c, id, after, limit).await.map_err(read_error)
    }

    async fn steps(&self, id: &str) -> Result<Vec<Step>, StoreError> {
        let c = self.reader().await?;
        read::steps(&c, id).await.map_err(read_error)
    }

    async fn artifacts(&self, execution_id: &str) -> Result<Vec<Artifact>, StoreError> {
        let c = self.reader().await?;
        read::artifacts(&c, execution_id).await.map_err(read_error)
    }

    async fn artifact(&self, execution_id: &str, id: &str) -> Result<Option<Artifact>, StoreError> {
        let c = self.reader().await?;
        read::artifact(&c, execution_id, id).await.map_err(read_error)
    }

    async fn summary(&self, agent_id: &str, since: i64) -> Result<AgentSummary, StoreError> {
        let c = self.reader().await?;
        summary::summary(&c, agent_id, since).await.map_err(read_error)
    }
}

impl EventSink for PgStore {
    fn append(&self, execution_id: &Arc<str>, events: Vec<Arc<Event>>) {
        // The events' JSON is made here, on the caller's thread: the writer
        // thread does every write in turn, and should only copy it.
        serialize(&events);
        self.send(Write::Events {
            execution_id: Arc::clone(execution_id),
            events,
        });
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn read(&self, execution_id: &str, after: u64, budget: EventBudget) -> Result<Vec<Arc<Event>>, StoreError> {
        let c = self.reader().await?;
        read::events(&c, execution_id, after, budget).await.map_err(read_error)
    }

    async fn last_seq(&self, execution_id: &str) -> Result<u64, StoreError> {
        let c = self.reader().await?;
        read::last_event_seq(&c, execution_id).await.map_err(read_error)
    }
}

#[async_trait]
impl AgentStore for PgStore {
    async fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        let c = self.reader().await?;
        read::agents(&c).await.map_err(read_error)
    }

    async fn versions(&self) -> Result<Vec<AgentVersion>, StoreError> {
        let c = self.reader().await?;
        read::versions(&c).await.map_err(read_error)
    }

    async fn compiled(&self, engine: &str) -> Result<HashMap<String, String>, StoreError> {
        let c = self.reader().await?;
        read::compiled(&c, engine).await.map_err(read_error)
    }

    async fn deploy_job(&self, id: &str) -> Result<Option<DeployJob>, StoreError> {
        let c = self.reader().await?;
        deploys::get(&c, id).await.map_err(read_error)
    }

    async fn take_deploy_jobs(&self, mine: bool) -> Result<Vec<DeployJob>, StoreError> {
        let c = self.reader().await?;
        deploys::take(&c, &self.host, mine).await.map_err(read_error)
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn find(&self, id: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
        let c = self.reader().await?;
        read::key(&c, id).await.map_err(read_error)
    }

    async fn list(&self, workspace: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let c = self.reader().await?;
        read::keys(&c, workspace).await.map_err(read_error)
    }

    async fn any_active(&self) -> Result<bool, StoreError> {
        let c = self.reader().await?;
        read::any_active_key(&c).await.map_err(read_error)
    }
}

#[async_trait]
impl KvStore for PgStore {
    async fn get(&self, agent_id: &str, key: &str) -> Result<Option<String>, StoreError> {
        let c = self.reader().await?;
        read::kv_get(&c, agent_id, key).await.map_err(read_error)
    }

    async fn list(&self, agent_id: &str, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let c = self.reader().await?;
        read::kv_list(&c, agent_id, prefix, limit).await.map_err(read_error)
    }
}
