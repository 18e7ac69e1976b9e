//! `warden:agent/llm`: the guest's chat calls, checked against the manifest's
//! models and token budget, sent through the host's providers, and recorded
//! (usage, cost, model, first-token time, one `llm` step per call). Spending past
//! the budget stops the run with `budget_exceeded`.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::EventData;
use crate::llm::{self, ChatRequest, Usage};
use crate::ports::Reach;
use crate::record::JournalKind;
use crate::record::LogLevel;
use crate::runtime::bindings::warden::agent::llm::{
    Completion, Error, FinishReason, Host, Message, Options, Role, ToolCall, ToolDefinition,
};
use crate::runtime::journal::{self, Replayed};
use crate::runtime::{RunState, Stop};

fn to_host_message(m: Message) -> llm::Message {
    llm::Message {
        role: match m.role {
            Role::System => llm::Role::System,
            Role::User => llm::Role::User,
            Role::Assistant => llm::Role::Assistant,
            Role::Tool => llm::Role::Tool,
        },
        content: m.content,
        tool_calls: m
            .tool_calls
            .into_iter()
            .map(|c| llm::ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect(),
        tool_call_id: m.tool_call_id,
    }
}

/// Most tool definitions one call may offer.
const MAX_TOOL_DEFINITIONS: usize = 128;
/// Most messages one call may send.
const MAX_MESSAGES: usize = 4096;

/// Why a call's request is refused before anything is sent: too many messages
/// or tools, or more bytes than the host's cap.
fn oversized(messages: &[Message], tools: &[ToolDefinition], max_bytes: usize) -> Option<String> {
    if messages.len() > MAX_MESSAGES {
        return Some(format!("{} messages, more than {MAX_MESSAGES}", messages.len()));
    }
    if tools.len() > MAX_TOOL_DEFINITIONS {
        return Some(format!(
            "{} tool definitions, more than {MAX_TOOL_DEFINITIONS}",
            tools.len()
        ));
    }
    let message_bytes = messages.iter().map(|m| {
        m.content.len()
            + m.tool_call_id.as_ref().map_or(0, String::len)
            + m.tool_calls
                .iter()
                .map(|c| c.id.len() + c.name.len() + c.arguments.len())
                .sum::<usize>()
    });
    let tool_bytes = tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters.len());
    let bytes: usize = message_bytes.chain(tool_bytes).sum();
    (bytes > max_bytes).then(|| format!("the request is {bytes} bytes, over the host's limit of {max_bytes}"))
}

fn clamp(n: u64) -> u32 {
    n.min(u64::from(u32::MAX)) as u32
}

