//! The per-execution state a `Store` owns: the WASI context (no env, no preopens,
//! no sockets, stdio captured), the resource table, the memory limiter and the run
//! record. Built fresh for every execution; never shared between runs.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::capture::RunRecord;
use crate::config::CaptureLimits;
use crate::events::EventLog;
use crate::execution::{Artifact, LogStream};
use crate::llm::{Llm, Usage};
use crate::store::blobs::Blobs;
use crate::store::writer::Writer;
use crate::tools::{ToolCtx, Tools};

/// Instances, tables and memories one store may create.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 100_000;

pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub record: RunRecord,
    pub grants: Grants,
    pub llm: LlmTotals,
    pub tool_calls: Vec<ToolCallRecord>,
    pub artifacts: Vec<Artifact>,
    pub started: Instant,
}

/// Where a run's artifacts go, and how much it may store.
#[derive(Clone)]
pub struct ArtifactSink {
    pub blobs: Blobs,
    pub writer: Writer,
    pub caps: CaptureLimits,
}

/// What an execution may use beyond its sandbox: models and a token budget,
/// tools, and who it is (for the tools).
pub struct Grants {
    pub llm: Arc<Llm>,
    pub tool_host: Arc<Tools>,
    /// Allowed models, the default first; empty means `scripted`.
    pub models: Vec<String>,
    pub token_budget: u64,
    pub tools: Vec<String>,
    pub ctx: ToolCtx,
    /// Where the run's events go (log lines, steps, model deltas, tool calls).
    pub events: Arc<EventLog>,
    pub artifacts: ArtifactSink,
}

impl Grants {
    /// The allowed models, never empty.
    pub fn models(&self) -> Vec<String> {
        if self.models.is_empty() {
            vec!["scripted".to_owned()]
        } else {
            self.models.clone()
        }
    }
}

/// What the run's model calls added up to.
#[derive(Debug, Clone, Default)]
pub struct LlmTotals {
    pub usage: Usage,
    pub cost_usd: f64,
    pub calls: u32,
    pub model_used: Option<String>,
    pub provider: Option<String>,
    /// From the start of the run to the first token of its first call.
    pub first_token_ms: Option<i64>,
    /// Provider failures the guest saw.
    pub errors: Vec<String>,
}

/// One tool call, as the execution record shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
    pub result: serde_json::Value,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl RunState {
    pub fn new(memory_limit: usize, record: RunRecord, grants: Grants) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(record.stdio(LogStream::Stdout))
            .stderr(record.stdio(LogStream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            record,
            grants,
            llm: LlmTotals::default(),
            tool_calls: Vec::new(),
            artifacts: Vec::new(),
            started: Instant::now(),
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the store's total linear memory and remembers whether the cap was hit,
/// which is how a guest's out-of-memory abort is told apart from other traps.
pub struct MemoryLimiter {
    limit: usize,
    total: usize,
    pub peak: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            total: 0,
            peak: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        if self.total.saturating_add(grow) > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.total += grow;
        self.peak = self.peak.max(self.total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
