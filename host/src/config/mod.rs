//! Host configuration: read in one place, typed, with safe defaults.
//!
//! Everything tunable lives here (listen address, data dir, host maxima that clamp
//! every manifest, capture caps, pool sizes). Nothing else reads files or the
//! environment for settings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

mod llm;
mod mcp;
mod otlp;
mod store;
pub use self::llm::{LlmConfig, MaxTokensParam, Price, ProviderConfig, ProviderKind};
pub use self::mcp::{McpConfig, McpCredential};
pub use self::otlp::OtlpConfig;
pub use self::store::StoreConfig;

/// The whole host configuration. Deserialised from an optional TOML file; every
/// field has a default, and CLI flags override the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// The SQLite database (unless `[store] url` names Postgres), component
    /// blobs and compiled artifacts live here.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    /// Deploy the bundled example agents on first start.
    pub deploy_examples: bool,
    pub limits: HostLimits,
    pub capture: CaptureLimits,
    pub http: HttpLimits,
    /// How many executions may run at once (also sizes the instance pool).
    pub max_concurrent_executions: u32,
    /// How many executions may wait queued; past it, execute answers 429.
    pub max_queued_executions: usize,
    /// A run's slot is reclaimed this long after its timeout, whatever happened.
    pub slot_grace_ms: u64,
    /// On SIGTERM or SIGINT: how long running executions may go on finishing
    /// before the host exits anyway (what still runs then ends as on a crash).
    pub shutdown_grace_ms: u64,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: u64,
    /// Finished executions (with their logs, steps, events and artifacts) older
    /// than this are deleted; 0 keeps them forever.
    pub retention_secs: u64,
    /// How often the retention sweep runs.
    pub retention_sweep_ms: u64,
    pub llm: LlmConfig,
    /// Prices per million tokens by model, over the built-in table.
    pub pricing: HashMap<String, Price>,
    pub tools: ToolsConfig,
    pub auth: AuthConfig,
    pub deploy: CompileConfig,
    pub durability: DurabilityConfig,
    pub memory: MemoryConfig,
    pub webhooks: WebhooksConfig,
    pub mcp: McpConfig,
    pub metrics: MetricsConfig,
    /// Each ended execution's span tree sent to an OpenTelemetry collector.
    pub otlp: OtlpConfig,
}

/// Prometheus metrics at `GET /metrics`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Count what the host does (off: nothing is counted, `/metrics` is empty).
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Outgoing webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Let subscriptions reach loopback, private and link-local addresses.
    pub allow_private_addresses: bool,
    /// One attempt, start to end.
    pub timeout_ms: u64,
    /// The waits before each retry of a failed delivery; after the last, it
    /// is `failed`.
    pub retry_schedule_secs: Vec<u64>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            timeout_ms: 10_000,
            retry_schedule_secs: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000],
        }
    }
}

/// Conversations and memory: history budgets, caps, retention.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Conversations with no turn for this long are deleted (their turns and
    /// session memory with them); 0 keeps them forever.
    pub conversation_ttl_secs: u64,
    /// Most turns the history import gives an agent (it may ask for fewer).
    pub history_max_turns: u32,
    /// Most tokens (the host's estimate) of history it gives.
    pub history_max_tokens: u64,
    /// Longest key of a memory entry, in characters.
    pub max_key_chars: usize,
    /// Largest value of a memory entry (JSON text).
    pub max_value_bytes: usize,
    /// Most bytes a conversation's session memory may hold.
    pub session_max_bytes: u64,
    /// Most bytes a memory store holds unless it asks for less.
    pub store_max_bytes: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            conversation_ttl_secs: 30 * 24 * 60 * 60,
            history_max_turns: 50,
            history_max_tokens: 16_000,
            max_key_chars: 256,
            max_value_bytes: 64 << 10,
            session_max_bytes: 1 << 20,
            store_max_bytes: 16 << 20,
        }
    }
}

/// Durable runs: their journals and their waits for approvals.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurabilityConfig {
    /// Most journal entries one run may make (host calls, clock readings).
    pub max_journal_entries: u32,
    /// Most bytes of journal one run may make.
    pub max_journal_bytes: usize,
    /// A run waiting for an approval longer than this is unloaded (its memory
    /// and its slot freed) and resumed by replay once decided.
    pub approval_grace_ms: u64,
    /// How often requests past their timeout are expired.
    pub expiry_sweep_ms: u64,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            max_journal_entries: 100_000,
            max_journal_bytes: 64 << 20,
            approval_grace_ms: 2_000,
            expiry_sweep_ms: 1_000,
        }
    }
}

