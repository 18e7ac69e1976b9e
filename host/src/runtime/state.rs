//! The per-execution state a `Store` owns: the WASI context (no env, no preopens,
//! no sockets, stdio captured), `wasi:http` under the agent's egress policy, the
//! resource table, the memory limiter and the run record. Built fresh for every execution; never shared between runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::Digest;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::artifacts::RunArtifacts;
use super::capture::RunRecord;
use super::http::HttpGrant;
use super::journal::{MonotonicClock, RunJournal, WallClock};
use crate::events::EventLog;
use crate::llm::Llm;
use crate::ports::{ApprovalDesk, Effects, ListedTool, Memories, Scope, ToolCtx, ToolHost};
use crate::record::{LogStream, ToolCallRecord, Usage};

/// Instances, tables and memories one store may create.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// WASI resources (streams, HTTP requests and their headers...) one store may
/// hold at once: the host memory behind them is not the guest's.
const MAX_RESOURCES: usize = 4_096;
/// Bytes of one `wasi:http` header set (as the host holds it in memory).
const MAX_HEADER_BYTES: usize = 32 << 10;

pub struct RunState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// What the guest may send over `wasi:http`, and what it sent.
    pub http_grant: HttpGrant,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub record: RunRecord,
    pub grants: Grants,
    pub llm: LlmTotals,
    pub tool_calls: Vec<ToolCallRecord>,
    /// The tools of the agent's MCP servers, once listed in this run.
    pub mcp_tools: Option<Arc<[ListedTool]>>,
    pub started: Instant,
    /// A durable run's journal.
    pub journal: Option<Arc<RunJournal>>,
    /// The last approval decision the guest got refused the request: the code
    /// (`rejected`, `approval_expired`) an agent that gives up on it ends with.
    pub refusal: Option<&'static str>,
    /// The run is being unloaded to wait for a decision (set by the approval
    /// import only: a guest cannot fake it with an error code).
    pub suspending: bool,
}

/// What an execution may use beyond its sandbox: models and a token budget,
/// tools, artifacts, and who it is (for the tools).
pub struct Grants {
    pub llm: Arc<Llm>,
    pub tools: Arc<dyn ToolHost>,
    /// Allowed models, the default first; empty means `scripted`.
    pub models: Arc<[String]>,
    /// The model the run's caller picked over the manifest's default.
    pub model: Option<String>,
    pub token_budget: u64,
    /// Tools the manifest allows.
    pub allowed_tools: Arc<[String]>,
    /// Tool calls one run may make.
    pub max_tool_calls: usize,
    pub ctx: ToolCtx,
    /// Where the run's events go (log lines, steps, model deltas, tool calls).
    pub events: Arc<EventLog>,
    /// The run's artifacts (also in `ctx`, for the tools).
    pub artifacts: Arc<RunArtifacts>,
    /// Called before each model, tool or artifact call: the run's start is
    /// stored before anything it does leaves the sandbox.
    pub effects: Arc<dyn Effects>,
    /// Where the run's approval requests go.
    pub desk: Arc<dyn ApprovalDesk>,
    /// How long a durable run waits for a decision in memory before it is
    /// unloaded.
    pub approval_grace: Duration,
    /// Time spent waiting for decisions (not counted against the timeout).
    pub pauses: Arc<super::Pauses>,
    /// A durable run's journal (`None`: the agent is not durable).
    pub journal: Option<Arc<RunJournal>>,
    /// The log lines and steps (by number) a resumed run announced in its
    /// earlier lives.
    pub announced: (u32, u32),
    /// Its conversation, its history and its memories.
    pub memory: MemoryGrant,
    /// What the run's model calls streamed so far (its partial output).
    pub streamed: Arc<Streamed>,
}

/// What a run may reach of conversations and memory.
pub struct MemoryGrant {
    pub port: Arc<dyn Memories>,
    /// The conversation the run is a turn of.
    pub conversation_id: Option<String>,
    /// Its conversation's session memory.
    pub session: Option<Scope>,
    /// The memory stores attached to it, by name.
    pub stores: Vec<(String, Scope)>,
    /// Most turns and tokens of history it is given.
    pub history_budget: (u32, u64),
}

