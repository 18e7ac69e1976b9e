//! `chat`: one turn of a conversation. It sends the model its conversation's
//! history (the host's turns, newest last) and this turn's message, with the
//! facts its session memory holds in the system prompt; it remembers what it
//! is told to (`remember`, or "my name is ..."). Returns `{reply, turn,
//! history_truncated}`. Outside a conversation it answers the one message.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warden_sdk::llm::{self, Message};
use warden_sdk::{AgentError, conversation, log, memory, step};

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Turn {
        message: String,
        /// Facts to keep in session memory before answering.
        #[serde(default)]
        remember: Map<String, Value>,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        system: Option<String>,
    },
}

#[derive(Serialize)]
struct Output {
    reply: String,
    /// This turn's number in the conversation (1 for the first).
    turn: usize,
    history_truncated: bool,
}

const SYSTEM: &str = "You are a helpful assistant. Be brief.";

fn run(input: Input) -> Result<Output, AgentError> {
    let (message, mut remember, model, system) = match input {
        Input::Text(message) => (message, Map::new(), None, None),
        Input::Turn {
            message,
            remember,
            model,
            system,
        } => (message, remember, model, system),
    };
    if message.trim().is_empty() {
        return Err(AgentError::invalid_input("the message is empty"));
    }
    let in_conversation = conversation::id().is_some();
    if let Some(name) = told_name(&message) {
        remember.insert("name".into(), Value::String(name));
    }
    let session = memory::session();
    let mut facts = Vec::new();
    if in_conversation {
        for (key, value) in &remember {
            session.set(key, value)?;
        }
        for key in session.keys("")? {
            if let Some(value) = session.get::<Value>(&key)? {
                facts.push(format!("{key}: {value}"));
            }
        }
    }
    let mut prompt = system.unwrap_or_else(|| SYSTEM.to_owned());
    if !facts.is_empty() {
        prompt.push_str("\nWhat you know about this conversation:\n");
        prompt.push_str(&facts.join("\n"));
    }
    let (messages, truncated) = if in_conversation {
        conversation::messages(&prompt, &message)
    } else {
        (vec![Message::system(prompt), Message::user(message)], false)
    };
    if truncated {
        log::info("older turns of the conversation were left out of the model's context");
    }
    let turn = messages.iter().filter(|m| m.role == llm::Role::User).count();
    step(
        "context",
        &serde_json::json!({ "messages": messages.len(), "facts": facts.len(), "history_truncated": truncated }),
    );
    let mut options = llm::options();
    options.model = model;
    let completion = llm::chat(&messages, &[], &options)?;
    Ok(Output {
        reply: completion.content,
        turn,
        history_truncated: truncated,
    })
}

/// The name in "my name is X" (its first word), if the message says so.
fn told_name(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("my name is ")? + "my name is ".len();
    let name: String = message[at..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty()).then_some(name)
}

warden_sdk::agent!(run);
