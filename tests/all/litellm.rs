//! Warden against a model server nobody on the team wrote: LiteLLM's proxy (from
//! PyPI, installed by `scripts/test` into `target/litellm-venv`, started here on
//! 127.0.0.1 with the offline models of `tests/litellm/config.yaml`), speaking
//! OpenAI's chat completions and Anthropic's Messages, streamed and not; and the
//! provider quirks it showed, on the loopback fakes where LiteLLM no longer
//! shows them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_host::config::{MaxTokensParam, ProviderConfig, ProviderKind};
use warden_tests::providers::{FakeProvider, Mode, Protocol};
use warden_tests::{Server, test_config};

/// A LiteLLM proxy process, stopped when dropped.
struct LiteLlm {
    child: Child,
    port: u16,
}

impl LiteLlm {
    async fn start() -> LiteLlm {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = root.join("target/litellm-venv/bin/litellm");
        assert!(
            bin.exists(),
            "{} is missing: scripts/test installs LiteLLM's proxy (or run `scripts/litellm`)",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = root.join("tests/litellm");
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&bin)
            .args([
                "--config",
                "config.yaml",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .current_dir(&dir)
            .env("PYTHONPATH", &dir)
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_TELEMETRY", "False")
            // The proxy refuses to start without a master key; Warden sends it
            // from the variable Cargo sets for every test process (see `provider`).
            .env("LITELLM_MASTER_KEY", env!("CARGO_PKG_NAME"))
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the proxy starts");
        let mut proxy = LiteLlm { child, port };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let url = format!("http://127.0.0.1:{port}/health/liveliness");
        while !http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            let exited = proxy.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let said = std::fs::read_to_string(log.path()).unwrap_or_default();
                let tail: Vec<&str> = said
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!("LiteLLM's proxy did not come up ({exited:?}):\n{}", tail.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        proxy
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider(name: &str, kind: ProviderKind, base_url: String, models: &[&str], stream: bool) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        kind,
        base_url,
        // The proxy's master key (Cargo sets this variable for every test
        // process): a wrong or missing key is refused, so this proves it is sent.
        api_key_env: Some("CARGO_PKG_NAME".into()),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        stream,
        max_tokens_param: None,
        http2: false,
    }
}

async fn server(providers: Vec<ProviderConfig>) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.llm.providers = providers;
    config.llm.max_retries = 0;
    (Server::start_with(config).await, tmp)
}

/// The `support` agent's whole loop (a tool call, its result, the answer)
/// against LiteLLM, over both protocols, streamed and not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_runs_against_litellm() {
    let litellm = LiteLlm::start().await;
    let base = format!("http://127.0.0.1:{}", litellm.port);
    for (kind, url) in [
        (ProviderKind::Openai, format!("{base}/v1")),
        (ProviderKind::Anthropic, base.clone()),
    ] {
        for stream in [true, false] {
            let what = format!("{kind:?}, stream {stream}");
            let (server, _tmp) = server(vec![provider("litellm", kind, url.clone(), &["support-model"], stream)]).await;
            let deployed = server.deploy("support", json!({ "models": ["support-model"] })).await;
            assert_eq!(deployed["warnings"], json!([]), "{what}: {deployed}");
            let record = server
                .run(
                    "support",
                    json!({ "question": "Where is order A-7?", "orders": { "A-7": "late" } }),
                )
                .await;
            assert_eq!(record["status"], "completed", "{what}: {record}");
            assert!(
                record["output"]["answer"].as_str().unwrap().contains("late"),
                "{what}: {record}"
            );
            assert_eq!(record["output"]["sources"], json!(["kv:order:A-7"]), "{what}");
            assert_eq!(record["llm_provider"], "litellm");
            assert!(record["token_usage"]["total"].as_u64().unwrap() > 0, "{what}: {record}");
            assert_eq!(record["usage_estimated"], false, "{what}: reported usage is used");
            let id = record["id"].as_str().unwrap();
            let (_, steps) = server.get(&format!("/v1/executions/{id}/steps")).await;
            let llm: Vec<&Value> = steps["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["name"] == "llm")
                .collect();
            assert_eq!(llm.len(), 2, "{what}: {steps}");
            assert_eq!(llm[0]["detail"]["finish_reason"], "tool_calls", "{what}");
            server.stop().await;
        }
    }
}

/// LiteLLM's own mock models, over both protocols, streamed and not: tool calls
/// that say `finish_reason: "stop"` reach the agent as `tool_calls`; a stream
/// request answered with one JSON body (what the proxy's `/v1/messages` does for
/// them) is read whole; a plain answer is recorded with its usage, estimated
/// when the stream reported none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_quirks_are_normalised() {
    let litellm = LiteLlm::start().await;
    let base = format!("http://127.0.0.1:{}", litellm.port);
    for (kind, url) in [
        (ProviderKind::Openai, format!("{base}/v1")),
        (ProviderKind::Anthropic, base.clone()),
    ] {
        for stream in [false, true] {
            let what = format!("{kind:?}, stream {stream}");
            let (server, _tmp) = server(vec![provider(
                "litellm",
                kind,
                url.clone(),
                &["mock-tool", "mock-text"],
                stream,
            )])
            .await;
            server
                .deploy("toolbox", json!({ "models": ["mock-tool", "mock-text"] }))
                .await;
            let record = server.run("toolbox", json!({ "model": "mock-tool" })).await;
            assert_eq!(record["status"], "completed", "{what}: {record}");
            let id = record["id"].as_str().unwrap();
            let (_, steps) = server.get(&format!("/v1/executions/{id}/steps")).await;
            let detail = &steps["data"][0]["detail"];
            if kind == ProviderKind::Openai && !stream {
                assert_eq!(detail["finish_reason"], "tool_calls", "{what}: {steps}");
                assert_eq!(detail["tool_calls"], 1, "{what}: {steps}");
            } else {
                // Only the proxy's plain chat completions carry a mock's tool
                // calls; its streams and its Messages API drop them (its own
                // limitation): the text arrives, and says it is all.
                assert_eq!(detail["finish_reason"], "stop", "{what}: {steps}");
                assert_eq!(record["output"]["answer"], "Looking it up", "{what}: {record}");
            }
            let record = server.run("toolbox", json!({ "model": "mock-text" })).await;
            assert_eq!(record["status"], "completed", "{what}: {record}");
            assert_eq!(record["output"]["answer"], "Hello from the mock", "{what}: {record}");
            assert!(record["token_usage"]["total"].as_u64().unwrap() > 0, "{what}: {record}");
            server.stop().await;
        }
    }
}

/// A stream that reports no usage is not free: the host estimates it, marks
/// the record, and charges the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreported_usage_is_estimated_and_charged() {
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::NoUsage).await;
    let url = format!("{}/v1", fake.url());
    let (server, _tmp) = server(vec![provider("quiet", ProviderKind::Openai, url, &["quiet"], true)]).await;
    server.deploy("support", json!({ "models": ["quiet"] })).await;
    let record = server
        .run(
            "support",
            json!({ "question": "Where is my order A-1001?", "orders": { "A-1001": "shipped" } }),
        )
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["usage_estimated"], true, "{record}");
    let used = record["token_usage"]["total"].as_u64().unwrap();
    assert!(used > 0, "{record}");
    // The budget counts it: a budget below it stops the run.
    server
        .deploy("support", json!({ "models": ["quiet"], "token_budget": used / 2 }))
        .await;
    let record = server
        .run(
            "support",
            json!({ "question": "Where is my order A-1001?", "orders": { "A-1001": "shipped" } }),
        )
        .await;
    assert_eq!(record["error"]["code"], "budget_exceeded", "{record}");
    server.stop().await;
}