impl Host for RunState {
    async fn chat(
        &mut self,
        messages: Vec<Message>,
        tools: Vec<ToolDefinition>,
        opts: Options,
    ) -> wasmtime::Result<Result<Completion, Error>> {
        let model = match opts.model {
            Some(m) if self.grants.allows_model(&m) => m,
            Some(m) => {
                let allowed = if self.grants.models.is_empty() {
                    "scripted".to_owned()
                } else {
                    self.grants.models.join(", ")
                };
                return Ok(Err(Error::ModelNotAllowed(format!(
                    "model {m:?} is not in this agent's manifest (allowed: {allowed})"
                ))));
            }
            None => self.grants.default_model().to_owned(),
        };
        if let Some(why) = oversized(&messages, &tools, self.grants.llm.max_request_bytes) {
            return Ok(Err(Error::InvalidRequest(why)));
        }
        let budget = self.grants.token_budget;
        if self.llm.usage.total >= budget {
            return Err(wasmtime::Error::new(Stop::budget(budget, self.llm.usage.total)));
        }
        // A real provider's answer costs money and may act: the run's start is
        // stored first. The offline provider acts on nothing.
        if !self.grants.llm.answers_offline(&model) {
            self.grants
                .effects
                .before_effect(Reach::Outside)
                .await
                .map_err(Stop::unrecorded)?;
        }
        let request = ChatRequest {
            model,
            messages: messages.into_iter().map(to_host_message).collect(),
            tools: tools
                .into_iter()
                .map(|t| llm::ToolDef {
                    name: t.name,
                    description: t.description,
                    parameters: t.parameters,
                })
                .collect(),
            temperature: opts.temperature,
            max_tokens: opts.max_tokens,
            stop: opts.stop,
        };
        let fingerprint = self.journal.as_ref().map(|_| {
            let asked = serde_json::to_vec(&(
                &request.model,
                &request.messages,
                &request.tools,
                request.temperature,
                request.max_tokens,
                &request.stop,
            ))
            .unwrap_or_default();
            journal::fingerprint(&[&asked])
        });
        // On replay: its answer; or, cut short by a restart, made again.
        let mut seq = None;
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
            match journal
                .take(
                    JournalKind::Llm,
                    fingerprint,
                    &format!("a call of model {:?}", request.model),
                )
                .map_err(wasmtime::Error::new)?
            {
                Some(Replayed::Done(data)) => {
                    let call: LlmCall = serde_json::from_str(&data)
                        .map_err(|e| wasmtime::Error::new(Stop::damaged_journal("model call", &e)))?;
                    return self.settle_chat(call);
                }
                Some(Replayed::Started { seq: started, .. }) => seq = Some(started),
                None => {}
            }
            // A real provider's call may take long: its start (and what came
            // before it) is stored, so a restart knows it was under way.
            if seq.is_none() && !self.grants.llm.answers_offline(&request.model) {
                seq = Some(
                    journal
                        .start(JournalKind::Llm, fingerprint, "{}".into(), false)
                        .await
                        .map_err(wasmtime::Error::new)?,
                );
            }
        }
        let started = Instant::now();
        let events = Arc::clone(&self.grants.events);
        let host = Arc::clone(&self.grants.llm);
        // What it streams is kept: a run cut short shows it, and counts it.
        let streamed = Arc::clone(&self.grants.streamed);
        streamed.begin_call(&request.model, request.messages.iter().map(|m| m.content.len()).sum());
        let span_id = self.next_llm_span();
        let traceparent = self
            .grants
            .ctx
            .trace_id
            .as_deref()
            .map(|trace_id| crate::trace::traceparent(trace_id, &span_id));
        let (request, served) = match super::off_fiber(move || async move {
            let on_delta = move |kind: llm::Delta, text: &str| match kind {
                llm::Delta::Content => {
                    streamed.push(text);
                    events.emit(EventData::Content(text));
                }
                llm::Delta::Thinking => events.emit(EventData::Thinking(text)),
            };
            let served = host.chat(&request, traceparent.as_deref(), &on_delta).await;
            (request, served)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                self.grants.streamed.end_call();
                // Counted as a failed call: the next one is a span of its own.
                let message = format!("the model call failed in the host: {e}");
                self.llm.errors.push(message.clone());
                return Ok(Err(Error::Provider(message)));
            }
        };
        self.grants.streamed.end_call();
        let took = started.elapsed();
        let duration_ms = took.as_millis() as u64;
        let asked = request.model.clone();
        let call = LlmCall {
            model: request.model,
            duration_ms,
            answer: served
                .map(|served| {
                    let c = served.completion;
                    crate::metrics::model_call(&crate::metrics::ModelCall {
                        provider: &served.provider,
                        model: &asked,
                        ok: true,
                        duration: took,
                        first_token: c.first_token_at.map(|at| at.saturating_duration_since(started)),
                        prompt_tokens: c.usage.prompt,
                        completion_tokens: c.usage.completion,
                        retries: served.attempts.saturating_sub(1),
                    });
                    Answer {
                        first_token_ms: c
                            .first_token_at
                            .map(|at| at.saturating_duration_since(self.started).as_millis() as i64),
                        content: c.content,
                        tool_calls: c.tool_calls,
                        usage: c.usage,
                        model: c.model,
                        finish_reason: c.finish_reason,
                        usage_estimated: c.usage_estimated,
                        provider: served.provider,
                        offline: served.offline,
                        attempts: served.attempts,
                    }
                })
                .map_err(|unserved| {
                    crate::metrics::model_call(&crate::metrics::ModelCall {
                        provider: unserved.provider.as_deref().unwrap_or("none"),
                        model: &asked,
                        ok: false,
                        duration: took,
                        first_token: None,
                        prompt_tokens: 0,
                        completion_tokens: 0,
                        retries: unserved.attempts.saturating_sub(1),
                    });
                    unserved.error.message
                }),
        };
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
            let data = serde_json::to_string(&call).unwrap_or_default();
            journal
                .record(JournalKind::Llm, fingerprint, seq, data)
                .map_err(wasmtime::Error::new)?;
        }
        self.settle_chat(call)
    }
}

