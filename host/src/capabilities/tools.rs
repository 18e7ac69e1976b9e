//! `warden:agent/tools`: the tools the manifest allows (built-in ones, and
//! those its MCP servers list, as `mcp.<server>.<tool>`), each call recorded on
//! the execution (`tool_calls`, `n_tool_calls`, `timing.tool_ms`, a `tool` step,
//! and `tool_start`/`tool_end` events), journaled, and capped per run.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::events::EventData;
use crate::manifest::split_tool_name;
use crate::ports::{ListedTool, Reach, ToolError};
use crate::record::{JournalKind, LogLevel, ToolCallRecord};
use crate::runtime::bindings::warden::agent::tools::{Error, Host, ToolInfo};
use crate::runtime::journal::{self, Replayed};
use crate::runtime::{RunState, Stop};

/// Most bytes of one call's JSON arguments.
const MAX_ARGUMENT_BYTES: usize = 1 << 20;
/// Arguments or a result longer than this are recorded (on the execution and in
/// its events) as a note of their size; the guest still gets the whole result.
const MAX_RECORDED_BYTES: usize = 16 << 10;
/// The tool whose unfinished call is picked up again (its child reattached).
const AGENT_CALL: &str = "agent_call";

/// What the record keeps of a value whose JSON text is `len` bytes.
fn recorded(value: Value, len: usize) -> Value {
    if len > MAX_RECORDED_BYTES {
        json!({ "truncated": true, "bytes": len })
    } else {
        value
    }
}

impl Host for RunState {
    async fn available(&mut self) -> wasmtime::Result<Vec<ToolInfo>> {
        let mut tools: Vec<ToolInfo> = self
            .grants
            .tools
            .catalog()
            .iter()
            .filter(|t| self.grants.allowed_tools.iter().any(|g| g == t.name))
            .map(|t| ToolInfo {
                name: t.name.into(),
                description: t.description.into(),
                parameters: t.parameters.into(),
            })
            .collect();
        tools.extend(self.mcp_tools().await?.iter().map(|t| ToolInfo {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
        }));
        Ok(tools)
    }

