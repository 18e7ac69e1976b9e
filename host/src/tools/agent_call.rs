//! `agent_call`: runs another deployed agent as a child execution (`trigger:
//! "agent"`, `parent_id` and `depth` on its record) and returns its outcome.
//! Nesting deeper than the host's `agent_call_max_depth` is refused.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ToolCtx, ToolError, str_arg};
use crate::app::App;
use crate::config::ToolsConfig;
use crate::scheduler::{self, DEFAULT_PRIORITY, Request};

pub async fn call(app: &Arc<App>, config: &ToolsConfig, ctx: &ToolCtx, args: Value) -> Result<Value, ToolError> {
    let agent = str_arg(&args, "agent")?;
    let depth = ctx.depth + 1;
    if depth > config.agent_call_max_depth {
        return Err(ToolError::Failed(format!(
            "refused: agent_call depth limit of {} reached",
            config.agent_call_max_depth
        )));
    }
    // Only agents of the caller's own workspace.
    let entry = app
        .registry
        .workspace_of(&ctx.agent_id)
        .and_then(|workspace| app.registry.get(&workspace, agent))
        .ok_or_else(|| ToolError::Failed(format!("no agent named {agent:?}")))?;
    let version = entry
        .latest()
        .ok_or_else(|| ToolError::Failed(format!("agent {agent:?} has no runnable version")))?
        .clone();
    let input = args.get("input").cloned().unwrap_or(Value::Null).to_string();
    let input = RawValue::from_string(input).map_err(|e| ToolError::InvalidArguments(format!("input: {e}")))?;
    if let Err(errors) = version.check_input(&input).await {
        return Err(ToolError::InvalidArguments(format!(
            "input does not match {agent:?}'s input_schema: {}",
            crate::manifest::describe(&errors)
        )));
    }
    let metadata = RawValue::from_string("{}".into()).map_err(|e| ToolError::Failed(e.to_string()))?;
    let mut request = Request::new(input, metadata, DEFAULT_PRIORITY, "agent");
    request.parent = Some((ctx.execution_id.clone(), depth));
    let mut accepted = scheduler::submit(app, &entry, version, request, false)
        .await
        .map_err(|e| ToolError::Failed(format!("agent_call: {e}")))?;
    let child = accepted.execution.id.clone();
    let ended = accepted
        .done
        .wait_for(Option::is_some)
        .await
        .map_err(|_| ToolError::Failed(format!("child execution {child} ended without a record")))?
        .clone()
        .ok_or_else(|| ToolError::Failed(format!("child execution {child} ended without a record")))?;
    Ok(json!({
        "execution_id": child,
        "status": ended.status,
        "output": ended.output,
        "error": ended.error,
    }))
}
