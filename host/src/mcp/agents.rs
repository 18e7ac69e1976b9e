//! Agents as MCP tools: one per agent of the workspace (its name, its
//! description, its `input_schema` as the `inputSchema`), and a call that runs
//! it through the one way in (`trigger: "mcp"`). The answer is the output (as
//! structured content and as text), a tool error with the execution's code, or,
//! for a client that takes tasks and a run that outlasts a short wait, a task
//! whose id is the execution's.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, CreateTaskResult, Implementation, JsonObject, MetaObject, Tool,
};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::handler::tool_error;
use crate::app::App;
use crate::auth::Caller;
use crate::executions::{NewExecution, SubmitError, Target, WaitError};
use crate::manifest::Manifest;
use crate::record::{Execution, Status, Trigger};

/// Longest client name and version kept in an execution's metadata.
const MAX_CLIENT_NAME: usize = 128;

/// The `_meta` key naming the execution behind a result.
pub const EXECUTION_META: &str = "warden/execution_id";

/// The tools of a workspace's agents (those with a runnable version).
pub fn tools(app: &App, workspace: &str) -> Vec<Tool> {
    app.registry
        .list(workspace)
        .iter()
        .filter_map(|entry| {
            let version = entry.latest().filter(|v| v.pre.is_ok())?;
            let manifest = &version.meta.manifest;
            let description = if manifest.description.is_empty() {
                format!("Runs the Warden agent {}.", entry.agent.name)
            } else {
                manifest.description.clone()
            };
            Some(Tool::new(
                entry.agent.name.clone(),
                description,
                Arc::new(input_schema(manifest)),
            ))
        })
        .collect()
}

