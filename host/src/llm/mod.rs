//! Language-model providers, reached only from the host: the guest's `llm.chat`
//! becomes a request to the provider that serves the model (OpenAI-compatible chat
//! completions, Anthropic Messages, or the offline `scripted` provider), with keys
//! from the host's environment, per-attempt timeouts, and retries of transient
//! failures. Pricing turns usage into dollars. Budgets and model allowlists are
//! the capability's business (`capabilities::llm`), not this module's.

mod anthropic;
mod names;
mod openai;
pub mod pricing;
mod scripted;
mod sse;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{LlmConfig, Price, ProviderConfig, ProviderKind};
pub use crate::record::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema text.
    pub parameters: String,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDef>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub model: String,
    pub finish_reason: FinishReason,
    /// When the first token (or tool-call fragment) arrived.
    pub first_token_at: Option<Instant>,
    /// The provider reported no usage: `usage` is the host's estimate.
    pub usage_estimated: bool,
}

/// A piece of an answer as it streams in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    Content,
    Thinking,
}

/// Called with each piece of the answer as it arrives.
pub type OnDelta<'a> = &'a (dyn Fn(Delta, &str) + Send + Sync);

/// A provider's failure. `transient` ones (connection, timeout, 429, 5xx) are
/// retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub message: String,
    pub transient: bool,
    /// What the provider asked us to wait (429 `Retry-After`).
    pub retry_after: Option<Duration>,
}

/// A chat no provider answered: why, which provider was tried (none serves
/// the model: `None`), and how many attempts it had.
#[derive(Debug)]
pub struct Unserved {
    pub error: ProviderError,
    pub provider: Option<String>,
    pub attempts: u32,
}

impl ProviderError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
            retry_after: None,
        }
    }

    /// Classifies an HTTP error status and body.
    fn from_status(provider: &str, status: reqwest::StatusCode, retry_after: Option<Duration>, body: &str) -> Self {
        let detail = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(500).collect());
        let message = format!("{provider} answered HTTP {}: {detail}", status.as_u16());
        let transient = status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        Self {
            message,
            transient,
            retry_after,
        }
    }

    fn from_reqwest(provider: &str, e: reqwest::Error) -> Self {
        let transient = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
        Self {
            message: format!("{provider}: {e}"),
            transient,
            retry_after: None,
        }
    }
}

/// One configured provider, ready to call.
struct Provider {
    config: ProviderConfig,
    api_key: Option<String>,
    /// Its own client: connections (HTTP/1.1 or a shared HTTP/2 one) are per provider.
    http: reqwest::Client,
}

/// The host's providers and how to reach them.
pub struct Llm {
    pub pricing: pricing::Pricing,
    providers: Vec<Provider>,
    timeout: Duration,
    max_retries: u32,
    /// Most bytes of one call's messages and tool definitions.
    pub max_request_bytes: usize,
}

/// Which provider served a call, for the record.
#[derive(Debug, Clone)]
pub struct Served {
    pub provider: String,
    /// The offline `scripted` provider answered (no real model).
    pub offline: bool,
    pub completion: Completion,
    pub attempts: u32,
}

impl Llm {
    pub fn new(config: &LlmConfig, prices: &HashMap<String, Price>) -> anyhow::Result<Self> {
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
                if p.http2 {
                    http = http.http2_prior_knowledge();
                }
                Ok(Provider {
                    api_key: p.api_key_env.as_ref().and_then(|var| std::env::var(var).ok()),
                    config: p.clone(),
                    http: http.build()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            pricing: pricing::Pricing::new(prices),
            providers,
            timeout: Duration::from_millis(config.timeout_ms),
            max_retries: config.max_retries,
            max_request_bytes: config.max_request_bytes,
        })
    }

    /// What serving `model` would mean, said for a deploy: nothing when a real
    /// provider serves it, else a warning (no provider at all, or only the
    /// offline `scripted` one, which answers any name: a typo looks like success).
    pub fn warning_for(&self, model: &str) -> Option<String> {
        match self.provider_for(model) {
            None => Some(format!("no provider serves model {model:?}: its calls will fail")),
            Some(p) if p.config.kind == ProviderKind::Scripted && model != "scripted" => Some(format!(
                "model {model:?} is answered by the offline scripted provider {:?}: no real provider serves it \
                 (configure one under [[llm.providers]], or check the name)",
                p.config.name
            )),
            Some(_) => None,
        }
    }

    /// Whether the offline `scripted` provider answers `model`: nothing leaves
    /// the host, so calling it is no effect beyond the run's sandbox.
    pub fn answers_offline(&self, model: &str) -> bool {
        self.provider_for(model)
            .is_some_and(|p| p.config.kind == ProviderKind::Scripted)
    }

