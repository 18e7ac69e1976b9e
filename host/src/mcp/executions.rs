//! The execution tools: `list_recent_executions`, `get_execution_result` and
//! `get_agent_activity_summary` (the agent summary of the API), each with an
//! output schema, reading the caller's workspace only.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use super::handler::tool_error;
use crate::app::App;
use crate::auth::Caller;
use crate::manifest::RESERVED_NAMES;
use crate::record::{Execution, Status};
use crate::store::ExecutionFilter;
use crate::time;

// The names manifests reserve (no agent hides one of these tools).
const LIST_RECENT: &str = RESERVED_NAMES[0];
const GET_RESULT: &str = RESERVED_NAMES[1];
const SUMMARY: &str = RESERVED_NAMES[2];

const DEFAULT_LIMIT: u64 = 10;
const MAX_LIMIT: u64 = 50;
/// A summary's default period.
const DAY_MS: i64 = 24 * 3600 * 1000;

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::default(),
    }
}

fn execution_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "agent": { "type": "string" },
            "status": { "type": "string", "enum": Status::ALL.map(Status::as_str) },
            "trigger": { "type": "string" },
            "created_at": { "type": "string" },
            "duration_ms": { "type": ["integer", "null"] },
            "output": {},
            "error": { "type": ["object", "null"] },
            "cost_usd": { "type": "number" },
        },
        "required": ["id", "agent", "status", "trigger", "created_at"],
    })
}

pub fn tools() -> Vec<Tool> {
    let read_only = ToolAnnotations::new().read_only(true).open_world(false);
    vec![
        Tool::new(
            LIST_RECENT,
            "The newest executions of an agent (status, trigger, times, error, cost), newest first.",
            object(json!({
                "type": "object",
                "properties": {
                    "agent": { "type": "string", "description": "Agent name or id" },
                    "limit": { "type": "integer", "minimum": 1, "maximum": MAX_LIMIT },
                    "status": { "type": "string", "enum": Status::ALL.map(Status::as_str) },
                },
                "required": ["agent"],
            })),
        )
        .with_raw_output_schema(object(json!({
            "type": "object",
            "properties": { "executions": { "type": "array", "items": execution_schema() } },
            "required": ["executions"],
        })))
        .with_annotations(read_only.clone()),
        Tool::new(
            GET_RESULT,
            "One execution: its status, output or error, usage and cost.",
            object(json!({
                "type": "object",
                "properties": { "execution_id": { "type": "string" } },
                "required": ["execution_id"],
            })),
        )
        .with_raw_output_schema(object(execution_schema()))
        .with_annotations(read_only.clone()),
        Tool::new(
            SUMMARY,
            "An agent's activity since a time (default: the last day): executions by status, durations, tokens, \
             cost, top errors, last run.",
            object(json!({
                "type": "object",
                "properties": {
                    "agent": { "type": "string", "description": "Agent name or id" },
                    "since": { "type": "string", "description": "RFC 3339 time" },
                },
                "required": ["agent"],
            })),
        )
        .with_raw_output_schema(object(json!({
            "type": "object",
            "properties": {
                "agent_id": { "type": "string" },
                "since": { "type": "string" },
                "executions": { "type": "integer" },
                "by_status": { "type": "object", "additionalProperties": { "type": "integer" } },
                "duration_ms": { "type": "object" },
                "token_usage": { "type": "object" },
                "cost_usd": { "type": "number" },
                "top_errors": { "type": "array" },
                "last_run": { "type": ["object", "null"] },
            },
            "required": ["agent_id", "since", "executions", "by_status"],
        })))
        .with_annotations(read_only),
    ]
}