/// One model call as the journal keeps it: what a replay needs to answer the
/// guest and record the call exactly as its first life did.
#[derive(Serialize, Deserialize)]
struct LlmCall {
    /// The model asked for.
    model: String,
    duration_ms: u64,
    answer: Result<Answer, String>,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    content: String,
    tool_calls: Vec<llm::ToolCall>,
    usage: Usage,
    /// The model that answered.
    model: String,
    finish_reason: llm::FinishReason,
    usage_estimated: bool,
    provider: String,
    offline: bool,
    attempts: u32,
    /// From the run's start.
    first_token_ms: Option<i64>,
}

impl RunState {
    /// The span of the run's next model call: its `llm_N`, N counting calls
    /// answered and failed alike (the same in a replay).
    fn next_llm_span(&self) -> String {
        let n = self.llm.calls as usize + self.llm.errors.len() + 1;
        crate::trace::span_id(&self.grants.ctx.execution_id, &format!("llm_{n}"))
    }

    /// Records a model call (live or replayed) on the run and answers the guest.
    fn settle_chat(&mut self, call: LlmCall) -> wasmtime::Result<Result<Completion, Error>> {
        let LlmCall {
            model,
            duration_ms,
            answer,
        } = call;
        let span_id = self.next_llm_span();
        let c = match answer {
            Ok(answer) => answer,
            Err(message) => {
                self.record.step(
                    "llm".into(),
                    json!({ "model": model, "error": message, "duration_ms": duration_ms, "span_id": span_id })
                        .to_string(),
                );
                self.llm.errors.push(message.clone());
                return Ok(Err(Error::Provider(message)));
            }
        };
        if c.offline && model != "scripted" && !self.llm.offline_noted {
            self.llm.offline_noted = true;
            self.record.note(
                LogLevel::Warn,
                format!(
                    "model {model:?} was answered by the offline scripted provider {:?}, not a real model: \
                     no real provider serves that name",
                    c.provider
                ),
            );
        }
        self.llm.usage_estimated |= c.usage_estimated;
        let cost = self.grants.llm.pricing.cost(&model, &c.usage);
        self.llm.usage.add(&c.usage);
        self.llm.cost_usd += cost.unwrap_or(0.0);
        self.llm.calls += 1;
        self.llm.model_used = Some(c.model.clone());
        self.llm.provider = Some(c.provider.clone());
        if self.llm.first_token_ms.is_none() {
            self.llm.first_token_ms = c.first_token_ms;
        }
        self.record.step(
            "llm".into(),
            json!({
                "model": c.model,
                "provider": c.provider,
                "usage": c.usage,
                "usage_estimated": c.usage_estimated,
                "offline": c.offline,
                "cost_usd": cost,
                "finish_reason": c.finish_reason,
                "tool_calls": c.tool_calls.len(),
                "attempts": c.attempts,
                "duration_ms": duration_ms,
                "span_id": span_id,
            })
            .to_string(),
        );
        let budget = self.grants.token_budget;
        if self.llm.usage.total > budget {
            return Err(wasmtime::Error::new(Stop::budget(budget, self.llm.usage.total)));
        }
        Ok(Ok(completion(c)))
    }
}

fn completion(c: Answer) -> Completion {
    let Usage {
        prompt,
        completion,
        total,
        cache_read,
        cache_write,
    } = c.usage;
    Completion {
        content: c.content,
        tool_calls: c
            .tool_calls
            .into_iter()
            .map(|t| ToolCall {
                id: t.id,
                name: t.name,
                arguments: t.arguments,
            })
            .collect(),
        usage: crate::runtime::bindings::warden::agent::llm::Usage {
            prompt_tokens: clamp(prompt),
            completion_tokens: clamp(completion),
            total_tokens: clamp(total),
            cache_read_tokens: clamp(cache_read),
            cache_write_tokens: clamp(cache_write),
        },
        model: c.model,
        finish_reason: match c.finish_reason {
            llm::FinishReason::Stop => FinishReason::Stop,
            llm::FinishReason::Length => FinishReason::Length,
            llm::FinishReason::ToolCalls => FinishReason::ToolCalls,
            llm::FinishReason::ContentFilter => FinishReason::ContentFilter,
            llm::FinishReason::Other => FinishReason::Other,
        },
    }
}