    fn provider_for(&self, model: &str) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|p| p.config.models.iter().any(|m| m == model || m == "*"))
    }

    /// Sends a chat to the provider serving `request.model`, retrying transient
    /// failures with backoff; every attempt sends `traceparent` (the call's
    /// span in the run's W3C trace). A failure names the provider that was
    /// tried and how often.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        traceparent: Option<&str>,
        on_delta: OnDelta<'_>,
    ) -> Result<Served, Unserved> {
        let Some(provider) = self.provider_for(&request.model) else {
            return Err(Unserved {
                error: ProviderError::permanent(format!("no provider serves model {:?}", request.model)),
                provider: None,
                attempts: 0,
            });
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = self.call_once(provider, request, traceparent, on_delta);
            let result = match tokio::time::timeout(self.timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::transient(format!(
                    "{} did not answer within {} ms",
                    provider.config.name,
                    self.timeout.as_millis()
                ))),
            };
            match result {
                Ok(completion) => {
                    return Ok(Served {
                        provider: provider.config.name.clone(),
                        offline: provider.config.kind == ProviderKind::Scripted,
                        completion,
                        attempts: attempt,
                    });
                }
                Err(e) if e.transient && attempt <= self.max_retries => {
                    let backoff = Duration::from_millis(200 * (1 << (attempt - 1).min(5)));
                    let wait = e.retry_after.unwrap_or(backoff).min(Duration::from_secs(10));
                    tracing::warn!(provider = %provider.config.name, attempt, error = %e, "transient LLM failure; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(mut e) => {
                    if attempt > 1 {
                        e.message = format!("{} (after {attempt} attempts)", e.message);
                    }
                    return Err(Unserved {
                        error: e,
                        provider: Some(provider.config.name.clone()),
                        attempts: attempt,
                    });
                }
            }
        }
    }

    async fn call_once(
        &self,
        provider: &Provider,
        request: &ChatRequest,
        traceparent: Option<&str>,
        on_delta: OnDelta<'_>,
    ) -> Result<Completion, ProviderError> {
        let key = provider.api_key.as_deref();
        let (sent, renames) = names::Renames::apply(request);
        let mut completion = match provider.config.kind {
            ProviderKind::Scripted => scripted::chat(request),
            ProviderKind::Openai => {
                openai::chat(&provider.http, &provider.config, key, traceparent, &sent, on_delta).await?
            }
            ProviderKind::Anthropic => {
                anthropic::chat(&provider.http, &provider.config, key, traceparent, &sent, on_delta).await?
            }
        };
        renames.restore(&mut completion);
        // Answers that did not stream arrive whole.
        let streamed = provider.config.stream && provider.config.kind != ProviderKind::Scripted;
        if !streamed && !completion.content.is_empty() {
            on_delta(Delta::Content, &completion.content);
        }
        Ok(normalize(request, completion))
    }
}

/// What every provider's answer means the same way: an answer that calls tools
/// finished to call them (some servers say `stop`), and an answer whose
/// provider reported no usage is not free: its usage is estimated (about four
/// characters a token) and marked so.
fn normalize(request: &ChatRequest, mut completion: Completion) -> Completion {
    if !completion.tool_calls.is_empty() {
        completion.finish_reason = FinishReason::ToolCalls;
    }
    if completion.usage == Usage::default() {
        let tokens = |chars: usize| (chars as u64).div_ceil(4);
        let prompt_chars: usize = request
            .messages
            .iter()
            .map(|m| {
                m.content.len()
                    + m.tool_calls
                        .iter()
                        .map(|c| c.name.len() + c.arguments.len())
                        .sum::<usize>()
            })
            .sum::<usize>()
            + request
                .tools
                .iter()
                .map(|t| t.name.len() + t.description.len() + t.parameters.len())
                .sum::<usize>();
        let completion_chars = completion.content.len()
            + completion
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.len())
                .sum::<usize>();
        let (prompt, answer) = (tokens(prompt_chars).max(1), tokens(completion_chars).max(1));
        completion.usage = Usage {
            prompt,
            completion: answer,
            total: prompt + answer,
            cache_read: 0,
            cache_write: 0,
        };
        completion.usage_estimated = true;
    }
    completion
}

/// Whether a provider answered with one JSON document (some answer a stream
/// request that way): it is read whole.
fn answered_whole(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// Sends a provider request; an HTTP error status becomes a classified error.
async fn send(provider: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|e| ProviderError::from_reqwest(provider, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let wait = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    Err(ProviderError::from_status(provider, status, wait, &text))
}

/// A stream event that is not the JSON the protocol promises.
fn malformed(provider: &str, e: &serde_json::Error, data: &str) -> ProviderError {
    ProviderError::permanent(format!(
        "{provider}: malformed stream: {e} in {:?}",
        data.chars().take(200).collect::<String>()
    ))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}