/// An execution as these tools show it.
fn brief(e: &Execution, with_output: bool) -> Value {
    let mut v = json!({
        "id": e.id,
        "agent": e.agent_name,
        "status": e.status.as_str(),
        "trigger": e.trigger.as_str(),
        "created_at": time::to_rfc3339(e.created_at),
        "duration_ms": e.timing().run_ms,
        "error": e.error.as_ref().map(|x| json!({ "code": x.code, "message": x.message })),
        "cost_usd": e.cost_usd,
    });
    if with_output {
        v["output"] = e
            .output
            .as_ref()
            .and_then(|o| serde_json::from_str(o.get()).ok())
            .unwrap_or(Value::Null);
        v["token_usage"] = serde_json::to_value(e.token_usage).unwrap_or(Value::Null);
    }
    v
}

fn structured(value: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
    r.structured_content = Some(value);
    r
}

fn arg<'a>(arguments: &'a JsonObject, name: &str) -> Result<&'a str, CallToolResult> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| tool_error(format!("`{name}` (a string) is required")))
}

/// Runs the execution tool `name`; `None` when it is not one.
pub async fn call(app: &Arc<App>, caller: &Caller, name: &str, arguments: &JsonObject) -> Option<CallToolResult> {
    let result = match name {
        LIST_RECENT => list_recent(app, caller, arguments).await,
        GET_RESULT => get_result(app, caller, arguments).await,
        SUMMARY => summary(app, caller, arguments).await,
        _ => return None,
    };
    Some(result.unwrap_or_else(|e| e))
}

fn store_error(e: impl std::fmt::Display) -> CallToolResult {
    tool_error(format!("the host's storage failed: {e}"))
}

async fn list_recent(
    app: &Arc<App>,
    caller: &Caller,
    arguments: &JsonObject,
) -> Result<CallToolResult, CallToolResult> {
    let agent = arg(arguments, "agent")?;
    let entry = app
        .registry
        .get(&caller.workspace, agent)
        .ok_or_else(|| tool_error(format!("no agent {agent:?}")))?;
    let limit = match arguments.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| tool_error(format!("`limit` is a whole number from 1 to {MAX_LIMIT}")))?,
    };
    let status = match arguments.get("status") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(Status::parse)
                .ok_or_else(|| tool_error("`status` is not an execution status"))?,
        ),
    };
    let filter = ExecutionFilter {
        workspace: caller.workspace.clone(),
        agent_id: Some(entry.agent.id.clone()),
        status,
        limit: limit as u32,
        ..ExecutionFilter::default()
    };
    let (executions, _) = app.stores.executions.list(filter).await.map_err(store_error)?;
    let executions: Vec<Value> = executions.iter().map(|e| brief(e, false)).collect();
    Ok(structured(json!({ "executions": executions })))
}

async fn get_result(app: &Arc<App>, caller: &Caller, arguments: &JsonObject) -> Result<CallToolResult, CallToolResult> {
    let id = arg(arguments, "execution_id")?;
    let missing = || tool_error(format!("no execution {id:?}"));
    match app.executions.workspace_of(id).await.map_err(store_error)? {
        Some(w) if w == caller.workspace => {}
        _ => return Err(missing()),
    }
    let execution = app.stores.executions.get(id).await.map_err(store_error)?;
    let execution = execution.ok_or_else(missing)?;
    Ok(structured(brief(&execution, true)))
}

async fn summary(app: &Arc<App>, caller: &Caller, arguments: &JsonObject) -> Result<CallToolResult, CallToolResult> {
    let agent = arg(arguments, "agent")?;
    let entry = app
        .registry
        .get(&caller.workspace, agent)
        .ok_or_else(|| tool_error(format!("no agent {agent:?}")))?;
    let since = match arguments.get("since") {
        None => time::now_ms() - DAY_MS,
        Some(v) => v
            .as_str()
            .and_then(time::parse)
            .ok_or_else(|| tool_error("`since` is not an RFC 3339 time"))?,
    };
    let summary = app
        .stores
        .executions
        .summary(&entry.agent.id, since)
        .await
        .map_err(store_error)?;
    Ok(structured(serde_json::to_value(&summary).map_err(store_error)?))
}
