//! `kv`: a small persistent key-value store per agent, in SQLite. Values are JSON.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use super::{ToolCtx, ToolError, str_arg};
use crate::app::App;
use crate::store::writer::Write;
use crate::time;

const MAX_KEY_BYTES: usize = 256;
const MAX_VALUE_BYTES: usize = 64 << 10;
const MAX_LIST: usize = 1000;

pub async fn call(app: &Arc<App>, ctx: &ToolCtx, args: Value) -> Result<Value, ToolError> {
    let op = str_arg(&args, "op")?;
    let agent = ctx.agent_id.clone();
    let failed = |e: anyhow::Error| ToolError::Failed(format!("kv: {e:#}"));
    match op {
        "get" => {
            let key = key(&args)?;
            let value = app
                .store
                .read(move |conn| {
                    Ok(conn
                        .prepare_cached("SELECT value FROM kv WHERE agent_id = ?1 AND key = ?2")?
                        .query_row(params![agent, key], |r| r.get::<_, String>(0))
                        .optional()?)
                })
                .await
                .map_err(failed)?;
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
            app.store
                .writer
                .commit(Write::KvSet {
                    agent_id: agent,
                    key,
                    value,
                    updated_at: time::now_ms(),
                })
                .await
                .map_err(|e| ToolError::Failed(format!("kv: {e}")))?;
            Ok(json!({ "ok": true }))
        }
        "delete" => {
            let key = key(&args)?;
            app.store
                .writer
                .commit(Write::KvDelete { agent_id: agent, key })
                .await
                .map_err(|e| ToolError::Failed(format!("kv: {e}")))?;
            Ok(json!({ "ok": true }))
        }
        "list" => {
            let prefix = args["prefix"].as_str().unwrap_or("").to_owned();
            let keys = app
                .store
                .read(move |conn| {
                    let mut stmt = conn.prepare_cached(
                        "SELECT key FROM kv WHERE agent_id = ?1 AND substr(key, 1, length(?2)) = ?2
                         ORDER BY key LIMIT ?3",
                    )?;
                    let keys = stmt
                        .query_map(params![agent, prefix, MAX_LIST as i64], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(keys)
                })
                .await
                .map_err(failed)?;
            Ok(json!({ "keys": keys }))
        }
        other => Err(ToolError::InvalidArguments(format!(
            "op {other:?} is not one of get, set, delete, list"
        ))),
    }
}

fn key(args: &Value) -> Result<String, ToolError> {
    let key = str_arg(args, "key")?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ToolError::InvalidArguments(format!(
            "key must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(key.to_owned())
}