/// The field that caps an answer: `max_tokens` for most OpenAI-compatible
/// servers, `max_completion_tokens` where configured (and, by default, for
/// api.openai.com, whose newer models refuse `max_tokens`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_max_tokens_field_follows_the_provider() {
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::Normal).await;
    let url = format!("{}/v1", fake.url());
    let mut newer = provider("newer", ProviderKind::Openai, url.clone(), &["newer"], false);
    newer.max_tokens_param = Some(MaxTokensParam::MaxCompletionTokens);
    let older = provider("older", ProviderKind::Openai, url, &["older"], false);
    let (server, _tmp) = server(vec![newer, older]).await;
    server.deploy("toolbox", json!({ "models": ["newer", "older"] })).await;
    for model in ["newer", "older"] {
        let record = server.run("toolbox", json!({ "model": model, "max_tokens": 7 })).await;
        assert_eq!(record["status"], "completed", "{record}");
    }
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0["max_completion_tokens"], 7, "{:?}", seen[0].0);
    assert!(seen[0].0.get("max_tokens").is_none());
    assert_eq!(seen[1].0["max_tokens"], 7, "{:?}", seen[1].0);
    let official = provider(
        "openai",
        ProviderKind::Openai,
        "https://api.openai.com/v1".into(),
        &["x"],
        true,
    );
    assert_eq!(official.max_tokens_param(), "max_completion_tokens");
    server.stop().await;
}

/// A model no real provider serves is answered by the offline `scripted` one,
/// which answers any name: the deploy says so, and so does every such run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_only_the_offline_provider_answers_is_called_out() {
    let server = Server::start().await;
    let deployed = server.deploy("support", json!({ "models": ["gpt-4o-mni"] })).await;
    let warnings = deployed["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{deployed}");
    assert!(warnings[0].as_str().unwrap().contains("gpt-4o-mni"), "{deployed}");
    assert!(warnings[0].as_str().unwrap().contains("offline scripted"), "{deployed}");
    let record = server.run("support", json!({ "question": "Hi?" })).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["llm_provider"], "scripted");
    let id = record["id"].as_str().unwrap();
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    let notes: Vec<&Value> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] == "host")
        .collect();
    assert_eq!(notes.len(), 1, "{logs}");
    assert!(
        notes[0]["message"]
            .as_str()
            .unwrap()
            .contains("offline scripted provider")
    );
    // The examples name `scripted` itself: no warning.
    let deployed = server.deploy("hello", json!({})).await;
    assert_eq!(deployed["warnings"], json!([]));
    server.stop().await;
}