    async fn call(&mut self, name: String, arguments: String) -> wasmtime::Result<Result<String, Error>> {
        let allowed = match split_tool_name(&name) {
            Some((server, tool)) => self
                .grants
                .ctx
                .mcp_servers
                .iter()
                .any(|s| s.name == server && s.allows(tool)),
            None => self.grants.allowed_tools.iter().any(|g| g == &name),
        };
        if !allowed {
            return Ok(Err(Error::UnknownTool(format!(
                "tool {name:?} is not in this agent's manifest (allowed: {}{})",
                self.grants.allowed_tools.join(", "),
                if self.grants.ctx.mcp_servers.is_empty() {
                    ""
                } else {
                    ", and its mcp_servers' tools"
                }
            ))));
        }
        let max = self.grants.max_tool_calls;
        if self.tool_calls.len() + self.http_grant.sent() >= max {
            return Ok(Err(Error::LimitExceeded(format!(
                "this run already made {max} tool calls and HTTP requests, its cap"
            ))));
        }
        if arguments.len() > MAX_ARGUMENT_BYTES {
            return Ok(Err(Error::InvalidArguments(format!(
                "arguments are {} bytes, over the limit of {MAX_ARGUMENT_BYTES}",
                arguments.len()
            ))));
        }
        let args: Value = match crate::json_text::check(&arguments).map(|()| serde_json::from_str(&arguments)) {
            Ok(Ok(args)) => args,
            Ok(Err(e)) => return Ok(Err(Error::InvalidArguments(format!("arguments are not JSON: {e}")))),
            Err(e) => return Ok(Err(Error::InvalidArguments(format!("arguments are not JSON: {e}")))),
        };
        let fingerprint = self
            .journal
            .as_ref()
            .map(|_| journal::fingerprint(&[name.as_bytes(), arguments.as_bytes()]));
        let recorded_args = recorded(args.clone(), arguments.len());
        drop(arguments);
        // On replay: the call's result, or its start when it never finished.
        let mut started = None;
        let mut child = None;
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
            match journal
                .take(JournalKind::Tool, fingerprint, &format!("tool {name:?}"))
                .map_err(wasmtime::Error::new)?
            {
                Some(Replayed::Done(data)) => {
                    let call: ToolCall = serde_json::from_str(&data)
                        .map_err(|e| wasmtime::Error::new(Stop::damaged_journal("tool call", &e)))?;
                    return Ok(self.settle_tool(name, recorded_args, call, true));
                }
                Some(Replayed::Started { data, seq }) if name == AGENT_CALL => {
                    // Its child was made (or is made now) under the recorded id.
                    let start: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    child = start["child"].as_str().map(str::to_owned);
                    started = Some(seq);
                }
                // A read cut short by a restart is made again.
                Some(Replayed::Started { seq, .. }) if self.grants.tools.repeatable(&name, &args) => {
                    started = Some(seq);
                }
                Some(Replayed::Started { .. }) => {
                    return Err(wasmtime::Error::new(Stop {
                        code: "unfinished_write",
                        message: format!(
                            "the host stopped while tool {name:?} was running; it may have acted, so it is not \
                             made again"
                        ),
                    }));
                }
                None => {}
            }
        }
        let reattached = started.is_some();
        let reach = self.grants.tools.reach(&name, &args);
        self.grants
            .effects
            .before_effect(reach)
            .await
            .map_err(Stop::unrecorded)?;
        // A call that writes has its start journaled first (stored before it
        // runs, when it reaches beyond the host), so it is never made twice; a
        // read that reaches beyond has its start journaled too (not waited
        // for), so that a restart makes it again without announcing it twice.
        let repeatable = self.grants.tools.repeatable(&name, &args);
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint)
            && started.is_none()
            && (!repeatable || reach == Reach::Outside)
        {
            if name == AGENT_CALL {
                child = Some(crate::ids::execution());
            }
            let data = json!({ "child": child }).to_string();
            started = Some(
                journal
                    .start(
                        JournalKind::Tool,
                        fingerprint,
                        data,
                        reach == Reach::Outside && !repeatable,
                    )
                    .await
                    .map_err(wasmtime::Error::new)?,
            );
        }
        let id = format!("call_{}", self.tool_calls.len() + 1);
        let started_at = Instant::now();
        // A call picked up again was announced in the run's earlier life.
        if !reattached {
            self.grants.events.emit(EventData::ToolStart {
                id: &id,
                name: &name,
                arguments: &recorded_args,
            });
        }
        let host = Arc::clone(&self.grants.tools);
        let mut ctx = self.grants.ctx.clone();
        ctx.child_id = child;
        ctx.span_id = Some(crate::trace::span_id(&ctx.execution_id, &id));
        let (tool, call_args) = (name.clone(), args);
        let result = super::off_fiber(move || async move { host.call(&ctx, &tool, call_args).await })
            .await
            .unwrap_or_else(|e| Err(ToolError::Failed(format!("the tool call failed in the host: {e}"))));
        let call = ToolCall {
            duration_ms: started_at.elapsed().as_millis() as u64,
            result: result.map(|v| v.to_string()).map_err(|e| match e {
                ToolError::InvalidArguments(m) => (true, m),
                ToolError::Failed(m) => (false, m),
            }),
        };
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
            let data = serde_json::to_string(&call).unwrap_or_default();
            journal
                .record(JournalKind::Tool, fingerprint, started, data)
                .map_err(wasmtime::Error::new)?;
        }
        Ok(self.settle_tool(name, recorded_args, call, false))
    }
}

/// One tool call as the journal keeps it.
#[derive(Serialize, Deserialize)]
struct ToolCall {
    duration_ms: u64,
    /// The result's JSON text, or the error (`true`: invalid arguments).
    result: Result<String, (bool, String)>,
}

