//! `toolbox`: calls one tool (`{"tool": "...", "args": {...}}`) and returns
//! `{"result": ...}`; a tool's failure fails the run with `tool_error`. With
//! `"model"`, asks that model first and returns its answer as `"answer"` (to
//! test model allowlists and providers; `"max_tokens"` caps it); with `"artifacts"`, stores those first;
//! with `"fetch"`, GETs that URL with its own request (`warden_sdk::http`) and
//! returns `{"status", "body"}` as `"fetched"`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_sdk::llm::{self, Message};
use warden_sdk::{AgentError, artifacts, http, tools};

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    fetch: Option<String>,
    /// Artifacts to store first: `{"name", "media_type", "text", "repeat"}`.
    #[serde(default)]
    artifacts: Vec<ArtifactSpec>,
}

#[derive(Deserialize)]
struct ArtifactSpec {
    name: String,
    media_type: String,
    #[serde(default)]
    text: String,
    #[serde(default = "one")]
    repeat: usize,
}

fn one() -> usize {
    1
}

#[derive(Serialize)]
struct Output {
    result: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetched: Option<Value>,
    available: Vec<String>,
    artifact_ids: Vec<String>,
}

fn run(input: Input) -> Result<Output, AgentError> {
    let answer = match input.model {
        Some(model) => {
            let mut options = llm::options();
            options.model = Some(model);
            options.max_tokens = input.max_tokens;
            Some(llm::chat(&[Message::user("hello")], &[], &options)?.content)
        }
        None => None,
    };
    let mut artifact_ids = Vec::new();
    for a in &input.artifacts {
        let data = a.text.repeat(a.repeat);
        artifact_ids.push(artifacts::put(&a.name, &a.media_type, data.as_bytes())?);
    }
    let fetched = match &input.fetch {
        Some(url) => {
            let response = http::get(url)?;
            Some(serde_json::json!({
                "status": response.status,
                "body": String::from_utf8_lossy(&response.body),
            }))
        }
        None => None,
    };
    let available = tools::available().into_iter().map(|t| t.name).collect();
    let result = match input.tool {
        Some(tool) => tools::call(&tool, &input.args)?,
        None => Value::Null,
    };
    Ok(Output {
        result,
        answer,
        fetched,
        available,
        artifact_ids,
    })
}

warden_sdk::agent!(run);
