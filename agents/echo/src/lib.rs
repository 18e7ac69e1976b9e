//! `echo`: returns its input and a greeting; writes a log line and a step.

use serde::Serialize;
use serde_json::Value;
use warden_sdk::{AgentError, log, step};

#[derive(Serialize)]
struct Output {
    echo: Value,
    greeting: String,
}

fn run(input: Value) -> Result<Output, AgentError> {
    let name = input.get("name").and_then(Value::as_str).unwrap_or("world");
    let greeting = format!("Hello, {name}!");
    log::info(format!("echoing {} bytes of input", input.to_string().len()));
    step("greet", &serde_json::json!({ "name": name }));
    Ok(Output { echo: input, greeting })
}

warden_sdk::agent!(run);
