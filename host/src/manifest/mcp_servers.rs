//! A manifest's `mcp_servers`: the MCP servers whose tools the agent's runs may
//! call (as `mcp.<server>.<tool>`), each by name and Streamable HTTP URL, with
//! the host credential sent to it (by the name of the environment variable
//! holding it, never the value) and the tools allowed.

use serde::{Deserialize, Serialize};

/// Most servers one manifest may name.
pub const MAX_SERVERS: usize = 16;
const MAX_SERVER_NAME: usize = 32;
const MAX_URL: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// `a-z 0-9 _ -`: the `<server>` of the tools' names.
    pub name: String,
    /// The server's Streamable HTTP endpoint (`https://mcp.example.com/mcp`);
    /// its host must be in `allowed_hosts`.
    pub url: String,
    /// The environment variable of the host that holds a bearer token for the
    /// server; the host's config must allow it for the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_env: Option<String>,
    /// The server's tools the agent may call (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
}

impl McpServer {
    /// Whether the manifest lets the agent call `tool` of this server.
    pub fn allows(&self, tool: &str) -> bool {
        self.allowed_tools.as_ref().is_none_or(|t| t.iter().any(|a| a == tool))
    }

    /// The URL's host (without brackets), once the URL is valid.
    pub fn host(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.url).ok()?;
        Some(url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned())
    }
}

/// The server and tool a tool name `mcp.<server>.<tool>` names.
pub fn split_tool_name(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix("mcp.")?.split_once('.')
}

pub fn validate(servers: &[McpServer], allowed_hosts: &[String]) -> Result<(), String> {
    if servers.len() > MAX_SERVERS {
        return Err(format!("manifest.mcp_servers: more than {MAX_SERVERS} servers"));
    }
    for (i, s) in servers.iter().enumerate() {
        let at = format!("manifest.mcp_servers[{i}]");
        let name_ok = !s.name.is_empty()
            && s.name.len() <= MAX_SERVER_NAME
            && s.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!(
                "{at}.name: {:?} must be 1 to {MAX_SERVER_NAME} characters of a-z, 0-9, '_' and '-'",
                s.name
            ));
        }
        if servers[..i].iter().any(|o| o.name == s.name) {
            return Err(format!("{at}.name: {:?} is named twice", s.name));
        }
        let url = reqwest::Url::parse(&s.url).map_err(|e| format!("{at}.url: {e}"))?;
        if s.url.len() > MAX_URL || !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{at}.url: an http or https URL of at most {MAX_URL} characters"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{at}.url: no credentials in the URL (use auth_env)"));
        }
        let host = s.host().ok_or_else(|| format!("{at}.url: no host"))?;
        if !super::host_allowed(&host, allowed_hosts) {
            return Err(format!("{at}.url: {host} is not in the manifest's allowed_hosts"));
        }
        if s.auth_env.as_ref().is_some_and(|e| e.is_empty() || e.len() > 128) {
            return Err(format!("{at}.auth_env: the name of an environment variable"));
        }
        if let Some(tools) = &s.allowed_tools
            && (tools.len() > super::MAX_LIST_ITEMS || tools.iter().any(|t| t.is_empty() || t.len() > 128))
        {
            return Err(format!(
                "{at}.allowed_tools: at most {} tool names of 1 to 128 characters",
                super::MAX_LIST_ITEMS
            ));
        }
    }
    Ok(())
}
