//! The built-in tools an agent reaches through `warden:agent/tools`: `kv` (a small
//! per-agent key-value store), `http_fetch` (GET/POST to allowlisted hosts only),
//! `browser` (a page's title, text and screenshot) and `agent_call` (run another
//! agent as a child execution), and the tools of the agent's MCP servers
//! (`mcp.<server>.<tool>`, through [`mcp`]), and a guest's own `wasi:http`
//! requests under the `http_fetch` policy. Which ones an agent may use is its
//! manifest's business; this module only runs them, through the ports it is
//! given.

mod agent_call;
mod browser;
pub mod egress;
mod http_fetch;
mod kv;
pub mod mcp;
mod wasi_http;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{McpConfig, ToolsConfig};
use crate::manifest::{McpServer, split_tool_name};
use crate::ports::{ListedTool, Reach, ToolCtx, ToolError, ToolHost, ToolInfo};
use crate::store::KvStore;

pub const CATALOG: &[ToolInfo] = &[
    ToolInfo {
        name: "kv",
        description: "A small persistent key-value store of this agent: get, set, delete, list.",
        parameters: r#"{"type":"object","properties":{"op":{"enum":["get","set","delete","list"]},"key":{"type":"string"},"value":{},"prefix":{"type":"string"}},"required":["op"]}"#,
    },
    ToolInfo {
        name: "http_fetch",
        description: "GET or POST a URL on a host the agent's manifest allows; returns status and body text.",
        parameters: r#"{"type":"object","properties":{"url":{"type":"string"},"method":{"enum":["GET","POST"]},"body":{"type":"string"},"content_type":{"type":"string"}},"required":["url"]}"#,
    },
    ToolInfo {
        name: "browser",
        description: "Open a URL in a headless browser: returns its title and text, and stores a PNG screenshot as an artifact.",
        parameters: r#"{"type":"object","properties":{"url":{"type":"string"},"text":{"type":"boolean"}},"required":["url"]}"#,
    },
    ToolInfo {
        name: "agent_call",
        description: "Run another deployed agent with a JSON input and return its output.",
        parameters: r#"{"type":"object","properties":{"agent":{"type":"string"},"input":{}},"required":["agent"]}"#,
    },
];

pub struct Tools {
    config: ToolsConfig,
    kv: Arc<dyn KvStore>,
    clients: egress::PinnedClients,
    mcp: mcp::McpClient,
}

impl Tools {
    pub fn new(config: ToolsConfig, mcp: &McpConfig, kv: Arc<dyn KvStore>) -> anyhow::Result<Self> {
        Ok(Self {
            mcp: mcp::McpClient::new(config.clone(), mcp),
            clients: egress::PinnedClients::new(&config),
            config,
            kv,
        })
    }
}

#[async_trait]
impl ToolHost for Tools {
    fn catalog(&self) -> &'static [ToolInfo] {
        CATALOG
    }

    fn reach(&self, name: &str, args: &Value) -> Reach {
        match name {
            "kv" => kv::reach(args),
            _ => Reach::Outside,
        }
    }

    fn repeatable(&self, name: &str, args: &Value) -> bool {
        match name {
            "kv" => kv::reach(args) == Reach::Nothing,
            "http_fetch" => args["method"].as_str().unwrap_or("GET").eq_ignore_ascii_case("GET"),
            _ => false,
        }
    }

    async fn call(&self, ctx: &ToolCtx, name: &str, args: Value) -> Result<Value, ToolError> {
        match name {
            "kv" => kv::call(self.kv.as_ref(), ctx, args).await,
            "http_fetch" => http_fetch::call(&self.clients, &self.config, ctx, args).await,
            "browser" => browser::call(&self.config, ctx, args).await,
            "agent_call" => agent_call::call(&self.config, ctx, args).await,
            other => match split_tool_name(other) {
                Some((server, tool)) => {
                    let server = mcp_server(ctx, server)?;
                    self.mcp.call(ctx, server, tool, args).await
                }
                None => Err(ToolError::Failed(format!("no tool named {other:?}"))),
            },
        }
    }

    async fn list_mcp(&self, ctx: &ToolCtx, server: &McpServer) -> Result<Vec<ListedTool>, ToolError> {
        self.mcp.list(ctx, server).await
    }

    async fn send_http(
        &self,
        ctx: &ToolCtx,
        request: http::Request<bytes::Bytes>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
    ) -> Result<http::Response<wasmtime_wasi_http::WasiBody>, wasmtime_wasi_http::Error> {
        wasi_http::send(&self.clients, &self.config, ctx, request, options).await
    }
}

/// The agent's MCP server named `name`.
fn mcp_server<'a>(ctx: &'a ToolCtx, name: &str) -> Result<&'a McpServer, ToolError> {
    ctx.mcp_servers
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ToolError::Failed(format!("no MCP server named {name:?} in this agent's manifest")))
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    args[name]
        .as_str()
        .ok_or_else(|| ToolError::InvalidArguments(format!("`{name}` (a string) is required")))
}
