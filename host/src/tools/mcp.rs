//! The host's MCP client, for guests: lists and calls the tools of the MCP
//! servers an agent's manifest names (Streamable HTTP, the official `rmcp`
//! client). Each operation connects to the address [`egress`](super::egress)
//! checked for the server's URL (allowlisted host, no private address unless
//! allowed, no second lookup, no redirect, no proxy), sends the host
//! credential the config binds to that host, and closes the session after.
//! Guests never see a credential.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ContentBlock, Implementation, ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::NeverRetry;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use super::egress::{check_url, host_allowed};
use super::{ToolCtx, ToolError};
use crate::config::{McpConfig, ToolsConfig};
use crate::manifest::McpServer;
use crate::ports::ListedTool;

/// Largest answer read from a server.
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Most tools taken from one server's list.
const MAX_TOOLS: usize = 256;

type Session = RunningService<RoleClient, ClientConfig>;

pub struct McpClient {
    egress: ToolsConfig,
    timeout: Duration,
    credentials: McpConfig,
    /// Each configured credential's value, read from the environment once, at
    /// start.
    values: HashMap<String, String>,
}

impl McpClient {
    pub fn new(egress: ToolsConfig, config: &McpConfig) -> Self {
        let values = config
            .credentials
            .iter()
            .filter_map(|c| Some((c.env.clone(), std::env::var(&c.env).ok()?)))
            .collect();
        Self {
            egress,
            timeout: Duration::from_millis(config.client_timeout_ms),
            credentials: config.clone(),
            values,
        }
    }

    /// Whether the server's credential may go to it from an agent of
    /// `workspace`: the config binds it to the URL's host (and the workspace),
    /// and the URL is https (or the host allows private addresses, where
    /// tests and internal servers speak plain http).
    pub fn credential_allowed(
        config: &McpConfig,
        allow_private: bool,
        workspace: &str,
        server: &McpServer,
    ) -> Result<(), String> {
        let Some(env) = &server.auth_env else {
            return Ok(());
        };
        let host = server.host().unwrap_or_default();
        let bound = config.credential(env).is_some_and(|c| {
            host_allowed(&host, &c.hosts) && c.workspaces.as_ref().is_none_or(|w| w.iter().any(|w| w == workspace))
        });
        if !bound {
            return Err(format!(
                "this host has no credential {env:?} for {host} and this workspace (its [mcp] credentials bind each \
                 to the hosts and workspaces it may serve)"
            ));
        }
        if !server.url.starts_with("https://") && !allow_private {
            return Err(format!("credential {env:?} goes over https only"));
        }
        Ok(())
    }

    fn token(&self, ctx: &ToolCtx, server: &McpServer, env: &str) -> Result<String, ToolError> {
        Self::credential_allowed(
            &self.credentials,
            self.egress.allow_private_addresses,
            &ctx.workspace,
            server,
        )
        .map_err(ToolError::Failed)?;
        self.values
            .get(env)
            .cloned()
            .ok_or_else(|| ToolError::Failed(format!("the host has no value for credential {env}")))
    }

    async fn connect(&self, ctx: &ToolCtx, server: &McpServer) -> Result<Session, ToolError> {
        let token = match &server.auth_env {
            Some(env) => Some(self.token(ctx, server, env)?),
            None => None,
        };
        let (url, host, addr) = check_url(&self.egress, ctx, &server.url).await?;
        // A credential goes encrypted, or to a private address (where the host
        // allows those) that never crosses the internet.
        if token.is_some() && url.scheme() != "https" && !super::egress::forbidden(addr.ip()) {
            return Err(ToolError::Failed(format!(
                "credential of MCP server {} goes over https only ({} is a public address)",
                server.name,
                addr.ip()
            )));
        }
        let mut transport = StreamableHttpClientTransportConfig::with_uri(url.as_str())
            .reinit_on_expired_session(false)
            .max_json_response_size(MAX_RESPONSE_BYTES)
            .max_sse_event_size(MAX_RESPONSE_BYTES);
        transport.retry_config = Arc::new(NeverRetry::default());
        if let Some(token) = token {
            transport = transport.auth_header(token);
        }
        // A call is a span of the run's trace: the server's own spans hang under it.
        let mut headers = reqwest::header::HeaderMap::new();
        if let (Some(trace_id), Some(span_id)) = (&ctx.trace_id, &ctx.span_id)
            && let Ok(value) = reqwest::header::HeaderValue::from_str(&crate::trace::traceparent(trace_id, span_id))
        {
            headers.insert("traceparent", value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .resolve(&host, addr)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.timeout)
            .read_timeout(self.timeout)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| ToolError::Failed(format!("MCP server {}: {e}", server.name)))?;
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("warden", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        let transport = StreamableHttpClientTransport::with_client(http, transport);
        match tokio::time::timeout(self.timeout, info.serve(transport)).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(e)) => Err(ToolError::Failed(format!(
                "connecting to MCP server {}: {e}",
                server.name
            ))),
            Err(_) => Err(ToolError::Failed(format!(
                "connecting to MCP server {} timed out",
                server.name
            ))),
        }
    }

    /// Ends a session without waiting for the server's answer.
    fn close(session: Session) {
        tokio::spawn(async move {
            let _ = session.cancel().await;
        });
    }

    /// The server's tools the manifest allows, named `mcp.<server>.<tool>`.
    pub async fn list(&self, ctx: &ToolCtx, server: &McpServer) -> Result<Vec<ListedTool>, ToolError> {
        let session = self.connect(ctx, server).await?;
        let listed = tokio::time::timeout(self.timeout, session.list_all_tools()).await;
        Self::close(session);
        let tools = match listed {
            Ok(Ok(tools)) => tools,
            Ok(Err(e)) => return Err(ToolError::Failed(format!("listing MCP server {}: {e}", server.name))),
            Err(_) => {
                return Err(ToolError::Failed(format!(
                    "listing MCP server {} timed out",
                    server.name
                )));
            }
        };
        Ok(tools
            .into_iter()
            .filter(|t| server.allows(&t.name) && !t.name.is_empty())
            .take(MAX_TOOLS)
            .map(|t| ListedTool {
                name: format!("mcp.{}.{}", server.name, t.name),
                description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                parameters: Value::Object((*t.input_schema).clone()).to_string(),
            })
            .collect())
    }

    /// Calls `tool` of the server: its result as the MCP `CallToolResult`
    /// JSON (`content`, `structuredContent`), or its error text as a failure.
    pub async fn call(&self, ctx: &ToolCtx, server: &McpServer, tool: &str, args: Value) -> Result<Value, ToolError> {
        let arguments = match args {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            _ => {
                return Err(ToolError::InvalidArguments(
                    "an MCP tool's arguments are a JSON object".into(),
                ));
            }
        };
        let session = self.connect(ctx, server).await?;
        let request = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let called = tokio::time::timeout(self.timeout, session.call_tool(request)).await;
        Self::close(session);
        let result = match called {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                return Err(ToolError::Failed(format!(
                    "calling {tool} on MCP server {}: {e}",
                    server.name
                )));
            }
            Err(_) => {
                return Err(ToolError::Failed(format!(
                    "calling {tool} on MCP server {} timed out",
                    server.name
                )));
            }
        };
        if result.is_error == Some(true) {
            let text: Vec<&str> = result
                .content
                .iter()
                .filter_map(|c| match c {
                    ContentBlock::Text(t) => Some(t.text.as_str()),
                    _ => None,
                })
                .collect();
            return Err(ToolError::Failed(text.join("\n")));
        }
        Ok(json!({ "content": result.content, "structuredContent": result.structured_content }))
    }
}
