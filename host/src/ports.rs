//! Ports: what a run may reach beyond its sandbox, as traits. The runtime's
//! capabilities and the built-in tools call them; higher layers implement them
//! (the tools, the execution service, the store) and hand them to each run, so
//! nothing below reaches back up.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::manifest::McpServer;
use crate::record::{Approval, Artifact, ExecError, Execution, Status, Step};

/// What a tool call knows about its caller, and the run's ports it may use.
#[derive(Clone)]
pub struct ToolCtx {
    pub agent_id: String,
    /// The agent's workspace.
    pub workspace: String,
    pub execution_id: String,
    /// The run's W3C trace: its outgoing calls carry it in `traceparent`.
    pub trace_id: Option<String>,
    /// The span of the tool call under way (see [`crate::trace::span_id`]).
    pub span_id: Option<String>,
    /// 0 for an execution nobody called; a child's is its parent's plus one.
    pub depth: u32,
    pub allowed_hosts: std::sync::Arc<[String]>,
    /// The MCP servers the agent's manifest names.
    pub mcp_servers: Arc<[McpServer]>,
    /// Where the call may store files, as artifacts of the run (within its caps).
    pub artifacts: Arc<dyn Artifacts>,
    /// How the call may run other agents (`agent_call`).
    pub children: Arc<dyn AgentCalls>,
    /// The id an `agent_call` gives its child (fixed before the call, in a
    /// durable run's journal): if that child exists already, the call
    /// reattaches to it.
    pub child_id: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Failed(String),
}

/// A tool's name, description and argument schema, as the guest lists them.
#[derive(Debug, Clone, Copy)]
pub struct ToolInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: &'static str,
}

/// A tool of an MCP server, as its server lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListedTool {
    pub name: String,
    pub description: String,
    /// The input schema, as JSON text.
    pub parameters: String,
}

/// The built-in tools, and those of the agent's MCP servers (`mcp.<server>.<tool>`).
#[async_trait]
pub trait ToolHost: Send + Sync {
    /// Every tool there is (a manifest picks among them).
    fn catalog(&self) -> &'static [ToolInfo];
    /// How far a call with these arguments reaches beyond the run's sandbox.
    fn reach(&self, name: &str, args: &Value) -> Reach;
    /// Whether a call with these arguments only reads, so that making it again
    /// (after a crash cut it short) does no harm.
    fn repeatable(&self, name: &str, args: &Value) -> bool;
    /// Runs one tool. The caller checked that the agent may use it.
    async fn call(&self, ctx: &ToolCtx, name: &str, args: Value) -> Result<Value, ToolError>;
    /// The tools of one of the agent's MCP servers.
    async fn list_mcp(&self, ctx: &ToolCtx, server: &McpServer) -> Result<Vec<ListedTool>, ToolError>;
    /// Sends a guest's outgoing `wasi:http` request under the `http_fetch`
    /// policy (allowlist, address rules, caps).
    async fn send_http(
        &self,
        ctx: &ToolCtx,
        request: http::Request<bytes::Bytes>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
    ) -> Result<http::Response<wasmtime_wasi_http::WasiBody>, wasmtime_wasi_http::Error>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error(transparent)]
    Refused(#[from] EffectRefused),
}

/// How far an effect of a run reaches beyond its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Nowhere: it only reads.
    Nothing,
    /// Into the host's own store: a write there is committed in the order the
    /// writes were made, so never before the run's start, made first.
    Store,
    /// Anywhere else (a model, the network, a browser, another agent): the run's
    /// start must be committed first.
    Outside,
}

/// What a run does before anything it does could leave its sandbox: make its
/// start durable first, so that a host that dies from then on never starts it
/// again.
#[async_trait]
pub trait Effects: Send + Sync {
    /// Makes the run's start (the first call makes it; later ones find it), and
    /// for [`Reach::Outside`] waits until it is committed. An error: the effect
    /// must not happen.
    async fn before_effect(&self, reach: Reach) -> Result<(), EffectRefused>;
    /// The run leaves state in the store now (its journal): its start and its
    /// events so far are written first.
    fn keep(&self);
}

/// The run's start could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the host could not record that this run started ({0}), so it does not act beyond its sandbox")]
pub struct EffectRefused(pub String);

/// One run's artifacts: stores a file within the run's caps and announces it.
#[async_trait]
pub trait Artifacts: Send + Sync {
    /// How many the run has stored so far.
    fn stored(&self) -> usize;
    async fn put(&self, name: String, media_type: String, data: Vec<u8>) -> Result<Artifact, ArtifactError> {
        self.put_as(None, true, name, media_type, data).await
    }
    /// Stores it under `id` (one fixed in the run's journal; a put made again
    /// after a restart stores the same artifact) or a new one, announcing it
    /// when `announce`.
    async fn put_as(
        &self,
        id: Option<String>,
        announce: bool,
        name: String,
        media_type: String,
        data: Vec<u8>,
    ) -> Result<Artifact, ArtifactError>;
}

