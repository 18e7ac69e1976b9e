//! The built-in tools an agent reaches through `warden:agent/tools`: `kv` (a small
//! per-agent key-value store), `http_fetch` (GET/POST to allowlisted hosts only)
//! and `agent_call` (run another agent as a child execution). Which ones an agent
//! may use is its manifest's business; this module only runs them.

mod agent_call;
pub mod browser;
mod http_fetch;
mod kv;

use std::sync::{Arc, OnceLock, Weak};

use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::config::ToolsConfig;

/// What a tool call knows about its caller.
#[derive(Debug, Clone)]
pub struct ToolCtx {
    pub agent_id: String,
    pub execution_id: String,
    /// 0 for an execution nobody called; a child's is its parent's plus one.
    pub depth: u32,
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Failed(String),
}

/// A tool's name, description and argument schema, as the guest lists them.
#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: &'static str,
}

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
    app: OnceLock<Weak<App>>,
    pub config: ToolsConfig,
    http: reqwest::Client,
}

impl Tools {
    pub fn new(config: ToolsConfig) -> anyhow::Result<Self> {
        Ok(Self {
            app: OnceLock::new(),
            config,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// Tools that reach the store or the scheduler need the app they serve.
    pub fn attach(&self, app: &Arc<App>) {
        let _ = self.app.set(Arc::downgrade(app));
    }

    fn app(&self) -> Result<Arc<App>, ToolError> {
        self.app
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| ToolError::Failed("the host is shutting down".into()))
    }

    /// Runs one tool. The caller checked that the agent may use it.
    pub async fn call(&self, ctx: &ToolCtx, name: &str, args: Value) -> Result<Value, ToolError> {
        match name {
            "kv" => kv::call(&self.app()?, ctx, args).await,
            "http_fetch" => http_fetch::call(&self.http, &self.config, ctx, args).await,
            "agent_call" => agent_call::call(&self.app()?, &self.config, ctx, args).await,
            other => Err(ToolError::Failed(format!("no tool named {other:?}"))),
        }
    }
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    args[name]
        .as_str()
        .ok_or_else(|| ToolError::InvalidArguments(format!("`{name}` (a string) is required")))
}