/// The tool's `inputSchema`: the manifest's `input_schema` when it describes an
/// object; any other schema becomes the `input` property of one; none, any
/// object.
fn input_schema(manifest: &Manifest) -> JsonObject {
    let schema = match &manifest.input_schema {
        Some(schema) if wraps(manifest) => json!({
            "type": "object",
            "properties": { "input": schema },
            "required": ["input"],
        }),
        Some(Value::Object(schema)) => Value::Object(schema.clone()),
        _ => json!({ "type": "object", "additionalProperties": true }),
    };
    match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// Whether the agent's input is the tool's `input` argument (its schema does
/// not describe an object) rather than all the arguments.
fn wraps(manifest: &Manifest) -> bool {
    match &manifest.input_schema {
        None | Some(Value::Bool(true)) => false,
        Some(Value::Object(schema)) => schema.get("type").and_then(Value::as_str) != Some("object"),
        Some(_) => true,
    }
}

/// What a call's client says of itself.
pub struct Client {
    /// It takes tasks (`io.modelcontextprotocol/tasks`).
    pub tasks: bool,
    pub info: Option<Implementation>,
    /// The W3C trace its HTTP request came in (its `traceparent`): trace id
    /// and the caller's span.
    pub trace: Option<(String, String)>,
}

/// Runs the agent named `name` with the call's arguments. `gone` ends when the
/// client no longer waits for the answer (the run goes on); a caller whose
/// request future is simply dropped passes one that never ends.
pub async fn call(
    app: &Arc<App>,
    caller: &Caller,
    name: &str,
    mut arguments: JsonObject,
    client: Client,
    gone: impl Future<Output = ()>,
) -> Result<CallToolResponse, ErrorData> {
    let entry = app
        .registry
        .get(&caller.workspace, name)
        .filter(|e| e.agent.name == name)
        .ok_or_else(|| ErrorData::invalid_params(format!("no tool named {name:?}"), None))?;
    let wrapped = entry.latest().is_some_and(|v| wraps(&v.meta.manifest));
    let input = if wrapped {
        arguments.remove("input").unwrap_or(Value::Null)
    } else {
        Value::Object(arguments)
    };
    let input = RawValue::from_string(input.to_string())
        .map_err(|e| ErrorData::invalid_params(format!("arguments: {e}"), None))?;
    let tasks = client.tasks;
    let mut new = NewExecution::new(
        Target::Agent {
            workspace: caller.workspace.clone(),
            agent: entry.agent.id.clone(),
            version: None,
        },
        input.into(),
        Trigger::Mcp,
    );
    if let Some(client) = client.info {
        let named: String = format!("{} {}", client.name, client.version)
            .chars()
            .take(MAX_CLIENT_NAME)
            .collect();
        let metadata = json!({ "mcp_client": named });
        new.metadata = RawValue::from_string(metadata.to_string()).ok().map(Into::into);
    }
    // A task may be read after a restart: its queued record is stored first.
    new.durable = tasks;
    (new.trace_id, new.trace_parent) = client.trace.unzip();
    let accepted = match app.executions.submit(new).await {
        Ok(accepted) => accepted,
        Err(e) => return Ok(not_started(&e).into()),
    };
    let id = accepted.execution.id.clone();
    let end = app.executions.last_attempt(&id, accepted.done);
    tokio::pin!(end);
    if tasks {
        let wait = Duration::from_millis(app.config.mcp.task_after_ms);
        return match tokio::time::timeout(wait, &mut end).await {
            // Still running, waiting for an approval (unloaded), or the host
            // closing (the execution runs after the restart): a task.
            Err(_) | Ok(Err(WaitError::Closing(_))) => Ok(CallToolResponse::Task(CreateTaskResult::new(
                super::tasks::seed(app, &id).await?,
            ))),
            Ok(Ok(e)) if e.status == Status::AwaitingApproval => Ok(CallToolResponse::Task(CreateTaskResult::new(
                super::tasks::seed(app, &id).await?,
            ))),
            Ok(ended) => Ok(ended_result(&id, ended).into()),
        };
    }
    tokio::select! {
        biased;
        ended = &mut end => Ok(ended_result(&id, ended).into()),
        // The client cancelled the call or went away (or the session ended):
        // the run goes on, recorded, as any accepted execution does.
        () = gone => Err(ErrorData::internal_error(
            format!("the call ended before execution {id} did; it goes on (cancel it with tasks or the API)"),
            None,
        )),
    }
}

fn ended_result(id: &str, ended: Result<Arc<Execution>, WaitError>) -> CallToolResult {
    match ended {
        Ok(execution) => result(&execution),
        Err(e) => {
            let mut r = tool_error(e.to_string());
            r.structured_content =
                Some(json!({ "execution_id": id, "error": { "code": "not_ended", "message": e.to_string() } }));
            r
        }
    }
}

/// A call the host refused to run.
fn not_started(e: &SubmitError) -> CallToolResult {
    let code = match e {
        SubmitError::InvalidInput(_) => "invalid_input",
        SubmitError::InputTooLarge { .. } => "input_too_large",
        SubmitError::QueueFull(_) => "queue_full",
        SubmitError::ShuttingDown => "shutting_down",
        _ => "not_started",
    };
    let mut result = tool_error(format!("{code}: {e}"));
    result.structured_content = Some(json!({ "error": { "code": code, "message": e.to_string() } }));
    result
}

/// An execution's record as a tool result: its output when it completed, a
/// tool error with its code when it did not, and a note when it waits for an
/// approval (its id in `_meta` in every case).
pub fn result(execution: &Execution) -> CallToolResult {
    let id = &execution.id;
    let mut result = match execution.status {
        Status::Completed => {
            let output: Value = execution
                .output
                .as_ref()
                .and_then(|o| serde_json::from_str(o.get()).ok())
                .unwrap_or(Value::Null);
            let text = match &output {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let structured = match output {
                Value::Object(map) => Value::Object(map),
                other => json!({ "result": other }),
            };
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            r.structured_content = Some(structured);
            r
        }
        Status::AwaitingApproval => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(format!(
                "execution {id} waits for a human approval; once it is decided, get_execution_result gives its output"
            ))]);
            r.structured_content = Some(json!({ "execution_id": id, "status": execution.status.as_str() }));
            r
        }
        status => {
            let (code, message) = execution
                .error
                .as_ref()
                .map(|e| (e.code.clone(), e.message.clone()))
                .unwrap_or_else(|| (status.as_str().to_owned(), String::new()));
            let mut r = tool_error(format!("execution {id} {}: {code}: {message}", status.as_str()));
            r.structured_content = Some(json!({
                "execution_id": id,
                "status": status.as_str(),
                "error": { "code": code, "message": message },
            }));
            r
        }
    };
    let mut meta = MetaObject::new();
    meta.0.insert(EXECUTION_META.into(), Value::String(id.clone()));
    result.meta = Some(meta);
    result
}