impl RunState {
    /// The tools of the agent's MCP servers the manifest allows, listed once a
    /// run (a durable run's lists are journaled, so a replay sees the same). A
    /// server that cannot be listed is noted on the run's log; its tools are
    /// missing from the list, and calls to them still go to it.
    async fn mcp_tools(&mut self) -> wasmtime::Result<Arc<[ListedTool]>> {
        if let Some(listed) = &self.mcp_tools {
            return Ok(Arc::clone(listed));
        }
        let mut all = Vec::new();
        for server in self.grants.ctx.mcp_servers.iter() {
            let fingerprint = self
                .journal
                .as_ref()
                .map(|_| journal::fingerprint(&[b"mcp.list", server.name.as_bytes(), server.url.as_bytes()]));
            let what = format!("the list of MCP server {:?}", server.name);
            let replayed = match (&self.journal, &fingerprint) {
                (Some(journal), Some(fingerprint)) => match journal
                    .take(JournalKind::Tool, fingerprint, &what)
                    .map_err(wasmtime::Error::new)?
                {
                    Some(Replayed::Done(data)) => Some(
                        serde_json::from_str::<Result<Vec<ListedTool>, String>>(&data)
                            .map_err(|e| wasmtime::Error::new(Stop::damaged_journal("MCP list", &e)))?,
                    ),
                    _ => None,
                },
                _ => None,
            };
            let listed = match replayed {
                Some(listed) => listed,
                None => {
                    self.grants
                        .effects
                        .before_effect(Reach::Outside)
                        .await
                        .map_err(Stop::unrecorded)?;
                    let host = Arc::clone(&self.grants.tools);
                    let (ctx, asked) = (self.grants.ctx.clone(), server.clone());
                    let listed = super::off_fiber(move || async move { host.list_mcp(&ctx, &asked).await })
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                    if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
                        let data = serde_json::to_string(&listed).unwrap_or_default();
                        journal
                            .record(JournalKind::Tool, fingerprint, None, data)
                            .map_err(wasmtime::Error::new)?;
                    }
                    listed
                }
            };
            match listed {
                Ok(tools) => all.extend(tools),
                Err(e) => self.record.note(
                    LogLevel::Warn,
                    format!(
                        "MCP server {:?} could not be listed, so its tools are not offered: {e}",
                        server.name
                    ),
                ),
            }
        }
        let all: Arc<[ListedTool]> = all.into();
        self.mcp_tools = Some(Arc::clone(&all));
        Ok(all)
    }

    /// Records a tool call (live or replayed) on the run and answers the guest;
    /// a replayed one (`quiet`) was announced in the run's earlier life.
    fn settle_tool(&mut self, name: String, arguments: Value, call: ToolCall, quiet: bool) -> Result<String, Error> {
        let id = format!("call_{}", self.tool_calls.len() + 1);
        let ToolCall { duration_ms, result } = call;
        let (result_value, error) = match &result {
            Ok(text) => {
                let value = if text.len() > MAX_RECORDED_BYTES {
                    Value::Null
                } else {
                    serde_json::from_str(text).unwrap_or(Value::Null)
                };
                (recorded(value, text.len()), None)
            }
            Err((_, message)) => (Value::Null, Some(message.clone())),
        };
        if !quiet {
            crate::metrics::tool_call(&name, error.is_none(), duration_ms);
            self.grants.events.emit(EventData::ToolEnd {
                id: &id,
                name: &name,
                duration_ms,
                error: error.as_deref(),
            });
        }
        self.record.step(
            "tool".into(),
            json!({ "id": id, "name": name, "duration_ms": duration_ms, "error": error }).to_string(),
        );
        self.tool_calls.push(ToolCallRecord {
            id,
            name,
            arguments,
            result: result_value,
            error,
            duration_ms,
        });
        self.http_grant.tool_calls = self.tool_calls.len();
        match result {
            Ok(text) => Ok(text),
            Err((true, m)) => Err(Error::InvalidArguments(m)),
            Err((false, m)) => Err(Error::Failed(m)),
        }
    }
}
