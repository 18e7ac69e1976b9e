//! `kv`: a small persistent key-value store per agent. Values are JSON.

use serde_json::{Value, json};

use super::{ToolCtx, ToolError, str_arg};
use crate::ports::Reach;
use crate::store::KvStore;
use crate::time;

const MAX_KEY_BYTES: usize = 256;
const MAX_VALUE_BYTES: usize = 64 << 10;
const MAX_LIST: usize = 1000;

/// Reading reaches nothing; writing reaches only the host's store.
pub fn reach(args: &Value) -> Reach {
    match args["op"].as_str() {
        Some("set" | "delete") => Reach::Store,
        _ => Reach::Nothing,
    }
}

pub async fn call(store: &dyn KvStore, ctx: &ToolCtx, args: Value) -> Result<Value, ToolError> {
    let op = str_arg(&args, "op")?;
    let agent = ctx.agent_id.as_str();
    let failed = |e: crate::store::StoreError| ToolError::Failed(format!("kv: {e}"));
    match op {
        "get" => {
            let value = store.get(agent, key(&args)?).await.map_err(failed)?;
            let value = value.map(|v| serde_json::from_str(&v).unwrap_or(Value::String(v)));
            Ok(json!({ "found": value.is_some(), "value": value }))
        }
        "set" => {
            let key = key(&args)?;
            let value = args.get("value").cloned().unwrap_or(Value::Null).to_string();
            if value.len() > MAX_VALUE_BYTES {
                return Err(ToolError::InvalidArguments(format!(
                    "value over {MAX_VALUE_BYTES} bytes"
                )));
            }
            store.set(agent, key, value, time::now_ms()).await.map_err(failed)?;
            Ok(json!({ "ok": true }))
        }
        "delete" => {
            store.delete(agent, key(&args)?).await.map_err(failed)?;
            Ok(json!({ "ok": true }))
        }
        "list" => {
            let prefix = args["prefix"].as_str().unwrap_or("");
            let keys = store.list(agent, prefix, MAX_LIST).await.map_err(failed)?;
            Ok(json!({ "keys": keys }))
        }
        other => Err(ToolError::InvalidArguments(format!(
            "op {other:?} is not one of get, set, delete, list"
        ))),
    }
}

fn key(args: &Value) -> Result<&str, ToolError> {
    let key = str_arg(args, "key")?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ToolError::InvalidArguments(format!(
            "key must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(key)
}
