//! Agent manifests: what a deployer asks for (name, description, version label,
//! limits), validated with messages that name the field, and the effective limits
//! after clamping by the host's maxima.

mod mcp_servers;
mod schema_cost;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::mcp_servers::{McpServer, split_tool_name};
use crate::config::HostLimits;

/// The manifest as deployed. Unknown fields are refused, so a typo is not silently
/// ignored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A free-form label such as `1.2.0`; versions are numbered by the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub limits: RequestedLimits,
    /// How many executions of this agent may run at once (others wait queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Automatic retries of failed executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Models the agent may call; the first is its default. Empty: `scripted`.
    /// (Lists are shared by every run of the version, never copied per run.)
    #[serde(default, skip_serializing_if = "no_items")]
    #[schema(value_type = Vec<String>)]
    pub models: Arc<[String]>,
    /// Tokens (prompt + completion) one execution may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<u64>,
    /// Built-in tools the agent may call (`http_fetch`, `kv`, `agent_call`).
    #[serde(default, skip_serializing_if = "no_items")]
    #[schema(value_type = Vec<String>)]
    pub tools: Arc<[String]>,
    /// Hosts `http_fetch` may reach (`api.example.com`, `*.example.com`).
    #[serde(default, skip_serializing_if = "no_items")]
    #[schema(value_type = Vec<String>)]
    pub allowed_hosts: Arc<[String]>,
    /// MCP servers whose tools the agent may call, as `mcp.<server>.<tool>`
    /// (each server's host must be in `allowed_hosts`).
    #[serde(default, skip_serializing_if = "no_servers")]
    #[schema(value_type = Vec<McpServer>)]
    pub mcp_servers: Arc<[McpServer]>,
    /// A JSON Schema every execution's input must satisfy; checked before the
    /// execution is queued. References are resolved only inside the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub input_schema: Option<serde_json::Value>,
    /// Journal the run's host calls so that it survives a restart and can wait
    /// for approvals unloaded (default). `false`: a restart ends it `host_restart`.
    #[serde(default = "yes")]
    pub durable: bool,
}

fn yes() -> bool {
    true
}

fn no_items(list: &Arc<[String]>) -> bool {
    list.is_empty()
}

fn no_servers(list: &Arc<[McpServer]>) -> bool {
    list.is_empty()
}

/// One way an input fails the agent's `input_schema`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InputError {
    /// JSON Pointer to the failing part of the input (`""` is the whole input).
    pub path: String,
    pub message: String,
}

