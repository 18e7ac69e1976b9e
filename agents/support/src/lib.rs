//! `support`: answers a customer's question with a model, following its tool calls
//! (`lookup_order`, answered from the agent's `kv` store) until it answers.
//! Returns `{answer, sources}`. Runs offline with the scripted provider and against
//! a real OpenAI-compatible or Anthropic endpoint when the host configures one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use warden_sdk::llm::{self, Message, ToolDefinition};
use warden_sdk::{AgentError, log, step, tools};

/// Model turns before giving up.
const MAX_TURNS: usize = 6;

#[derive(Deserialize)]
struct Input {
    question: String,
    /// Orders to store first (`{"A-1001": {...}}`), for demos and tests.
    #[serde(default)]
    orders: Map<String, Value>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Serialize)]
struct Output {
    answer: String,
    sources: Vec<String>,
}

fn run(input: Input) -> Result<Output, AgentError> {
    for (id, order) in &input.orders {
        tools::call(
            "kv",
            &json!({ "op": "set", "key": format!("order:{id}"), "value": order }),
        )?;
    }
    let lookup = ToolDefinition::new(
        "lookup_order",
        "Look up a customer's order by its id",
        json!({ "type": "object", "properties": { "order_id": { "type": "string" } }, "required": ["order_id"] }),
    );
    let mut options = llm::options();
    options.model = input.model;
    let mut messages = vec![
        Message::system("You are a support agent. Use lookup_order for questions about orders. Be brief."),
        Message::user(input.question),
    ];
    let mut sources = Vec::new();
    for _ in 0..MAX_TURNS {
        let completion = llm::chat(&messages, std::slice::from_ref(&lookup), &options)?;
        if completion.tool_calls.is_empty() {
            return Ok(Output {
                answer: completion.content,
                sources,
            });
        }
        messages.push(Message::assistant_calls(&completion));
        for call in &completion.tool_calls {
            let args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
            let order_id = args["order_id"].as_str().unwrap_or_default();
            log::info(format!("looking up order {order_id}"));
            let found = tools::call("kv", &json!({ "op": "get", "key": format!("order:{order_id}") }))?;
            let result = if found["found"] == true {
                sources.push(format!("kv:order:{order_id}"));
                found["value"].to_string()
            } else {
                format!("no order {order_id}")
            };
            step(
                "lookup_order",
                &json!({ "order_id": order_id, "found": found["found"] }),
            );
            messages.push(Message::tool_result(call.id.clone(), result));
        }
    }
    Err(AgentError::new(
        "too_many_turns",
        format!("no answer after {MAX_TURNS} model turns"),
    ))
}

warden_sdk::agent!(run);
