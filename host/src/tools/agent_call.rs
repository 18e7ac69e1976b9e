//! `agent_call`: runs another deployed agent of the caller's workspace as a child
//! execution (`trigger: "agent"`, `parent_id` and `depth` on its record) and
//! returns its outcome. Nesting deeper than the host's `agent_call_max_depth` is
//! refused.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ToolCtx, ToolError, str_arg};
use crate::config::ToolsConfig;

pub async fn call(config: &ToolsConfig, ctx: &ToolCtx, args: Value) -> Result<Value, ToolError> {
    let agent = str_arg(&args, "agent")?;
    if ctx.depth + 1 > config.agent_call_max_depth {
        return Err(ToolError::Failed(format!(
            "refused: agent_call depth limit of {} reached",
            config.agent_call_max_depth
        )));
    }
    let input = args.get("input").cloned().unwrap_or(Value::Null).to_string();
    let input = RawValue::from_string(input).map_err(|e| ToolError::InvalidArguments(format!("input: {e}")))?;
    let ended = ctx.children.call(ctx, agent, input).await?;
    // The child's output was checked when it arrived; one stored before that
    // check existed and unreadable now is reported, not unwrapped.
    let output = match &ended.output {
        Some(raw) => serde_json::from_str::<Value>(raw.get())
            .map_err(|e| ToolError::Failed(format!("the child's output cannot be read: {e}")))?,
        None => Value::Null,
    };
    let error = serde_json::to_value(&ended.error).map_err(|e| ToolError::Failed(format!("the child's error: {e}")))?;
    Ok(json!({
        "execution_id": ended.execution_id,
        "status": ended.status,
        "output": output,
        "error": error,
    }))
}