/// The failures as one line: `/name: 5 is not of type "string"; ...`.
pub fn describe(errors: &[InputError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", if e.path.is_empty() { "(input)" } else { &e.path }, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Most schema failures reported for one input.
const MAX_INPUT_ERRORS: usize = 20;

/// An agent version's compiled `input_schema`.
pub struct InputSchema(jsonschema::Validator);

impl InputSchema {
    /// Checks an input; the failures (at most 20) with their paths.
    pub fn check(&self, input: &serde_json::Value) -> Result<(), Vec<InputError>> {
        let errors: Vec<InputError> = self
            .0
            .iter_errors(input)
            .take(MAX_INPUT_ERRORS)
            .map(|e| InputError {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// The built-in tools a manifest may name.
pub const TOOLS: &[&str] = &["http_fetch", "kv", "agent_call", "browser"];

/// Failed executions are retried as new, linked executions (`trigger: "retry"`,
/// `retry_of`), up to `max_attempts` attempts in all, waiting `backoff_ms` before
/// the first retry and `backoff_multiplier` times longer before each next one.
/// Failures that cannot succeed on a retry (`invalid_input`) are not retried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_backoff_multiplier")]
    pub backoff_multiplier: f64,
}

fn default_backoff_ms() -> u64 {
    1000
}

fn default_backoff_multiplier() -> f64 {
    2.0
}

/// Most attempts a retry policy may ask for.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest wait before one retry.
pub const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;
/// Concurrency slots an agent gets when its manifest does not say.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 3;

impl RetryPolicy {
    /// Wait before attempt `next` (2 for the first retry).
    pub fn backoff(&self, next: u32) -> std::time::Duration {
        let factor = self.backoff_multiplier.powi(next.saturating_sub(2) as i32);
        let ms = (self.backoff_ms as f64 * factor).min(MAX_BACKOFF_MS as f64);
        std::time::Duration::from_millis(ms as u64)
    }
}

/// Limits a manifest asks for; absent ones take the host's defaults.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The limits an execution really runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    pub fuel: u64,
    pub memory_mb: u32,
    pub timeout_ms: u64,
    /// Executions of the agent that may run at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
}

fn default_max_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}

impl Limits {
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize) << 20
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Most bytes of a manifest's JSON text.
pub const MAX_MANIFEST_BYTES: usize = 256 << 10;
/// Most entries of each of a manifest's lists (`models`, `tools`, `allowed_hosts`).
pub const MAX_LIST_ITEMS: usize = 64;
const MAX_NAME_LEN: usize = 63;
const MAX_DESCRIPTION_LEN: usize = 4096;
const MAX_VERSION_LEN: usize = 64;

impl Manifest {
    /// Parses JSON text, naming the offending field on failure.
    pub fn from_json(text: &str) -> Result<Self, String> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(format!(
                "manifest: {} bytes, over the limit of {MAX_MANIFEST_BYTES}",
                text.len()
            ));
        }
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| format!("manifest: {e}"))?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.name)?;
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(format!("manifest.description: longer than {MAX_DESCRIPTION_LEN} bytes"));
        }
        if let Some(v) = &self.version
            && (v.is_empty() || v.len() > MAX_VERSION_LEN)
        {
            return Err(format!("manifest.version: must be 1 to {MAX_VERSION_LEN} characters"));
        }
        let l = &self.limits;
        if l.fuel == Some(0) {
            return Err("manifest.limits.fuel: must be at least 1".into());
        }
        if l.memory_mb == Some(0) {
            return Err("manifest.limits.memory_mb: must be at least 1".into());
        }
        if l.timeout_ms == Some(0) {
            return Err("manifest.limits.timeout_ms: must be at least 1".into());
        }
        if self.max_concurrency == Some(0) {
            return Err("manifest.max_concurrency: must be at least 1".into());
        }
        for (field, list) in [
            ("models", &self.models),
            ("tools", &self.tools),
            ("allowed_hosts", &self.allowed_hosts),
        ] {
            if list.len() > MAX_LIST_ITEMS {
                return Err(format!(
                    "manifest.{field}: {} entries, more than {MAX_LIST_ITEMS}",
                    list.len()
                ));
            }
        }
        for t in self.tools.iter() {
            if !TOOLS.contains(&t.as_str()) {
                return Err(format!(
                    "manifest.tools: unknown tool {t:?} (known: {})",
                    TOOLS.join(", ")
                ));
            }
        }
        if self.models.iter().any(|m| m.is_empty() || m.len() > 200) {
            return Err("manifest.models: each model is 1 to 200 characters".into());
        }
        if self.token_budget == Some(0) {
            return Err("manifest.token_budget: must be at least 1".into());
        }
        if self
            .allowed_hosts
            .iter()
            .any(|h| h.is_empty() || h.len() > 253 || h.contains('/') || h.contains(':'))
        {
            return Err(
                "manifest.allowed_hosts: each entry is a host name like api.example.com or *.example.com".into(),
            );
        }
        mcp_servers::validate(&self.mcp_servers, &self.allowed_hosts)?;
        self.input_schema()?;
        if let Some(r) = &self.retry {
            if r.max_attempts == 0 || r.max_attempts > MAX_ATTEMPTS {
                return Err(format!("manifest.retry.max_attempts: must be 1 to {MAX_ATTEMPTS}"));
            }
            if r.backoff_ms > MAX_BACKOFF_MS {
                return Err(format!("manifest.retry.backoff_ms: must be at most {MAX_BACKOFF_MS}"));
            }
            if !(1.0..=10.0).contains(&r.backoff_multiplier) {
                return Err("manifest.retry.backoff_multiplier: must be 1 to 10".into());
            }
        }
        Ok(())
    }

    /// The compiled `input_schema`, if the manifest has one.
    pub fn input_schema(&self) -> Result<Option<InputSchema>, String> {
        let Some(schema) = &self.input_schema else {
            return Ok(None);
        };
        if !(schema.is_object() || schema.is_boolean()) {
            return Err("manifest.input_schema: must be a JSON Schema (an object or a boolean)".into());
        }
        schema_cost::check(schema)?;
        jsonschema::validator_for(schema)
            .map(|v| Some(InputSchema(v)))
            .map_err(|e| format!("manifest.input_schema: not a usable JSON Schema: {e}"))
    }

    /// The manifest's limits, defaulted and clamped by the host's maxima.
    pub fn effective_limits(&self, host: &HostLimits, max_running: u32) -> Limits {
        let l = &self.limits;
        Limits {
            fuel: l.fuel.unwrap_or(host.default_fuel).min(host.max_fuel),
            memory_mb: l.memory_mb.unwrap_or(host.default_memory_mb).min(host.max_memory_mb),
            timeout_ms: l.timeout_ms.unwrap_or(host.default_timeout_ms).min(host.max_timeout_ms),
            max_concurrency: self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY).min(max_running),
        }
    }
}

