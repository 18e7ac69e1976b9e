//! `looper`: keeps asking the model, with a growing conversation, forever. Only the
//! host's token budget (or timeout) ends it.

use serde_json::Value;
use warden_sdk::AgentError;
use warden_sdk::llm::{self, Message};

fn run(_input: Value) -> Result<Value, AgentError> {
    let mut messages = vec![Message::user("Tell me something new.")];
    loop {
        let completion = llm::chat(&messages, &[], &llm::options())?;
        messages.push(Message::assistant(completion.content));
        messages.push(Message::user("And another thing?"));
    }
}

warden_sdk::agent!(run);
