//! MCP configuration: who may reach the server at `/mcp` (the `Host` and
//! `Origin` values it accepts), how long a tool call waits before it becomes a
//! task, and what the host's MCP client for guests may send where (the
//! credentials a manifest may name, each bound to the hosts it may go to).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// `Host` values the server accepts besides loopback ones (`localhost`,
    /// `127.0.0.1`, `::1`, any port): the names clients use to reach this host
    /// (`warden.example.com`, `warden.example.com:8443`). Others get 403, the
    /// spec's guard against DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted besides loopback ones
    /// (`https://app.example.com`, `http://localhost:*`). A request without an
    /// `Origin` (any non-browser client) is not checked.
    pub allowed_origins: Vec<String>,
    /// How long a `tools/call` of an agent waits for the run's end before it
    /// answers with a task (when the client supports tasks).
    pub task_after_ms: u64,
    /// How long the host keeps a finished task reachable (`ttlMs`).
    pub task_ttl_ms: u64,
    /// One request of the host's client to an agent's MCP server (connect,
    /// list, call). Where servers may be is `[tools]`'s business
    /// (`allow_private_addresses`), as for `http_fetch`.
    pub client_timeout_ms: u64,
    /// Secrets a manifest's `mcp_servers[].auth_env` may name, each sent only to
    /// the hosts listed with it.
    pub credentials: Vec<McpCredential>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            task_after_ms: 2_000,
            task_ttl_ms: 24 * 3600 * 1000,
            client_timeout_ms: 30_000,
            credentials: Vec::new(),
        }
    }
}

/// A bearer token in the host's environment, and where it may be sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpCredential {
    /// The environment variable holding it.
    pub env: String,
    /// Hosts of MCP server URLs it may be sent to (`api.example.com`,
    /// `*.example.com`), over https (or plain http to a private address,
    /// where `tools.allow_private_addresses` allows those).
    pub hosts: Vec<String>,
    /// The workspaces whose agents may use it (all when absent).
    #[serde(default)]
    pub workspaces: Option<Vec<String>>,
}

impl McpConfig {
    /// The credential named `env`, if the host has one.
    pub fn credential(&self, env: &str) -> Option<&McpCredential> {
        self.credentials.iter().find(|c| c.env == env)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.task_after_ms >= 1 && self.client_timeout_ms >= 1,
            "mcp.task_after_ms and mcp.client_timeout_ms must be at least 1"
        );
        for (i, c) in self.credentials.iter().enumerate() {
            anyhow::ensure!(
                !c.env.is_empty() && !c.hosts.is_empty(),
                "mcp.credentials: each names its env variable and at least one host"
            );
            anyhow::ensure!(
                self.credentials[..i].iter().all(|o| o.env != c.env),
                "mcp.credentials: {} is named twice",
                c.env
            );
        }
        Ok(())
    }
}
