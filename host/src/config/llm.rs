//! The model providers' configuration: which providers serve which models,
//! how calls to them are made (timeouts, retries, token budgets), and prices.

use serde::Deserialize;

/// Language-model providers. Without any configured, the offline `scripted`
/// provider serves every model.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// One attempt of one call.
    pub timeout_ms: u64,
    /// Retries of transient failures (connection, timeout, 429, 5xx).
    pub max_retries: u32,
    /// Tokens per execution when the manifest sets no `token_budget`.
    pub default_token_budget: u64,
    /// Most tokens a manifest may budget.
    pub max_token_budget: u64,
    /// Most bytes of one model call's messages, tool calls and tool definitions
    /// together (a call past it is refused with `invalid-request`).
    pub max_request_bytes: usize,
    /// A model is served by the first provider listing it (or `"*"`).
    pub providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1`, `https://api.anthropic.com`.
    #[serde(default)]
    pub base_url: String,
    /// The environment variable holding the API key (keys never go in files).
    #[serde(default)]
    pub api_key_env: Option<String>,
    pub models: Vec<String>,
    /// Stream answers (SSE); the guest still gets the whole completion.
    #[serde(default = "yes")]
    pub stream: bool,
    /// The request field that caps an answer's length: `max_completion_tokens`
    /// (what OpenAI's newer models require) or `max_tokens` (what most other
    /// OpenAI-compatible servers know). Default: the former for
    /// `api.openai.com`, the latter elsewhere.
    #[serde(default)]
    pub max_tokens_param: Option<MaxTokensParam>,
    /// Speak HTTP/2 to an `http://` provider without negotiating it first (h2c
    /// with prior knowledge): every call becomes a stream on one shared
    /// connection instead of a connection of its own. `https://` providers
    /// negotiate HTTP/2 by themselves when they offer it.
    #[serde(default)]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensParam {
    MaxTokens,
    MaxCompletionTokens,
}

impl ProviderConfig {
    /// The request field that caps an answer's length.
    pub fn max_tokens_param(&self) -> &'static str {
        let official = self
            .base_url
            .split("://")
            .nth(1)
            .is_some_and(|rest| rest.starts_with("api.openai.com"));
        match self.max_tokens_param {
            Some(MaxTokensParam::MaxCompletionTokens) => "max_completion_tokens",
            Some(MaxTokensParam::MaxTokens) => "max_tokens",
            None if official => "max_completion_tokens",
            None => "max_tokens",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Offline, deterministic; the default.
    Scripted,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 60_000,
            max_retries: 2,
            default_token_budget: 100_000,
            max_token_budget: 10_000_000,
            max_request_bytes: 4 << 20,
            providers: vec![ProviderConfig {
                name: "scripted".into(),
                kind: ProviderKind::Scripted,
                base_url: String::new(),
                api_key_env: None,
                models: vec!["*".into()],
                stream: false,
                max_tokens_param: None,
                http2: false,
            }],
        }
    }
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}
