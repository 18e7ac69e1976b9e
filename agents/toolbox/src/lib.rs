//! `toolbox`: calls one tool (`{"tool": "...", "args": {...}}`) and returns
//! `{"result": ...}`; a tool's failure fails the run with `tool_error`. With
//! `"model"`, asks that model first (to test model allowlists).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_sdk::llm::{self, Message};
use warden_sdk::{AgentError, tools};

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Serialize)]
struct Output {
    result: Value,
    available: Vec<String>,
}

fn run(input: Input) -> Result<Output, AgentError> {
    if let Some(model) = input.model {
        let mut options = llm::options();
        options.model = Some(model);
        llm::chat(&[Message::user("hello")], &[], &options)?;
    }
    let available = tools::available().into_iter().map(|t| t.name).collect();
    let result = match input.tool {
        Some(tool) => tools::call(&tool, &input.args)?,
        None => Value::Null,
    };
    Ok(Output { result, available })
}

warden_sdk::agent!(run);
