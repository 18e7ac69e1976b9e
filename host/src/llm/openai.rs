//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp server):
//! `POST {base_url}/chat/completions`, streamed (SSE, usage in the last chunk) or
//! not.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

use super::sse::EventStream;
use super::{
    ChatRequest, Completion, Delta, FinishReason, OnDelta, ProviderError, Role, ToolCall, Usage, malformed, send,
};
use crate::config::ProviderConfig;

fn body(config: &ProviderConfig, request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            let mut msg = json!({ "role": role, "content": m.content });
            if !m.tool_calls.is_empty() {
                msg["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
                    .collect();
            }
            if let Some(id) = &m.tool_call_id {
                msg["tool_call_id"] = json!(id);
            }
            msg
        })
        .collect();
    let mut body = json!({ "model": request.model, "messages": messages, "stream": config.stream });
    if config.stream {
        body["stream_options"] = json!({ "include_usage": true });
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                let parameters: Value = serde_json::from_str(&t.parameters).unwrap_or_else(|_| json!({ "type": "object" }));
                json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": parameters } })
            })
            .collect();
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = request.max_tokens {
        body[config.max_tokens_param()] = json!(n);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    body
}

fn finish_reason(text: Option<&str>) -> FinishReason {
    match text {
        Some("stop") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(_) => FinishReason::Other,
    }
}

fn usage(v: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let prompt = n(&v["prompt_tokens"]);
    let completion = n(&v["completion_tokens"]);
    Usage {
        prompt,
        completion,
        total: v["total_tokens"].as_u64().unwrap_or(prompt + completion),
        cache_read: n(&v["prompt_tokens_details"]["cached_tokens"]),
        cache_write: 0,
    }
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
    let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
    let mut req = http.post(url).json(&body(config, request));
    if let Some(key) = key {
        req = req.bearer_auth(key);
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
        let msg = &v["choices"][0]["message"];
        if msg.is_null() {
            return Err(ProviderError::permanent(format!(
                "{name}: malformed answer: no choices[0].message"
            )));
        }
        let tool_calls = msg["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| ToolCall {
                        id: c["id"].as_str().unwrap_or_default().to_owned(),
                        name: c["function"]["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: c["function"]["arguments"].as_str().unwrap_or("{}").to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Completion {
            content: msg["content"].as_str().unwrap_or_default().to_owned(),
            tool_calls,
            usage: usage(&v["usage"]),
            model: v["model"].as_str().unwrap_or(&request.model).to_owned(),
            finish_reason: finish_reason(v["choices"][0]["finish_reason"].as_str()),
            first_token_at: Some(Instant::now()),
            usage_estimated: false,
        });
    }

    let mut events = EventStream::new(name, response);
    let mut content = String::new();
    let mut calls: BTreeMap<u64, ToolCall> = BTreeMap::new();
    let mut usage_seen = Usage::default();
    let mut model = request.model.clone();
    let mut finish = None;
    let mut first_token_at = None;
    let mut done = false;
    while let Some(event) = events.next().await? {
        if event.data.trim() == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(&event.data).map_err(|e| malformed(name, &e, &event.data))?;
        if let Some(message) = chunk["error"]["message"].as_str() {
            return Err(ProviderError::transient(format!("{name} stream error: {message}")));
        }
        if let Some(m) = chunk["model"].as_str() {
            model = m.to_owned();
        }
        if chunk["usage"].is_object() {
            usage_seen = usage(&chunk["usage"]);
        }
        let choice = &chunk["choices"][0];
        if let Some(text) = choice["delta"]["content"].as_str()
            && !text.is_empty()
        {
            first_token_at.get_or_insert_with(Instant::now);
            on_delta(Delta::Content, text);
            content.push_str(text);
        }
        if let Some(deltas) = choice["delta"]["tool_calls"].as_array() {
            first_token_at.get_or_insert_with(Instant::now);
            for d in deltas {
                let index = d["index"].as_u64().unwrap_or(0);
                let call = calls.entry(index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                if let Some(id) = d["id"].as_str() {
                    call.id = id.to_owned();
                }
                if let Some(n) = d["function"]["name"].as_str() {
                    call.name.push_str(n);
                }
                if let Some(a) = d["function"]["arguments"].as_str() {
                    call.arguments.push_str(a);
                }
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
    }
    if !done && finish.is_none() {
        return Err(ProviderError::transient(format!(
            "{name}: the stream ended before the answer did"
        )));
    }
    Ok(Completion {
        content,
        tool_calls: calls.into_values().collect(),
        usage: usage_seen,
        model,
        finish_reason: finish_reason(finish.as_deref()),
        first_token_at,
        usage_estimated: false,
    })
}