/// The content a run's model calls streamed, kept (up to a cap) so that a run
/// that ends without an output still shows what it had said; and the model
/// call under way, so that one cut short still counts the tokens it used.
#[derive(Default)]
pub struct Streamed(std::sync::Mutex<StreamedInner>);

#[derive(Default)]
struct StreamedInner {
    text: String,
    /// The call under way: its model, and the bytes it was sent and streamed.
    call: Option<(String, usize, usize)>,
}

/// Most bytes of streamed content kept.
const MAX_STREAMED: usize = 64 << 10;

impl Streamed {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamedInner> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A model call starts, sending `prompt_bytes`.
    pub fn begin_call(&self, model: &str, prompt_bytes: usize) {
        self.lock().call = Some((model.to_owned(), prompt_bytes, 0));
    }

    /// The call under way ended (its usage is counted as it reported it).
    pub fn end_call(&self) {
        self.lock().call = None;
    }

    pub fn push(&self, text: &str) {
        let mut inner = self.lock();
        if let Some(call) = &mut inner.call {
            call.2 += text.len();
        }
        let room = MAX_STREAMED.saturating_sub(inner.text.len());
        let mut cut = room.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        inner.text.push_str(&text[..cut]);
    }

    /// What was streamed, if anything; and the model and estimated usage of
    /// a call cut short (about four bytes a token).
    pub fn take(&self) -> (Option<String>, Option<(String, Usage)>) {
        let mut inner = self.lock();
        let text = std::mem::take(&mut inner.text);
        let cut = inner.call.take().map(|(model, sent, streamed)| {
            let (prompt, completion) = ((sent / 4) as u64, (streamed / 4) as u64);
            let usage = Usage {
                prompt,
                completion,
                total: prompt + completion,
                ..Usage::default()
            };
            (model, usage)
        });
        ((!text.is_empty()).then_some(text), cut)
    }
}

impl Grants {
    /// Whether the run may call `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        if self.models.is_empty() {
            model == "scripted"
        } else {
            self.models.iter().any(|m| m == model)
        }
    }

    /// The model a call that names none uses.
    pub fn default_model(&self) -> &str {
        match &self.model {
            Some(picked) => picked,
            None => self.models.first().map_or("scripted", String::as_str),
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
    /// A call's usage was the host's estimate (its provider reported none).
    pub usage_estimated: bool,
    /// The offline `scripted` provider answered a model that is not `scripted`.
    pub offline_noted: bool,
}

impl RunState {
    pub fn new(memory_limit: usize, record: RunRecord, mut grants: Grants) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(record.stdio(LogStream::Stdout))
            .stderr(record.stdio(LogStream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let journal = grants.journal.take();
        if let Some(journal) = &journal {
            // Clocks and randomness come from the journal: a replay reads
            // what the run's earlier life read.
            // The insecure sources get a seed of their own, derived one way:
            // reading them reveals nothing of the secure one.
            let seed = journal.seed();
            let insecure: [u8; 32] = sha2::Sha256::new_with_prefix(seed)
                .chain_update(b"insecure")
                .finalize()
                .into();
            wasi.wall_clock(WallClock(Arc::clone(journal)))
                .monotonic_clock(MonotonicClock(Arc::clone(journal)))
                .secure_random(StdRng::from_seed(seed))
                .insecure_random(StdRng::from_seed(insecure))
                .insecure_random_seed(u128::from_le_bytes(insecure[..16].try_into().unwrap_or_default()));
        }
        let mut http_grant = HttpGrant::new(
            Arc::clone(&grants.tools),
            grants.ctx.clone(),
            Arc::clone(&grants.events),
            Arc::clone(&grants.effects),
            record.clone(),
        );
        http_grant.journal = journal.clone();
        http_grant.max = grants.max_tool_calls;
        http_grant.granted = grants.allowed_tools.iter().any(|t| t == "http_fetch");
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_HEADER_BYTES);
        Self {
            journal,
            refusal: None,
            suspending: false,
            wasi: wasi.build(),
            http,
            http_grant,
            table,
            limiter: MemoryLimiter::new(memory_limit),
            record,
            grants,
            llm: LlmTotals::default(),
            tool_calls: Vec::new(),
            mcp_tools: None,
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

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_grant,
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
