//! `notes` (a test fixture): makes the memory operations its input lists, in
//! order, on the session memory (`store` absent) or an attached store, and
//! returns each one's result; the first failure ends the run with its code.
//! Input: `{"ops": [{"op": "set"|"get"|"delete"|"keys", "store"?, "key"?, "value"?, "prefix"?}]}`.

use serde::Deserialize;
use serde_json::Value;
use warden_sdk::{AgentError, conversation, memory};

#[derive(Deserialize)]
struct Op {
    op: String,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    prefix: String,
}

#[derive(Deserialize)]
struct Input {
    ops: Vec<Op>,
}

fn run(input: Input) -> Result<Value, AgentError> {
    let mut results = Vec::new();
    for op in input.ops {
        let memory = match &op.store {
            Some(name) => memory::store(name),
            None => memory::session(),
        };
        let result = match op.op.as_str() {
            "set" => memory.set(&op.key, &op.value).map(|()| Value::Bool(true))?,
            "get" => memory.get::<Value>(&op.key)?.unwrap_or(Value::Null),
            "delete" => Value::Bool(memory.delete(&op.key)?),
            "keys" => Value::from(memory.keys(&op.prefix)?),
            "history" => {
                let t = conversation::history();
                serde_json::json!({ "messages": t.messages.len(), "truncated": t.truncated })
            }
            other => return Err(AgentError::invalid_input(format!("no op {other:?}"))),
        };
        results.push(result);
    }
    Ok(Value::from(results))
}

warden_sdk::agent!(run);
