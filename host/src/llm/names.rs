//! Tool names as providers take them: OpenAI and Anthropic accept
//! `^[a-zA-Z0-9_-]{1,64}$`, and an agent's MCP tools are named
//! `mcp.<server>.<tool>`. A request whose tools or earlier tool calls have
//! other names is sent with each such name made to fit (`.` as `__`, other
//! characters as `_`; a digest of the name ends one that would be too long or
//! meet another), and the answer's tool calls get their names back; the guest
//! never sees the provider's form.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{ChatRequest, Completion};

/// Longest tool name providers take.
const MAX_NAME: usize = 64;

fn fits(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The name fitted: `.` as `__`, other characters as `_`; one that is too long
/// (or `taken`) ends with a digest of the original instead, so two names never
/// meet.
fn wire(name: &str, taken: impl Fn(&str) -> bool) -> String {
    use sha2::Digest;
    let out: String = name
        .replace('.', "__")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    if out.len() <= MAX_NAME && !taken(&out) {
        return out;
    }
    let digest = crate::digest::hex(&sha2::Sha256::digest(name.as_bytes()));
    format!("{}_{}", &out[..out.len().min(MAX_NAME - 9)], &digest[..8])
}

/// The provider's names of the request's tools, and back.
#[derive(Default)]
pub struct Renames(HashMap<String, String>);

impl Renames {
    /// The request as providers take it (itself when every name fits).
    pub fn apply(request: &ChatRequest) -> (Cow<'_, ChatRequest>, Renames) {
        let names = request.tools.iter().map(|t| t.name.as_str()).chain(
            request
                .messages
                .iter()
                .flat_map(|m| m.tool_calls.iter().map(|c| c.name.as_str())),
        );
        let names: Vec<&str> = names.collect();
        let mut renames: HashMap<String, String> = HashMap::new();
        for &name in names.iter().filter(|n| !fits(n)) {
            if renames.values().any(|o| o == name) {
                continue;
            }
            let wired = wire(name, |w| names.contains(&w) || renames.contains_key(w));
            renames.insert(wired, name.to_owned());
        }
        if renames.is_empty() {
            return (Cow::Borrowed(request), Renames::default());
        }
        let back: HashMap<&str, &str> = renames.iter().map(|(w, o)| (o.as_str(), w.as_str())).collect();
        let rename = |name: &mut String| {
            if let Some(w) = back.get(name.as_str()) {
                *name = (*w).to_owned();
            }
        };
        let mut sent = request.clone();
        sent.tools.iter_mut().for_each(|t| rename(&mut t.name));
        sent.messages
            .iter_mut()
            .flat_map(|m| m.tool_calls.iter_mut())
            .for_each(|c| rename(&mut c.name));
        (Cow::Owned(sent), Renames(renames))
    }

    /// Gives the answer's tool calls the guest's names again.
    pub fn restore(&self, completion: &mut Completion) {
        for call in &mut completion.tool_calls {
            if let Some(original) = self.0.get(&call.name) {
                call.name = original.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Message, Role, ToolCall, ToolDef};

    #[test]
    fn mcp_names_go_out_fitted_and_come_back() {
        let tool = |name: &str| ToolDef {
            name: name.into(),
            description: String::new(),
            parameters: "{}".into(),
        };
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "1".into(),
                    name: "mcp.calc.add".into(),
                    arguments: "{}".into(),
                }],
                tool_call_id: None,
            }],
            tools: vec![tool("kv"), tool("mcp.calc.add"), tool("mcp.docs.search/v2")],
            temperature: None,
            max_tokens: None,
            stop: Vec::new(),
        };
        let (sent, renames) = Renames::apply(&request);
        let names: Vec<&str> = sent.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["kv", "mcp__calc__add", "mcp__docs__search_v2"]);
        assert_eq!(sent.messages[0].tool_calls[0].name, "mcp__calc__add");
        let mut completion = Completion {
            content: String::new(),
            tool_calls: vec![ToolCall {
                id: "2".into(),
                name: "mcp__docs__search_v2".into(),
                arguments: "{}".into(),
            }],
            usage: Default::default(),
            model: "m".into(),
            finish_reason: crate::llm::FinishReason::ToolCalls,
            first_token_at: None,
            usage_estimated: false,
        };
        renames.restore(&mut completion);
        assert_eq!(completion.tool_calls[0].name, "mcp.docs.search/v2");
        // Names that would meet, or run long, end with a digest.
        let meeting = ChatRequest {
            tools: vec![
                tool("mcp.a__b.c"),
                tool("mcp.a.b__c"),
                tool(&format!("mcp.s.{}", "t".repeat(80))),
            ],
            messages: Vec::new(),
            ..request.clone()
        };
        let (sent, _) = Renames::apply(&meeting);
        let names: Vec<&str> = sent.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names[0], "mcp__a__b__c");
        assert!(
            names[1].starts_with("mcp__a__b__c_") && names[1].len() == 21,
            "{names:?}"
        );
        assert!(names[2].len() == MAX_NAME && fits(names[2]), "{names:?}");
        // Names that fit go as they are.
        let plain = ChatRequest {
            tools: vec![tool("kv")],
            messages: Vec::new(),
            ..request
        };
        assert!(matches!(Renames::apply(&plain).0, Cow::Borrowed(_)));
    }
}
