//! `warden:agent/tools`: the tools the manifest allows, each call recorded on the
//! execution (`tool_calls`, `n_tool_calls`, `timing.tool_ms`, a `tool` step, and
//! `tool_start`/`tool_end` events) and capped per run.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::events::EventData;
use crate::ports::ToolError;
use crate::record::ToolCallRecord;
use crate::runtime::bindings::warden::agent::tools::{Error, Host, ToolInfo};
use crate::runtime::{RunState, Stop};

/// Most bytes of one call's JSON arguments.
const MAX_ARGUMENT_BYTES: usize = 1 << 20;
/// Arguments or a result longer than this are recorded (on the execution and in
/// its events) as a note of their size; the guest still gets the whole result.
const MAX_RECORDED_BYTES: usize = 16 << 10;

/// What the record keeps of a value whose JSON text is `len` bytes.
fn recorded(value: Value, len: usize) -> Value {
    if len > MAX_RECORDED_BYTES {
        json!({ "truncated": true, "bytes": len })
    } else {
        value
    }
}

impl Host for RunState {
    fn available(&mut self) -> Vec<ToolInfo> {
        self.grants
            .tools
            .catalog()
            .iter()
            .filter(|t| self.grants.allowed_tools.iter().any(|g| g == t.name))
            .map(|t| ToolInfo {
                name: t.name.into(),
                description: t.description.into(),
                parameters: t.parameters.into(),
            })
            .collect()
    }

    async fn call(&mut self, name: String, arguments: String) -> wasmtime::Result<Result<String, Error>> {
        if !self.grants.allowed_tools.iter().any(|g| g == &name) {
            return Ok(Err(Error::UnknownTool(format!(
                "tool {name:?} is not in this agent's manifest (allowed: {})",
                self.grants.allowed_tools.join(", ")
            ))));
        }
        let max = self.grants.max_tool_calls;
        if self.tool_calls.len() >= max {
            return Ok(Err(Error::LimitExceeded(format!(
                "this run already made {max} tool calls, its cap"
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
        let reach = self.grants.tools.reach(&name, &args);
        self.grants
            .effects
            .before_effect(reach)
            .await
            .map_err(Stop::unrecorded)?;
        let id = format!("call_{}", self.tool_calls.len() + 1);
        let started = Instant::now();
        let recorded_args = recorded(args.clone(), arguments.len());
        drop(arguments);
        self.grants.events.emit(EventData::ToolStart {
            id: &id,
            name: &name,
            arguments: &recorded_args,
        });
        let host = Arc::clone(&self.grants.tools);
        let ctx = self.grants.ctx.clone();
        let (tool, call_args) = (name.clone(), args);
        let result = super::off_fiber(move || async move { host.call(&ctx, &tool, call_args).await })
            .await
            .unwrap_or_else(|e| Err(ToolError::Failed(format!("the tool call failed in the host: {e}"))));
        let duration_ms = started.elapsed().as_millis() as u64;
        let (result, result_value, error) = match result {
            Ok(v) => {
                let text = v.to_string();
                let len = text.len();
                (Ok(text), recorded(v, len), None)
            }
            Err(e) => {
                let message = e.to_string();
                (Err(e), Value::Null, Some(message))
            }
        };
        self.grants.events.emit(EventData::ToolEnd {
            id: &id,
            name: &name,
            duration_ms,
            error: error.as_deref(),
        });
        self.record.step(
            "tool".into(),
            json!({ "id": id, "name": name, "duration_ms": duration_ms, "error": error }).to_string(),
        );
        self.tool_calls.push(ToolCallRecord {
            id,
            name,
            arguments: recorded_args,
            result: result_value,
            error,
            duration_ms,
        });
        Ok(match result {
            Ok(text) => Ok(text),
            Err(ToolError::InvalidArguments(m)) => Err(Error::InvalidArguments(m)),
            Err(ToolError::Failed(m)) => Err(Error::Failed(m)),
        })
    }
}
