//! Anthropic Messages API: `POST {base_url}/v1/messages`, streamed (SSE events
//! `message_start`, `content_block_*`, `message_delta`, `message_stop`) or not.
//! System messages become `system`; tool results become `tool_result` blocks.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

use super::sse::EventStream;
use super::{
    ChatRequest, Completion, Delta, FinishReason, OnDelta, ProviderError, Role, ToolCall, Usage, malformed, send,
};
use crate::config::ProviderConfig;

const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; this is used when the guest gives none.
const DEFAULT_MAX_TOKENS: u32 = 1024;

fn body(config: &ProviderConfig, request: &ChatRequest) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in &request.messages {
        match m.role {
            Role::System => system.push(m.content.clone()),
            Role::User => messages.push(json!({ "role": "user", "content": m.content })),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({ "type": "text", "text": m.content }));
                }
                for c in &m.tool_calls {
                    let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": input }));
                }
                messages.push(json!({ "role": "assistant", "content": blocks }));
            }
            Role::Tool => messages.push(json!({
                "role": "user",
                "content": [{
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                }],
            })),
        }
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "stream": config.stream,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                let schema: Value = serde_json::from_str(&t.parameters).unwrap_or_else(|_| json!({ "type": "object" }));
                json!({ "name": t.name, "description": t.description, "input_schema": schema })
            })
            .collect();
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    body
}

fn finish_reason(text: Option<&str>) -> FinishReason {
    match text {
        Some("end_turn") | Some("stop_sequence") | None => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(_) => FinishReason::Other,
    }
}

/// Anthropic's `input_tokens` excludes cached tokens; ours counts all of them.
fn add_usage(total: &mut Usage, v: &Value) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let cache_read = n(&v["cache_read_input_tokens"]);
    let cache_write = n(&v["cache_creation_input_tokens"]);
    if v.get("input_tokens").is_some() {
        total.prompt = n(&v["input_tokens"]) + cache_read + cache_write;
        total.cache_read = cache_read;
        total.cache_write = cache_write;
    }
    if v.get("output_tokens").is_some() {
        total.completion = n(&v["output_tokens"]);
    }
    total.total = total.prompt + total.completion;
}

pub async fn chat(
    http: &reqwest::Client,
    config: &ProviderConfig,
    key: Option<&str>,
    traceparent: Option<&str>,
    request: &ChatRequest,
    on_delta: OnDelta<'_>,
) -> Result<Completion, ProviderError> {
    let name = config.name.as_str();
    let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
    let mut req = http
        .post(url)
        .header("anthropic-version", API_VERSION)
        .json(&body(config, request));
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    if let Some(traceparent) = traceparent {
        req = req.header("traceparent", traceparent);
    }
    let response = send(name, req).await?;
    if !config.stream || super::answered_whole(&response) {
        let v: Value = response
            .json()
            .await
            .map_err(|e| ProviderError::permanent(format!("{name}: malformed answer: {e}")))?;
        let blocks = v["content"]
            .as_array()
            .ok_or_else(|| ProviderError::permanent(format!("{name}: malformed answer: no content")))?;
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        for b in blocks {
            match b["type"].as_str() {
                Some("text") => content.push_str(b["text"].as_str().unwrap_or_default()),
                Some("tool_use") => tool_calls.push(ToolCall {
                    id: b["id"].as_str().unwrap_or_default().to_owned(),
                    name: b["name"].as_str().unwrap_or_default().to_owned(),
                    arguments: b["input"].to_string(),
                }),
                _ => {}
            }
        }
        let mut usage = Usage::default();
        add_usage(&mut usage, &v["usage"]);
        return Ok(Completion {
            content,
            tool_calls,
            usage,
            model: v["model"].as_str().unwrap_or(&request.model).to_owned(),
            finish_reason: finish_reason(v["stop_reason"].as_str()),
            first_token_at: Some(Instant::now()),
            usage_estimated: false,
        });
    }

    let mut events = EventStream::new(name, response);
    let mut content = String::new();
    let mut calls: BTreeMap<u64, ToolCall> = BTreeMap::new();
    let mut usage = Usage::default();
    let mut model = request.model.clone();
    let mut stop = None;
    let mut first_token_at = None;
    let mut finished = false;
    while let Some(event) = events.next().await? {
        if event.data.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&event.data).map_err(|e| malformed(name, &e, &event.data))?;
        let kind = event
            .name
            .as_deref()
            .or(v["type"].as_str())
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "message_start" => {
                if let Some(m) = v["message"]["model"].as_str() {
                    model = m.to_owned();
                }
                add_usage(&mut usage, &v["message"]["usage"]);
            }
            "content_block_start" => {
                let block = &v["content_block"];
                if block["type"] == "tool_use" {
                    first_token_at.get_or_insert_with(Instant::now);
                    calls.insert(
                        v["index"].as_u64().unwrap_or(0),
                        ToolCall {
                            id: block["id"].as_str().unwrap_or_default().to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                            arguments: String::new(),
                        },
                    );
                }
            }
            "content_block_delta" => {
                let delta = &v["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        first_token_at.get_or_insert_with(Instant::now);
                        let text = delta["text"].as_str().unwrap_or_default();
                        on_delta(Delta::Content, text);
                        content.push_str(text);
                    }
                    Some("input_json_delta") => {
                        if let Some(call) = calls.get_mut(&v["index"].as_u64().unwrap_or(0)) {
                            call.arguments
                                .push_str(delta["partial_json"].as_str().unwrap_or_default());
                        }
                    }
                    Some("thinking_delta") => {
                        first_token_at.get_or_insert_with(Instant::now);
                        on_delta(Delta::Thinking, delta["thinking"].as_str().unwrap_or_default());
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = v["delta"]["stop_reason"].as_str() {
                    stop = Some(reason.to_owned());
                }
                add_usage(&mut usage, &v["usage"]);
            }
            "message_stop" => {
                finished = true;
                break;
            }
            "error" => {
                let message = v["error"]["message"].as_str().unwrap_or("unknown error");
                let overloaded = v["error"]["type"] == "overloaded_error";
                let e = format!("{name} stream error: {message}");
                return Err(if overloaded {
                    ProviderError::transient(e)
                } else {
                    ProviderError::permanent(e)
                });
            }
            _ => {}
        }
    }
    if !finished {
        return Err(ProviderError::transient(format!(
            "{name}: the stream ended before message_stop"
        )));
    }
    let tool_calls = calls
        .into_values()
        .map(|mut c| {
            if c.arguments.is_empty() {
                c.arguments = "{}".to_owned();
            }
            c
        })
        .collect();
    Ok(Completion {
        content,
        tool_calls,
        usage,
        model,
        finish_reason: finish_reason(stop.as_deref()),
        first_token_at,
        usage_estimated: false,
    })
}
