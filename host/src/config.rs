//! Host configuration: read in one place, typed, with safe defaults.
//!
//! Everything tunable lives here (listen address, data dir, host maxima that clamp
//! every manifest, capture caps, pool sizes). Nothing else reads files or the
//! environment for settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The whole host configuration. Deserialised from an optional TOML file; every
/// field has a default, and CLI flags override the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// SQLite database, component blobs and compiled artifacts live here.
    pub data_dir: PathBuf,
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
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: u64,
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
    /// Bytes of the JSON output.
    pub max_output_bytes: usize,
}

/// Caps on what clients may send.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Body of any JSON request (execute, ...).
    pub max_body_bytes: usize,
    /// A deployed component's size.
    pub max_component_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("warden-data"),
            deploy_examples: true,
            limits: HostLimits::default(),
            capture: CaptureLimits::default(),
            http: HttpLimits::default(),
            max_concurrent_executions: 256,
            max_queued_executions: 10_000,
            slot_grace_ms: 5_000,
            idempotency_ttl_secs: 24 * 60 * 60,
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
            max_output_bytes: 4 << 20,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_component_bytes: 64 << 20,
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
        let l = &self.limits;
        anyhow::ensure!(
            self.max_concurrent_executions >= 1,
            "max_concurrent_executions must be at least 1"
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
        Ok(())
    }
}
