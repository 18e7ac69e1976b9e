//! Conversations and memory: the turns of multi-turn agents, and the key-value
//! memory runs keep (a conversation's session memory, and named memory stores
//! of a workspace). Pure data, with the rules that make a turn's text out of an
//! execution's input and output.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::ToolCallRecord;
use crate::time;

/// A conversation: an agent's turns with someone, one at a time.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: String,
    #[serde(skip)]
    pub workspace: String,
    pub agent_id: String,
    /// Turns so far (a user's message and the agent's answer are two).
    pub turn_count: u32,
    /// Model tokens its turns used, all told.
    pub token_count: u64,
    #[schema(value_type = Object)]
    pub metadata: Arc<RawValue>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub last_active_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TurnRole {
    User,
    Assistant,
}

impl TurnRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnRole::User => "user",
            TurnRole::Assistant => "assistant",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(TurnRole::User),
            "assistant" => Some(TurnRole::Assistant),
            _ => None,
        }
    }
}

/// One turn: what the user said (an execution's input) or what the agent
/// answered (its output), with the tools it called.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Turn {
    /// 1 for the first turn of the conversation.
    pub seq: u32,
    pub role: TurnRole,
    pub content: String,
    pub tool_calls: Vec<ToolCallRecord>,
    /// The execution this turn came from.
    pub execution_id: Option<String>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: i64,
    /// The host's estimate of the turn's size in tokens (about four bytes a
    /// token): what history budgets count.
    pub tokens: u32,
}

impl Turn {
    /// A turn of `content` (its `seq` is set when it is stored).
    pub fn new(role: TurnRole, content: String, execution_id: &str, at: i64) -> Self {
        Self {
            seq: 0,
            role,
            tokens: estimate_tokens(&content),
            content,
            tool_calls: Vec::new(),
            execution_id: Some(execution_id.to_owned()),
            timestamp: at,
        }
    }
}

/// About four bytes a token, and a few for the message around it.
pub fn estimate_tokens(text: &str) -> u32 {
    (text.len() / 4 + 4).min(u32::MAX as usize) as u32
}

/// The fields a user's message is taken from, in order, when the input is an object.
const INPUT_FIELDS: [&str; 6] = ["message", "content", "text", "prompt", "question", "input"];
/// The fields an answer is taken from, in order, when the output is an object.
const OUTPUT_FIELDS: [&str; 7] = ["reply", "answer", "content", "message", "text", "output", "response"];

/// The text of a user's turn: the input itself when it is a JSON string, else
/// its first string field of `message`, `content`, `text`, `prompt`,
/// `question`, `input`, else its JSON text.
pub fn user_text(input: &RawValue) -> String {
    text_of(input, &INPUT_FIELDS)
}

/// The text of an agent's turn: the output itself when it is a JSON string,
/// else its first string field of `reply`, `answer`, `content`, `message`,
/// `text`, `output`, `response`, else its JSON text.
pub fn assistant_text(output: &RawValue) -> String {
    text_of(output, &OUTPUT_FIELDS)
}

fn text_of(raw: &RawValue, fields: &[&str]) -> String {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(map)) => fields
            .iter()
            .find_map(|f| map.get(*f).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| raw.get().to_owned()),
        _ => raw.get().to_owned(),
    }
}

/// A named memory store of a workspace: key-values runs it is attached to may
/// read and write, kept until deleted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemoryStoreInfo {
    pub id: String,
    #[serde(skip)]
    pub workspace: String,
    pub name: String,
    pub description: String,
    /// Most bytes its keys and values may take, all told.
    pub max_bytes: u64,
    /// Bytes its keys and values take now.
    pub bytes: u64,
    pub entries: u64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// One key-value of a memory (a store's or a conversation's session memory).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemoryEntry {
    pub key: String,
    #[schema(value_type = serde_json::Value)]
    pub value: Arc<RawValue>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

impl MemoryEntry {
    /// What it counts against a store's bytes.
    pub fn size(&self) -> u64 {
        (self.key.len() + self.value.get().len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn turn_text_comes_from_strings_or_known_fields() {
        assert_eq!(user_text(&raw(r#""hi""#)), "hi");
        assert_eq!(user_text(&raw(r#"{"message":"hello","x":1}"#)), "hello");
        assert_eq!(user_text(&raw(r#"{"n":1}"#)), r#"{"n":1}"#);
        assert_eq!(assistant_text(&raw(r#"{"reply":"yes","message":"no"}"#)), "yes");
        assert_eq!(assistant_text(&raw("42")), "42");
        assert_eq!(estimate_tokens("abcdefgh"), 6);
    }
}
