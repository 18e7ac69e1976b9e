//! `warden:agent/tools`: the tools the manifest allows, each call recorded on the
//! execution (`tool_calls`, `n_tool_calls`, `timing.tool_ms`, a `tool` step) and
//! capped per run.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::runtime::bindings::warden::agent::tools::{Error, Host, ToolInfo};
use crate::runtime::{RunState, ToolCallRecord};
use crate::tools::{CATALOG, ToolError, browser};

impl Host for RunState {
    fn available(&mut self) -> Vec<ToolInfo> {
        CATALOG
            .iter()
            .filter(|t| self.grants.tools.iter().any(|g| g == t.name))
            .map(|t| ToolInfo {
                name: t.name.into(),
                description: t.description.into(),
                parameters: t.parameters.into(),
            })
            .collect()
    }

    async fn call(&mut self, name: String, arguments: String) -> Result<String, Error> {
        if !self.grants.tools.iter().any(|g| g == &name) {
            return Err(Error::UnknownTool(format!(
                "tool {name:?} is not in this agent's manifest (allowed: {})",
                self.grants.tools.join(", ")
            )));
        }
        let max = self.grants.tool_host.config.max_tool_calls as usize;
        if self.tool_calls.len() >= max {
            return Err(Error::LimitExceeded(format!(
                "this run already made {max} tool calls, its cap"
            )));
        }
        let args: Value = serde_json::from_str(&arguments)
            .map_err(|e| Error::InvalidArguments(format!("arguments are not JSON: {e}")))?;
        let id = format!("call_{}", self.tool_calls.len() + 1);
        let started = Instant::now();
        self.grants
            .events
            .emit("tool_start", &json!({ "id": id, "name": name, "arguments": args }));
        let result = if name == "browser" {
            self.browse(&args).await
        } else {
            let host = Arc::clone(&self.grants.tool_host);
            let ctx = self.grants.ctx.clone();
            let (tool, args) = (name.clone(), args.clone());
            super::off_fiber(move || async move { host.call(&ctx, &tool, args).await })
                .await
                .unwrap_or_else(|e| Err(ToolError::Failed(format!("the tool call failed in the host: {e}"))))
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let (result_value, error) = match &result {
            Ok(v) => (v.clone(), None),
            Err(e) => (Value::Null, Some(e.to_string())),
        };
        self.grants.events.emit(
            "tool_end",
            &json!({ "id": id, "name": name, "duration_ms": duration_ms, "error": error }),
        );
        self.record.step(
            "tool".into(),
            json!({ "id": id, "name": name, "duration_ms": duration_ms, "error": error }).to_string(),
        );
        self.tool_calls.push(ToolCallRecord {
            id,
            name,
            arguments: args,
            result: result_value,
            error,
            duration_ms,
        });
        match result {
            Ok(v) => Ok(v.to_string()),
            Err(ToolError::InvalidArguments(m)) => Err(Error::InvalidArguments(m)),
            Err(ToolError::Failed(m)) => Err(Error::Failed(m)),
        }
    }
}

impl RunState {
    /// The `browser` tool: the page's title (and text, if asked), with its
    /// screenshot stored as a PNG artifact of this run.
    async fn browse(&mut self, args: &Value) -> Result<Value, ToolError> {
        let url = args["url"]
            .as_str()
            .ok_or_else(|| ToolError::InvalidArguments("`url` (a string) is required".into()))?;
        let page = browser::snapshot(&self.grants.tool_host.config, &self.grants.ctx, url).await?;
        let bytes = page.png.len();
        let name = format!("screenshot-{}.png", self.artifacts.len() + 1);
        let artifact = self
            .store_artifact(name, "image/png".into(), page.png)
            .await
            .map_err(|e| ToolError::Failed(format!("storing the screenshot: {e:?}")))?;
        let mut result = json!({
            "url": url,
            "title": page.title,
            "artifact_id": artifact.id,
            "screenshot_bytes": bytes,
        });
        if args["text"] == true {
            result["text"] = json!(page.text);
        }
        Ok(result)
    }
}