/// Whether `host` matches an allowlist entry (`api.example.com`, `*.example.com`).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        match entry.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == entry,
        }
    })
}

/// Names no agent may take: the MCP execution tools' (an agent is a tool of
/// the same list).
pub const RESERVED_NAMES: [&str; 3] = [
    "list_recent_executions",
    "get_execution_result",
    "get_agent_activity_summary",
];

/// Agent names: 1–63 of `a-z 0-9 - _`, starting with a letter or digit, and not
/// shaped like an agent id.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let ok_start = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || !ok_start {
        return Err(format!(
            "manifest.name: {name:?} must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!("manifest.name: {name:?} is the name of an MCP execution tool"));
    }
    if name.starts_with("agt_") {
        return Err("manifest.name: must not start with \"agt_\" (reserved for agent ids)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_hosts_and_subdomains() {
        let allowed = vec!["api.example.com".to_owned(), "*.docs.example.com".to_owned()];
        assert!(host_allowed("API.example.com", &allowed));
        assert!(host_allowed("v1.docs.example.com", &allowed));
        assert!(!host_allowed("docs.example.com", &allowed));
        assert!(!host_allowed("evil-api.example.com", &allowed));
        assert!(!host_allowed("api.example.com.evil.net", &allowed));
    }

    #[test]
    fn limits_are_clamped_by_the_host() {
        let m = Manifest::from_json(r#"{"name":"a","limits":{"fuel":999999999999999,"memory_mb":4}}"#).unwrap();
        let host = HostLimits::default();
        let l = m.effective_limits(&host, 8);
        assert_eq!(l.max_concurrency, 3);
        assert_eq!(l.fuel, host.max_fuel);
        assert_eq!(l.memory_mb, 4);
        assert_eq!(l.timeout_ms, host.default_timeout_ms);
    }

    #[test]
    fn backoff_grows() {
        let r = RetryPolicy {
            max_attempts: 4,
            backoff_ms: 100,
            backoff_multiplier: 2.0,
        };
        assert_eq!(r.backoff(2).as_millis(), 100);
        assert_eq!(r.backoff(3).as_millis(), 200);
        assert_eq!(r.backoff(4).as_millis(), 400);
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let e = Manifest::from_json(r#"{"name":"Bad Name"}"#).unwrap_err();
        assert!(e.contains("manifest.name"), "{e}");
        let e = Manifest::from_json(r#"{"name":"ok","limits":{"memory_mb":0}}"#).unwrap_err();
        assert!(e.contains("manifest.limits.memory_mb"), "{e}");
        let e = Manifest::from_json(r#"{"name":"ok","retry":{"max_attempts":0}}"#).unwrap_err();
        assert!(e.contains("manifest.retry.max_attempts"), "{e}");
        let e = Manifest::from_json(r#"{"name":"ok","limitz":{}}"#).unwrap_err();
        assert!(e.contains("limitz"), "{e}");
    }
}
