//! The offline `scripted` provider: deterministic answers with plausible token
//! counts, no key, no network. Given tools and a fresh user message it calls the
//! first tool (arguments filled from the message), so tool loops are exercised;
//! otherwise it answers, quoting tool results when there are some. Every record it
//! touches says `scripted`.

use serde_json::{Map, Value};

use super::{ChatRequest, Completion, FinishReason, Message, Role, ToolCall, Usage};

/// Most bytes of a user's text or of a tool result the provider quotes, and
/// most string arguments it fills: its answers stay small whatever it is sent.
const MAX_QUOTE_BYTES: usize = 1024;
const MAX_FILLED_ARGUMENTS: usize = 16;

/// At most [`MAX_QUOTE_BYTES`] of `text`, cut at a character boundary.
fn quote(text: &str) -> &str {
    let mut end = text.len().min(MAX_QUOTE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Roughly four characters a token, at least one a message.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// Fills a tool's arguments from a user's text: every string property of the
/// schema gets the first word with a digit in it (an order number, say), or the
/// whole text.
fn arguments(schema: &str, text: &str) -> String {
    let schema: Value = serde_json::from_str(schema).unwrap_or(Value::Null);
    let word = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '?' || c == '.')
        .find(|w| w.chars().any(|c| c.is_ascii_digit()))
        .unwrap_or(text);
    let word = quote(word);
    let mut args = Map::new();
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props.iter().take(MAX_FILLED_ARGUMENTS) {
            if prop["type"] == "string" {
                args.insert(name.clone(), Value::String(word.to_owned()));
            }
        }
    }
    Value::Object(args).to_string()
}

pub fn chat(request: &ChatRequest) -> Completion {
    let prompt: u64 = request.messages.iter().map(|m| tokens(&m.content) + 3).sum();
    let last_user = request.messages.iter().rposition(|m| m.role == Role::User);
    let user_text = last_user.map(|i| request.messages[i].content.as_str()).unwrap_or("");
    let since_user: &[Message] = match last_user {
        Some(i) => &request.messages[i + 1..],
        None => &[],
    };
    let results: Vec<&str> = since_user
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.as_str())
        .collect();
    let model = if request.model == "scripted" {
        "scripted".to_owned()
    } else {
        format!("scripted:{}", request.model)
    };
    let (content, tool_calls, finish_reason) = match request.tools.first() {
        Some(tool) if results.is_empty() && since_user.is_empty() => {
            let call = ToolCall {
                id: format!("call_scripted_{}", request.messages.len()),
                name: tool.name.clone(),
                arguments: arguments(&tool.parameters, user_text),
            };
            (String::new(), vec![call], FinishReason::ToolCalls)
        }
        _ if !results.is_empty() => (
            format!(
                "(scripted) Here is what I found: {}",
                results.iter().take(8).map(|r| quote(r)).collect::<Vec<_>>().join("; ")
            ),
            Vec::new(),
            FinishReason::Stop,
        ),
        _ => (
            format!("(scripted) You said: {}", quote(user_text)),
            Vec::new(),
            FinishReason::Stop,
        ),
    };
    let completion = tokens(&content) + tool_calls.iter().map(|c| tokens(&c.arguments) + 5).sum::<u64>();
    Completion {
        content,
        tool_calls,
        usage: Usage {
            prompt,
            completion,
            total: prompt + completion,
            cache_read: 0,
            cache_write: 0,
        },
        model,
        finish_reason,
        first_token_at: Some(std::time::Instant::now()),
        usage_estimated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolDef;

    fn user(text: &str) -> Message {
        Message {
            role: Role::User,
            content: text.into(),
            tool_calls: vec![],
            tool_call_id: None,
        }
    }

    #[test]
    fn calls_the_tool_then_answers_with_its_result() {
        let tool = ToolDef {
            name: "lookup_order".into(),
            description: "".into(),
            parameters: r#"{"type":"object","properties":{"order_id":{"type":"string"}}}"#.into(),
        };
        let mut req = ChatRequest {
            model: "scripted".into(),
            messages: vec![user("Where is order A-1001?")],
            tools: vec![tool],
            temperature: None,
            max_tokens: None,
            stop: vec![],
        };
        let first = chat(&req);
        assert_eq!(first.finish_reason, FinishReason::ToolCalls);
        assert_eq!(first.tool_calls[0].arguments, r#"{"order_id":"A-1001"}"#);
        assert!(first.usage.prompt > 0 && first.usage.total == first.usage.prompt + first.usage.completion);
        req.messages.push(Message {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: first.tool_calls.clone(),
            tool_call_id: None,
        });
        req.messages.push(Message {
            role: Role::Tool,
            content: "shipped".into(),
            tool_calls: vec![],
            tool_call_id: Some(first.tool_calls[0].id.clone()),
        });
        let second = chat(&req);
        assert_eq!(second.finish_reason, FinishReason::Stop);
        assert!(second.content.contains("shipped"));
        assert_eq!(second.model, "scripted");
    }
}