/// Where artifacts are kept: the bytes as a blob, the record as a row.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores the bytes of an artifact of `execution_id` under `id` (or a new
    /// id); returns its record.
    async fn store(
        &self,
        execution_id: &str,
        id: Option<String>,
        name: String,
        media_type: String,
        data: Vec<u8>,
    ) -> anyhow::Result<Artifact>;
}

/// How a child execution ended.
pub struct ChildOutcome {
    pub execution_id: String,
    pub status: Status,
    pub output: Option<std::sync::Arc<RawValue>>,
    pub error: Option<ExecError>,
}

/// Child executions: another agent of the caller's workspace, run for a tool call.
#[async_trait]
pub trait AgentCalls: Send + Sync {
    /// Runs `agent` (by id or name) with `input` as a child of `ctx`'s execution
    /// and waits for its end.
    async fn call(&self, ctx: &ToolCtx, agent: &str, input: Box<RawValue>) -> Result<ChildOutcome, ToolError>;
}

/// A run's approval requests: stored for a person to decide, and waited for.
#[async_trait]
pub trait ApprovalDesk: Send + Sync {
    /// Stores a request (a replay finds it stored already) and marks the run
    /// `awaiting_approval`; waits until that is stored. `announce`: emit the
    /// status and `approval` events (not again for a request reopened).
    async fn open(&self, approval: Approval, announce: bool) -> Result<(), EffectRefused>;
    /// A request as stored.
    async fn get(&self, id: &str) -> Result<Option<Approval>, EffectRefused>;
    /// Waits up to `grace` for a decision; `None`: still pending.
    async fn wait(&self, id: &str, grace: std::time::Duration) -> Option<Approval>;
    /// The run goes on after a decision: `running` again, the decision announced.
    async fn decided(&self, approval: &Approval);
}

/// A memory a run may use: a conversation's session memory or a memory store
/// (its id), with its cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub id: String,
    /// Most bytes its keys and values may take, all told.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum MemoryError {
    /// A key or value the host does not accept.
    #[error("{0}")]
    Invalid(String),
    /// Over a cap (the value's size, or the memory's bytes).
    #[error("{0}")]
    LimitExceeded(String),
    /// Storage failed.
    #[error("{0}")]
    Unavailable(String),
    /// The memory is gone (its store or conversation was deleted).
    #[error("{0}")]
    Gone(String),
}

/// Memories and conversation history, as runs reach them.
#[async_trait]
pub trait Memories: Send + Sync {
    /// A value (JSON text).
    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<String>, MemoryError>;
    /// Sets a value (JSON text), within the key, value and scope caps.
    async fn put(&self, scope: &Scope, key: &str, value: &str) -> Result<(), MemoryError>;
    /// Deletes a key; whether it was there.
    async fn remove(&self, scope: &Scope, key: &str) -> Result<bool, MemoryError>;
    /// Keys starting with `prefix`, in order, at most `limit`.
    async fn keys(&self, scope: &Scope, prefix: &str, limit: u32) -> Result<Vec<String>, MemoryError>;
    /// A conversation's newest turns within the budget, oldest first, and
    /// whether older ones were left out.
    async fn history(
        &self,
        conversation_id: &str,
        max_turns: u32,
        max_tokens: u64,
    ) -> Result<(Vec<crate::record::Turn>, bool), MemoryError>;
}

/// Where events go out as webhooks: the deliveries owed to a workspace's
/// subscriptions (stored by the caller with what they announce), and a nudge
/// once they are stored.
pub trait Outbox: Send + Sync {
    /// The deliveries of `event` of `workspace` (none without a subscriber;
    /// `data` is made only when there is one).
    fn deliveries(&self, workspace: &str, event: &str, data: &dyn Fn() -> String) -> Vec<crate::record::Delivery>;
    /// Deliveries were stored: send them.
    fn stored(&self);
}

/// Where ended executions' span trees go (OTLP export): told of each end once
/// it is stored; never waited for, so a slow collector never slows a run.
#[async_trait::async_trait]
pub trait TraceSink: Send + Sync {
    /// An end of `execution`, stored with its `steps`.
    fn ended(&self, execution: Execution, steps: Vec<Step>);
    /// Sends what is queued (waiting a few seconds at most): the host stops.
    async fn flush(&self);
}
