//! Model calls through the `llm` import: the scripted provider offline, real HTTP
//! to loopback servers speaking OpenAI's and Anthropic's protocols (streamed and
//! not), usage, cost, tool calls, first-token timing, provider failures, model
//! allowlists and token budgets.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_host::config::{ProviderConfig, ProviderKind};
use warden_tests::providers::{ANSWER, CACHED_TOKENS, COMPLETION_TOKENS, FakeProvider, Mode, PROMPT_TOKENS, Protocol};
use warden_tests::{Server, test_config};

covers!(looper => the_token_budget_stops_a_looping_agent, support => support_runs_offline_with_the_scripted_provider);

fn question() -> Value {
    json!({
        "question": "Where is my order A-1001?",
        "orders": { "A-1001": { "status": "shipped", "carrier": "DHL" } },
    })
}

/// A server whose only provider is `fake`, serving `model`.
async fn server_with(
    fake: &FakeProvider,
    protocol: Protocol,
    model: &str,
    stream: bool,
    tweak: impl FnOnce(&mut warden_host::config::Config),
) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    let (kind, base_url) = match protocol {
        Protocol::OpenAi => (ProviderKind::Openai, format!("{}/v1", fake.url())),
        Protocol::Anthropic => (ProviderKind::Anthropic, fake.url()),
    };
    config.llm.providers = vec![ProviderConfig {
        name: "fake".into(),
        kind,
        base_url,
        // Cargo sets this variable for every test process: a key that is really
        // read from the environment, with no unsafe set_var.
        api_key_env: Some("CARGO_PKG_NAME".into()),
        models: vec![model.into()],
        stream,
        max_tokens_param: None,
        http2: false,
    }];
    config.llm.max_retries = 1;
    tweak(&mut config);
    let server = Server::start_with(config).await;
    server.deploy("support", json!({ "models": [model] })).await;
    (server, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_runs_offline_with_the_scripted_provider() {
    let server = Server::start().await;
    server.deploy("support", json!({})).await;
    answers_offline(&server, "support").await;
    server.stop().await;
}

/// The `support` agent deployed as `agent` (in Rust, or its Python twin)
/// answers `question()` with the offline scripted provider, with its usage,
/// tool calls and model steps on the record; returns the record.
pub(crate) async fn answers_offline(server: &Server, agent: &str) -> Value {
    let record = server.run(agent, question()).await;
    assert_eq!(record["status"], "completed", "{record}");
    let answer = record["output"]["answer"].as_str().unwrap();
    assert!(
        answer.starts_with("(scripted)") && answer.contains("shipped"),
        "{answer}"
    );
    assert_eq!(record["output"]["sources"], json!(["kv:order:A-1001"]));
    assert_eq!(record["model_used"], "scripted");
    assert_eq!(record["llm_provider"], "scripted");
    assert_eq!(record["cost_usd"], 0.0);
    let usage = &record["token_usage"];
    assert!(usage["prompt"].as_u64().unwrap() > 0 && usage["completion"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total"].as_u64(),
        Some(usage["prompt"].as_u64().unwrap() + usage["completion"].as_u64().unwrap())
    );
    // Two kv calls: storing the seed order, then the lookup the model asked for.
    assert_eq!(record["n_tool_calls"], 2);
    let calls = record["tool_calls"].as_array().unwrap();
    assert_eq!(calls[1]["name"], "kv");
    assert_eq!(calls[1]["arguments"], json!({ "op": "get", "key": "order:A-1001" }));
    assert_eq!(calls[1]["result"]["value"]["carrier"], "DHL");
    assert!(record["timing"]["first_token_ms"].is_i64());
    // Each model call is a step with its usage.
    let id = record["id"].as_str().unwrap();
    let (_, steps) = server.get(&format!("/v1/executions/{id}/steps")).await;
    let llm_steps: Vec<&Value> = steps["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "llm")
        .collect();
    assert_eq!(llm_steps.len(), 2);
    assert_eq!(llm_steps[0]["detail"]["finish_reason"], "tool_calls");
    assert!(llm_steps[0]["detail"]["usage"]["total"].as_u64().unwrap() > 0);
    record
}

async fn support_against(protocol: Protocol, stream: bool) {
    support_over(protocol, stream, false).await;
}

/// `http2`: the provider is configured for HTTP/2 without negotiation (h2c).
async fn support_over(protocol: Protocol, stream: bool, http2: bool) {
    let fake = FakeProvider::start(protocol, Mode::Normal).await;
    let model = match protocol {
        Protocol::OpenAi => "gpt-4o-mini",
        Protocol::Anthropic => "claude-haiku-4-5",
    };
    let (server, _tmp) = server_with(&fake, protocol, model, stream, |c| c.llm.providers[0].http2 = http2).await;
    let record = server.run("support", question()).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"]["answer"], ANSWER);
    assert_eq!(record["output"]["sources"], json!(["kv:order:A-1001"]));
    assert_eq!(record["model_used"], model);
    assert_eq!(record["llm_provider"], "fake");
    // Each model call carries the run's trace, with a span of its own.
    let trace_id = record["trace_id"].as_str().unwrap();
    let sent = fake.traceparents.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let spans: std::collections::HashSet<String> = sent
        .iter()
        .map(|tp| {
            let tp = tp.as_deref().expect("a traceparent");
            assert!(
                tp.starts_with(&format!("00-{trace_id}-")) && tp.ends_with("-01"),
                "{tp}"
            );
            tp.to_owned()
        })
        .collect();
    assert_eq!(spans.len(), 2, "{sent:?}");
    // They are the model calls' spans of the run's tree.
    let (_, tree) = server
        .get(&format!("/v1/executions/{}/trace", record["id"].as_str().unwrap()))
        .await;
    let shown: std::collections::HashSet<String> = tree["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "llm")
        .map(|s| format!("00-{trace_id}-{}-01", s["span_id"].as_str().unwrap()))
        .collect();
    assert_eq!(shown, spans, "{tree}");
    // Two model calls (tool call, then answer), summed.
    let usage = &record["token_usage"];
    assert_eq!(usage["prompt"], 2 * PROMPT_TOKENS);
    assert_eq!(usage["completion"], 2 * COMPLETION_TOKENS);
    assert_eq!(usage["total"], 2 * (PROMPT_TOKENS + COMPLETION_TOKENS));
    assert_eq!(usage["cache_read"], 2 * CACHED_TOKENS);
    // Built-in prices: gpt-4o-mini 0.15/0.60/0.075, claude-haiku-4-5 1/5/0.10 per million.
    let (input, output, cached) = match protocol {
        Protocol::OpenAi => (0.15, 0.60, 0.075),
        Protocol::Anthropic => (1.0, 5.0, 0.10),
    };
    let expected = 2.0
        * ((PROMPT_TOKENS - CACHED_TOKENS) as f64 * input
            + COMPLETION_TOKENS as f64 * output
            + CACHED_TOKENS as f64 * cached)
        / 1e6;
    let cost = record["cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-12, "cost {cost}, expected {expected}");
    assert!(record["timing"]["first_token_ms"].as_i64().unwrap() >= 0);
    assert_eq!(record["n_tool_calls"], 2);

    // What the provider saw: the key from the host's environment, the tool, the
    // tool result in the second request, streaming as configured.
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (first, key) = &seen[0];
    match protocol {
        Protocol::OpenAi => {
            assert_eq!(key.as_deref(), Some("Bearer warden-tests"));
            assert_eq!(first["tools"][0]["function"]["name"], "lookup_order");
        }
        Protocol::Anthropic => {
            assert_eq!(key.as_deref(), Some("warden-tests"));
            assert_eq!(first["tools"][0]["name"], "lookup_order");
            assert!(first["system"].as_str().unwrap().contains("support agent"));
        }
    }
    assert_eq!(first["stream"], stream);
    let over_http2 = fake.http2.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(over_http2, if http2 { 2 } else { 0 }, "requests over HTTP/2");
    assert!(
        seen[1].0["messages"].to_string().contains("DHL"),
        "the tool result reached the model"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_against_an_openai_compatible_server_streaming() {
    support_against(Protocol::OpenAi, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_against_an_openai_compatible_server_not_streaming() {
    support_against(Protocol::OpenAi, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_against_an_openai_compatible_server_over_http2() {
    support_over(Protocol::OpenAi, true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_against_an_anthropic_server_over_http2() {
    support_over(Protocol::Anthropic, false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_against_an_anthropic_server_streaming() {
    support_against(Protocol::Anthropic, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_against_an_anthropic_server_not_streaming() {
    support_against(Protocol::Anthropic, false).await;
}

async fn failing(mode: Mode, timeout_ms: u64) -> (Value, u32) {
    let fake = FakeProvider::start(Protocol::OpenAi, mode).await;
    let (server, _tmp) = server_with(&fake, Protocol::OpenAi, "gpt-4o-mini", true, |c| {
        c.llm.timeout_ms = timeout_ms
    })
    .await;
    let record = server.run("support", question()).await;
    let requests = fake.requests.load(std::sync::atomic::Ordering::SeqCst);
    server.stop().await;
    (record, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_become_llm_error() {
    // 500: transient, retried once (max_retries = 1), then llm_error with the message.
    let (record, requests) = failing(Mode::ServerError, 5_000).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "llm_error", "{record}");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("500") && message.contains("the fake model is down"),
        "{message}"
    );
    assert_eq!(requests, 2);

    // A provider slower than the timeout.
    let (record, requests) = failing(Mode::Slow(Duration::from_secs(10)), 300).await;
    assert_eq!(record["error"]["code"], "llm_error", "{record}");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 300 ms")
    );
    assert_eq!(requests, 2);

    // A garbage stream is not retried.
    let (record, requests) = failing(Mode::Garbage, 5_000).await;
    assert_eq!(record["error"]["code"], "llm_error", "{record}");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed stream")
    );
    assert_eq!(requests, 1);

    // Rate limited once: retried after Retry-After, then it works.
    let (record, requests) = failing(Mode::RateLimited(1), 5_000).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(requests, 3);
    // Rate limited past the retries: llm_error naming the 429.
    let (record, _) = failing(Mode::RateLimited(10), 5_000).await;
    assert_eq!(record["error"]["code"], "llm_error");
    assert!(record["error"]["message"].as_str().unwrap().contains("429"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_outside_the_manifest_is_refused() {
    let server = Server::start().await;
    server.deploy("toolbox", json!({ "models": ["scripted"] })).await;
    let record = server.run("toolbox", json!({ "model": "gpt-4o" })).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "model_not_allowed", "{record}");
    assert_eq!(record["token_usage"]["total"], 0);
    let record = server.run("toolbox", json!({ "model": "scripted" })).await;
    assert_eq!(record["status"], "completed", "{record}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_budget_stops_a_looping_agent() {
    let server = Server::start().await;
    server.deploy("looper", json!({ "token_budget": 2000 })).await;
    let record = server.run("looper", json!({})).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "budget_exceeded", "{record}");
    assert_eq!(record["error"]["source"], "host");
    let total = record["token_usage"]["total"].as_u64().unwrap();
    assert!(total >= 2000, "{total}");
    server.stop().await;
}

/// A caller picks one of the agent's models for a run: the model of every
/// call that names none. Others are refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_uses_the_model_its_caller_picked() {
    let server = Server::start().await;
    server
        .deploy("support", json!({"models": ["scripted", "scripted-mini"]}))
        .await;
    let input = json!({"question": "Where is order A-7?", "orders": {"A-7": "late"}});
    let run = |model: Option<&str>| {
        let mut body = json!({"input": input});
        if let Some(model) = model {
            body["model"] = json!(model);
        }
        let server = &server;
        async move { server.post_json("/v1/agents/support/execute", &body).await }
    };
    let (status, picked) = run(Some("scripted-mini")).await;
    assert_eq!(status, StatusCode::OK, "{picked}");
    assert_eq!(picked["status"], "completed", "{picked}");
    // The offline provider answers as `scripted:<the model asked>`.
    assert_eq!(
        (&picked["model"], &picked["model_used"]),
        (&json!("scripted-mini"), &json!("scripted:scripted-mini"))
    );
    let (_, default) = run(None).await;
    assert_eq!(
        (&default["model"], &default["model_used"]),
        (&Value::Null, &json!("scripted"))
    );
    let (status, refused) = run(Some("gpt-5")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(warden_tests::error_code(&refused), "invalid_request");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scripted, scripted-mini"),
        "{refused}"
    );
    // A retry is the same request: the same model.
    let (status, retried) = server
        .post_json(
            &format!("/v1/executions/{}/retry", picked["id"].as_str().unwrap()),
            &json!(null),
        )
        .await;
    assert!(status.is_success(), "{retried}");
    let retried = server.wait_terminal(retried["id"].as_str().unwrap()).await;
    assert_eq!(retried["model_used"], "scripted:scripted-mini", "{retried}");
    server.stop().await;
}
