//! `bulky`: about 2 MB of generated code behind one agent: `{"n": k}` runs the
//! k-th generated function. Exists to measure deploy (validate + compile) time.

use serde_json::{Value, json};
use warden_sdk::AgentError;

include!(concat!(env!("OUT_DIR"), "/generated.rs"));

fn run(input: Value) -> Result<Value, AgentError> {
    let n = input.get("n").and_then(Value::as_u64).unwrap_or(0);
    let f = TABLE[(n as usize) % TABLE.len()];
    Ok(json!({ "value": f(n) }))
}

warden_sdk::agent!(run);