/// How deployed components are compiled.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompileConfig {
    /// The `warden` binary that compiles a component in a child process (the
    /// running one, for `warden serve`). Unset: in the host's own process,
    /// without the limits below.
    pub program: Option<PathBuf>,
    /// The longest one compile may take.
    pub timeout_ms: u64,
    /// The most memory one compile may allocate.
    pub max_memory_mb: u64,
    /// Compiles that may run at once; more wait their turn.
    pub max_concurrent: usize,
}

impl Default for CompileConfig {
    fn default() -> Self {
        Self {
            program: None,
            timeout_ms: 60_000,
            max_memory_mb: 2048,
            max_concurrent: 2,
        }
    }
}

/// API keys. Keys themselves live in the database (`warden keys`, `/admin/keys`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Requests per second each key may make (0: unlimited).
    pub rate_limit_per_sec: f64,
    /// How many requests a key may make at once above its rate.
    pub rate_limit_burst: u32,
    /// How long a checked key is trusted before it is read again (a key revoked
    /// through the API stops at once; with `warden keys revoke`, within this).
    pub key_cache_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_sec: 100.0,
            rate_limit_burst: 200,
            key_cache_ms: 2_000,
        }
    }
}

/// The built-in tools.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Let `http_fetch` reach loopback, private and link-local addresses.
    pub allow_private_addresses: bool,
    pub http_max_bytes: usize,
    pub http_timeout_ms: u64,
    /// How deep `agent_call` may nest.
    pub agent_call_max_depth: u32,
    /// Tool calls one execution may make.
    pub max_tool_calls: u32,
    /// The browser for the `browser` tool; found in the usual places when unset.
    pub browser_path: Option<String>,
    /// The user the browser runs as when the host runs as root (it never runs
    /// as root).
    pub browser_user: String,
    /// Start the browser without its own sandbox (which needs unprivileged user
    /// namespaces). Only where those are missing, and never on a shared host.
    pub browser_no_sandbox: bool,
    /// One `browser` call, start to finish.
    pub browser_timeout_ms: u64,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            http_max_bytes: 1 << 20,
            http_timeout_ms: 10_000,
            agent_call_max_depth: 3,
            max_tool_calls: 64,
            browser_path: None,
            browser_user: "nobody".into(),
            browser_no_sandbox: false,
            browser_timeout_ms: 30_000,
        }
    }
}

/// Host maxima and defaults for per-agent limits. A manifest may ask for less than
/// the maximum; it never gets more.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostLimits {
    pub default_fuel: u64,
    pub max_fuel: u64,
    pub default_memory_mb: u32,
    pub max_memory_mb: u32,
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
}

/// Caps on what one run may write.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureLimits {
    /// Bytes of log text (guest stdout, stderr and `log` calls together).
    pub max_log_bytes: usize,
    /// Log lines.
    pub max_log_lines: usize,
    /// Steps.
    pub max_steps: usize,
    /// Bytes of a step's detail JSON.
    pub max_step_detail_bytes: usize,
    /// Bytes of all of one run's step details together; past it, a step keeps
    /// its name and its detail becomes a note of its size.
    pub max_steps_bytes: usize,
    /// Bytes of the JSON output.
    pub max_output_bytes: usize,
    /// Artifacts one run may store.
    pub max_artifacts: usize,
    /// Bytes of all of one run's artifacts together.
    pub max_artifact_bytes: usize,
    /// Store each run's logs, steps and events with its record. Off, only the
    /// record itself is kept (live streams still see every event).
    pub record_details: bool,
}

/// Caps on what clients may send.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Body of any JSON request (execute, ...).
    pub max_body_bytes: usize,
    /// A deployed component's size.
    pub max_component_bytes: usize,
    /// An execution's `input` (JSON text).
    pub max_input_bytes: usize,
    /// Connections served at once; past it, new ones wait in the listen queue
    /// until one closes.
    pub max_connections: usize,
    /// An HTTP/1 request's headers must arrive within this (an idle
    /// keep-alive connection is closed after it too).
    pub header_timeout_ms: u64,
    /// A request's whole body must arrive within this, from its headers.
    pub body_timeout_ms: u64,
    /// A connection whose client takes nothing of what it is sent for this long
    /// (a stream subscriber that stopped reading) is closed.
    pub write_stall_ms: u64,
    /// Which requests get a log line (`info`, target `warden::http`: id,
    /// method, path, status, time): `errors` (answered 400 or more), `all`, `off`.
    pub access_log: AccessLog,
}

/// Which requests the access log has a line for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    Off,
    /// Those answered with a status of 400 or more.
    Errors,
    All,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("warden-data"),
            store: StoreConfig::default(),
            deploy_examples: true,
            limits: HostLimits::default(),
            capture: CaptureLimits::default(),
            http: HttpLimits::default(),
            max_concurrent_executions: 256,
            max_queued_executions: 10_000,
            slot_grace_ms: 5_000,
            shutdown_grace_ms: 25_000,
            idempotency_ttl_secs: 24 * 60 * 60,
            retention_secs: 30 * 24 * 60 * 60,
            retention_sweep_ms: 10 * 60 * 1000,
            llm: LlmConfig::default(),
            pricing: HashMap::new(),
            tools: ToolsConfig::default(),
            auth: AuthConfig::default(),
            deploy: CompileConfig::default(),
            durability: DurabilityConfig::default(),
            memory: MemoryConfig::default(),
            webhooks: WebhooksConfig::default(),
            mcp: McpConfig::default(),
            metrics: MetricsConfig::default(),
            otlp: OtlpConfig::default(),
        }
    }
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            default_fuel: 1_000_000_000,
            max_fuel: 50_000_000_000,
            default_memory_mb: 64,
            max_memory_mb: 512,
            default_timeout_ms: 30_000,
            max_timeout_ms: 15 * 60 * 1000,
        }
    }
}

impl Default for CaptureLimits {
    fn default() -> Self {
        Self {
            max_log_bytes: 1 << 20,
            max_log_lines: 10_000,
            max_steps: 1_000,
            max_step_detail_bytes: 64 << 10,
            max_steps_bytes: 2 << 20,
            max_output_bytes: 4 << 20,
            max_artifacts: 32,
            max_artifact_bytes: 32 << 20,
            record_details: true,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_component_bytes: 64 << 20,
            max_input_bytes: 1 << 20,
            max_connections: 16_384,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            write_stall_ms: 30_000,
            // Every request is a line only when asked: at thousands of runs a
            // second the lines cost about 4 % of the throughput.
            access_log: AccessLog::Errors,
        }
    }
}

impl Config {
    /// Reads a TOML file; missing keys keep their defaults, unknown keys are errors.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings that cannot work, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.mcp.validate()?;
        self.otlp.validate()?;
        self.store.validate()?;
        let l = &self.limits;
        anyhow::ensure!(
            self.max_concurrent_executions >= 1,
            "max_concurrent_executions must be at least 1"
        );
        anyhow::ensure!(
            self.deploy.timeout_ms >= 1 && self.deploy.max_memory_mb >= 64 && self.deploy.max_concurrent >= 1,
            "deploy.timeout_ms and deploy.max_concurrent must be at least 1 and deploy.max_memory_mb at least 64"
        );
        anyhow::ensure!(
            self.http.max_connections >= 1,
            "http.max_connections must be at least 1"
        );
        anyhow::ensure!(
            self.http.header_timeout_ms >= 1 && self.http.body_timeout_ms >= 1 && self.http.write_stall_ms >= 1,
            "http.header_timeout_ms, http.body_timeout_ms and http.write_stall_ms must be at least 1"
        );
        anyhow::ensure!(l.max_memory_mb >= 1, "limits.max_memory_mb must be at least 1");
        anyhow::ensure!(l.max_fuel >= 1, "limits.max_fuel must be at least 1");
        anyhow::ensure!(l.max_timeout_ms >= 1, "limits.max_timeout_ms must be at least 1");
        anyhow::ensure!(
            l.default_memory_mb <= l.max_memory_mb
                && l.default_fuel <= l.max_fuel
                && l.default_timeout_ms <= l.max_timeout_ms,
            "limits: each default must not exceed its maximum"
        );
        anyhow::ensure!(
            self.auth.rate_limit_per_sec >= 0.0 && self.auth.rate_limit_per_sec.is_finite(),
            "auth.rate_limit_per_sec must be 0 (unlimited) or more"
        );
        anyhow::ensure!(
            self.auth.rate_limit_per_sec == 0.0 || self.auth.rate_limit_burst >= 1,
            "auth.rate_limit_burst must be at least 1"
        );
        for p in &self.llm.providers {
            anyhow::ensure!(
                p.kind == ProviderKind::Scripted || !p.base_url.is_empty(),
                "llm.providers {:?}: base_url is required",
                p.name
            );
            anyhow::ensure!(
                !p.models.is_empty(),
                "llm.providers {:?}: list the models it serves",
                p.name
            );
        }
        Ok(())
    }
}
