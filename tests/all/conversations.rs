//! Conversations and memory: turns against a loopback OpenAI-compatible model
//! (the model sees the prior turns in order), history budgets that say they
//! cut, session memory across turns, memory stores isolated by workspace and by
//! attachment with their caps, delete, continue as chat, one turn at a time,
//! cancel with partial output, retention, and a turn resumed after SIGKILL.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_host::config::{ProviderConfig, ProviderKind};
use warden_tests::providers::{ANSWER, FakeProvider, Mode, Protocol, STALLED};
use warden_tests::{Server, Warden, create_key, error_code, test_config};

covers!(chat => the_model_sees_the_prior_turns_in_order, notes => memory_stores_are_isolated_by_workspace_and_attachment);

fn provider(fake: &FakeProvider) -> ProviderConfig {
    ProviderConfig {
        name: "fake".into(),
        kind: ProviderKind::Openai,
        base_url: format!("{}/v1", fake.url()),
        api_key_env: Some("CARGO_PKG_NAME".into()),
        models: vec!["gpt-test".into()],
        stream: true,
        max_tokens_param: None,
        http2: false,
    }
}

async fn with_model(
    fake: &FakeProvider,
    tweak: impl FnOnce(&mut warden_host::config::Config),
) -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.llm.providers = vec![provider(fake)];
    config.llm.max_retries = 0;
    tweak(&mut config);
    let server = Server::start_with(config).await;
    server.deploy("chat", json!({ "models": ["gpt-test"] })).await;
    (server, tmp)
}

/// One turn, synchronously: `body` plus the message.
async fn turn(server: &Server, message: &str, body: Value) -> Value {
    let mut request = json!({ "input": { "message": message } });
    warden_tests::merge(&mut request, body);
    let (status, record) = server.post_json("/v1/agents/chat/execute", &request).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["status"], "completed", "{record}");
    record
}

fn roles_and_contents(messages: &Value) -> Vec<(String, String)> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_sees_the_prior_turns_in_order() {
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::Normal).await;
    let (server, _tmp) = with_model(&fake, |_| {}).await;
    let first = turn(&server, "hello", json!({ "conversation": true })).await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    assert!(conversation.starts_with("conv_"), "{first}");
    assert_eq!(first["trigger"], "chat");
    assert_eq!(first["output"]["turn"], 1);
    let second = turn(&server, "my name is Ada", json!({ "conversation_id": conversation })).await;
    assert_eq!(second["output"]["turn"], 2);
    // Session memory set on execute, seen by the agent with what it remembered.
    let third = turn(
        &server,
        "what is my name?",
        json!({ "conversation_id": conversation, "memory": { "session": { "plan": "pro" } } }),
    )
    .await;
    assert_eq!(third["output"]["reply"], ANSWER);
    assert_eq!(third["output"]["turn"], 3);
    assert_eq!(third["output"]["history_truncated"], false);

    // The third model call: the system prompt with the session's facts, then
    // the prior turns in order, then this turn's message last.
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let messages = roles_and_contents(&seen[2].0["messages"]);
    let (system_role, system) = &messages[0];
    assert_eq!(system_role, "system");
    assert!(
        system.contains(r#"name: "Ada""#) && system.contains(r#"plan: "pro""#),
        "{system}"
    );
    let rest: Vec<(&str, &str)> = messages[1..].iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
    assert_eq!(
        rest,
        [
            ("user", "hello"),
            ("assistant", ANSWER),
            ("user", "my name is Ada"),
            ("assistant", ANSWER),
            ("user", "what is my name?"),
        ]
    );

    // The conversation as stored: six turns from three executions.
    let (status, got) = server.get(&format!("/v1/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["turn_count"], 6);
    assert_eq!(got["agent_id"], first["agent_id"]);
    assert_eq!(got["token_count"], 3 * 150, "{got}");
    let turns = got["turns"].as_array().unwrap();
    let ids: Vec<&str> = turns.iter().map(|t| t["execution_id"].as_str().unwrap()).collect();
    let runs = [&first, &second, &third].map(|r| r["id"].as_str().unwrap());
    assert_eq!(ids, [runs[0], runs[0], runs[1], runs[1], runs[2], runs[2]]);
    assert_eq!(turns[4]["content"], "what is my name?");
    assert_eq!(turns[5]["role"], "assistant");
    for (i, t) in turns.iter().enumerate() {
        assert_eq!(t["seq"], i as u64 + 1);
        assert!(t["timestamp"].is_string() && t["tool_calls"].is_array(), "{t}");
    }
    let (_, memory) = server.get(&format!("/v1/conversations/{conversation}/memory")).await;
    let keys: Vec<&str> = memory["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["name", "plan"], "{memory}");
    // Listed, filtered by agent, paged by cursor, and the executions listed
    // by trigger.
    server.deploy("chat", json!({ "name": "other" })).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        let (status, other) = server
            .post_json("/v1/conversations", &json!({ "agent": "other" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{other}");
        made.push(other["id"].as_str().unwrap().to_owned());
    }
    let (_, list) = server.get("/v1/conversations?agent_id=chat").await;
    let listed: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [conversation.as_str()], "{list}");
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let (status, page) = server
            .get(&format!("/v1/conversations?agent_id=other&limit=2{cursor}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&after={next}"),
            None => break,
        }
    }
    seen.sort();
    made.sort();
    assert_eq!(seen, made, "every conversation of the agent, once");
    let (_, chats) = server.get("/v1/executions?trigger=chat").await;
    assert_eq!(chats["data"].as_array().unwrap().len(), 3);
    let (_, turns) = server
        .get(&format!("/v1/executions?conversation_id={conversation}&limit=2"))
        .await;
    assert_eq!(turns["data"][0]["id"], third["id"], "newest first: {turns}");
    assert_eq!(turns["has_more"], true);

    // An unknown conversation is 404; another agent's is refused.
    let (status, body) = server
        .post_json(
            "/v1/agents/chat/execute",
            &json!({ "input": "hi", "conversation_id": "conv_nope" }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{body}"
    );
    server.deploy("notes", json!({})).await;
    let (status, body) = server
        .post_json(
            "/v1/agents/notes/execute",
            &json!({ "input": { "ops": [] }, "conversation_id": conversation }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "conversation_agent_mismatch"),
        "{body}"
    );
    // Session memory needs a conversation.
    let (status, body) = server
        .post_json(
            "/v1/agents/chat/execute",
            &json!({ "input": "hi", "memory": { "session": { "a": 1 } } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_cut_to_its_budget_and_says_so() {
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::Normal).await;
    let (server, _tmp) = with_model(&fake, |c| c.memory.history_max_turns = 2).await;
    let first = turn(&server, "one", json!({ "conversation": true })).await;
    let conversation = first["conversation_id"].clone();
    turn(&server, "two", json!({ "conversation_id": conversation })).await;
    let third = turn(&server, "three", json!({ "conversation_id": conversation })).await;
    assert_eq!(third["output"]["history_truncated"], true, "{third}");
    let seen = fake.seen.lock().unwrap().clone();
    let messages = roles_and_contents(&seen[2].0["messages"]);
    let rest: Vec<&str> = messages[1..].iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(rest, ["two", ANSWER, "three"], "the newest turns, the oldest left out");
    // The run's log says so too.
    let (_, logs) = server
        .get(&format!("/v1/executions/{}/logs", third["id"].as_str().unwrap()))
        .await;
    assert!(logs.to_string().contains("left out"), "{logs}");
}

/// Runs `notes` with these memory operations and stores attached.
async fn run(ws: &Server, ops: Value, stores: Value) -> (StatusCode, Value) {
    ws.post_json(
        "/v1/agents/notes/execute",
        &json!({ "input": { "ops": ops }, "memory_stores": stores }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stores_are_isolated_by_workspace_and_attachment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.memory.max_value_bytes = 1000;
    let acme_key = create_key(tmp.path(), "acme", "acme-ops", true);
    let globex_key = create_key(tmp.path(), "globex", "globex-ops", true);
    let server = Server::start_with(config).await;
    let acme = server.with_key(&acme_key);
    let globex = server.with_key(&globex_key);
    for ws in [&acme, &globex] {
        ws.deploy("notes", json!({})).await;
        let (status, store) = ws
            .post_json("/v1/memory-stores", &json!({ "name": "kb", "max_bytes": 200 }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{store}");
        assert!(store["id"].as_str().unwrap().starts_with("mem_"));
    }
    let (status, body) = acme.post_json("/v1/memory-stores", &json!({ "name": "kb" })).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "name_taken"));
    // acme writes its kb through a run it is attached to.
    let (_, record) = run(
        &acme,
        json!([{ "op": "set", "store": "kb", "key": "fact:sky", "value": "blue" }, { "op": "get", "store": "kb", "key": "fact:sky" }]),
        json!(["kb"]),
    )
    .await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["output"], json!([true, "blue"]));
    assert_eq!(record["memory_store_ids"].as_array().unwrap().len(), 1);
    let (_, entry) = acme.get("/v1/memory-stores/kb/entries/fact:sky").await;
    assert_eq!(entry["value"], "blue", "{entry}");
    // globex's kb is another store: nothing there.
    let (status, _) = globex.get("/v1/memory-stores/kb/entries/fact:sky").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, record) = run(
        &globex,
        json!([{ "op": "get", "store": "kb", "key": "fact:sky" }]),
        json!(["kb"]),
    )
    .await;
    assert_eq!(record["output"], json!([null]), "{record}");
    // Not attached: the store is not there for the run.
    let (_, record) = run(
        &acme,
        json!([{ "op": "get", "store": "kb", "key": "fact:sky" }]),
        json!([]),
    )
    .await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "memory_unavailable", "{record}");
    // No session memory outside a conversation.
    let (_, record) = run(&acme, json!([{ "op": "get", "key": "x" }]), json!([])).await;
    assert_eq!(record["error"]["code"], "memory_unavailable", "{record}");
    // Another workspace's store cannot be attached (by name or by id).
    let (_, acme_store) = acme.get("/v1/memory-stores/kb").await;
    let (status, body) = run(&globex, json!([]), json!([acme_store["id"]])).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{body}"
    );

    // Caps: the store's bytes and the host's value size, from a run and the API.
    let big = "x".repeat(300);
    let (_, record) = run(
        &acme,
        json!([{ "op": "set", "store": "kb", "key": "big", "value": big }]),
        json!(["kb"]),
    )
    .await;
    assert_eq!(record["error"]["code"], "memory_error", "{record}");
    assert!(record["error"]["message"].as_str().unwrap().contains("cap"), "{record}");
    let (status, body) = acme
        .send(
            acme.http
                .put(acme.url("/v1/memory-stores/kb/entries/big"))
                .json(&json!({ "value": big })),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
        "{body}"
    );
    let huge = "y".repeat(2000);
    let (status, body) = acme
        .send(
            acme.http
                .put(acme.url("/v1/memory-stores/kb/entries/huge"))
                .json(&json!({ "value": huge })),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
        "{body}"
    );
    let (status, entry) = acme
        .send(
            acme.http
                .put(acme.url("/v1/memory-stores/kb/entries/n"))
                .json(&json!({ "value": { "a": 1 } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    let (_, store) = acme.get("/v1/memory-stores/kb").await;
    assert_eq!(store["entries"], 2, "{store}");
    assert_eq!(
        store["bytes"],
        "fact:sky".len() + r#""blue""#.len() + "n".len() + r#"{"a":1}"#.len()
    );
    let (_, page) = acme.get("/v1/memory-stores/kb/entries?prefix=fact:").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    // Deleting the store deletes its entries.
    let (status, _) = acme.delete("/v1/memory-stores/kb").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = acme.get("/v1/memory-stores/kb").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = globex.get("/v1/memory-stores").await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "globex keeps its own: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_turns_and_session_memory_and_continue_starts_from_a_run() {
    let server = Server::start().await;
    server.deploy("chat", json!({})).await;
    server.deploy("notes", json!({})).await;
    let first = turn(
        &server,
        "my name is Bo",
        json!({ "conversation": true, "memory": { "session": { "tier": 2 } } }),
    )
    .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let (_, memory) = server.get(&format!("/v1/conversations/{conversation}/memory")).await;
    assert_eq!(memory["data"].as_array().unwrap().len(), 2, "{memory}");
    let (status, body) = server.delete(&format!("/v1/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for path in [
        format!("/v1/conversations/{conversation}"),
        format!("/v1/conversations/{conversation}/memory"),
    ] {
        let (status, _) = server.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = server.delete(&format!("/v1/conversations/{conversation}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server
        .post_json(
            "/v1/agents/chat/execute",
            &json!({ "input": "again", "conversation_id": conversation }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Continue as chat: a finished execution becomes a conversation's first turn.
    let single = server.run("chat", json!({ "message": "what is 2+2?" })).await;
    assert!(single["conversation_id"].is_null());
    let (status, made) = server
        .post_json(
            &format!("/v1/executions/{}/continue", single["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["turn_count"], 2);
    assert_eq!(made["turns"][0]["content"], "what is 2+2?");
    assert_eq!(made["turns"][1]["content"], single["output"]["reply"]);
    assert_eq!(made["metadata"]["continued_from"], single["id"]);
    let used = single["token_usage"]["total"].as_u64().unwrap();
    assert!(used > 0, "{single}");
    assert_eq!(made["token_count"], used, "the run's tokens count: {made}");
    let next = turn(&server, "and 3+3?", json!({ "conversation_id": made["id"] })).await;
    assert_eq!(next["output"]["turn"], 2, "{next}");
    // Only completed executions continue.
    let failed = server.run("notes", json!({ "ops": [{ "op": "nope" }] })).await;
    let (status, body) = server
        .post_json(
            &format!("/v1/executions/{}/continue", failed["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "not_completed"),
        "{body}"
    );
    // A conversation made over the API, with metadata.
    let (status, made) = server
        .post_json(
            "/v1/conversations",
            &json!({ "agent": "chat", "metadata": { "user": "u1" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["turn_count"].clone(), made["metadata"]["user"].clone()),
        (json!(0), json!("u1"))
    );
    let (status, _) = server
        .post_json("/v1/conversations", &json!({ "agent": "nobody" }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing of the deleted conversation is left in the store.
    assert_eq!(
        leftovers(server, &conversation).await,
        0,
        "rows of the deleted conversation remain"
    );
}

/// What the store still holds of `conversation` (the server stopped first):
/// the conversation, its turns, its session memory's entries and count.
async fn leftovers(server: Server, conversation: &str) -> usize {
    let data_dir = server.data_dir.clone();
    let _guard = server.stop().await;
    let stores = warden_host::store::Stores::open(&data_dir).unwrap();
    let found = usize::from(stores.conversations.get(conversation).await.unwrap().is_some())
        + stores.conversations.turns(conversation).await.unwrap().len()
        + stores
            .memory
            .entries(conversation, "", None, 100)
            .await
            .unwrap()
            .0
            .len()
        + usize::from(stores.memory.usage(conversation).await.unwrap() != (0, 0));
    stores.close().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_of_a_conversation_take_turns() {
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::SlowAt(2, Duration::from_millis(1500))).await;
    let (server, _tmp) = with_model(&fake, |_| {}).await;
    let first = turn(&server, "one", json!({ "conversation": true })).await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let start = |message: &str, extra: Value| {
        let mut body = json!({ "input": message, "conversation_id": conversation, "mode": "async" });
        warden_tests::merge(&mut body, extra);
        body
    };
    // The second turn is slow; while it runs, a turn that will not wait is
    // refused, a third is queued at once, and a fourth runs after both.
    let (status, second) = server
        .post_json("/v1/agents/chat/execute", &start("two", json!({})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    let second = second["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fake.requests.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second turn never called its model"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = server
        .post_json("/v1/agents/chat/execute", &start("never", json!({ "if_busy": "fail" })))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conversation_busy"),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains(&second), "{body}");
    let (status, third) = server
        .post_json(
            "/v1/agents/chat/execute",
            &start("three", json!({ "memory": { "session": { "plan": "gold" } } })),
        )
        .await;
    assert_eq!(
        (status, third["status"].as_str()),
        (StatusCode::ACCEPTED, Some("queued")),
        "{third}"
    );
    let third = third["id"].as_str().unwrap().to_owned();
    let (_, running) = server.get(&format!("/v1/executions/{second}")).await;
    assert_eq!(
        running["status"], "running",
        "the third was queued without waiting: {running}"
    );
    // Its session values are set when it starts, not while the turn before runs.
    let (_, memory) = server.get(&format!("/v1/conversations/{conversation}/memory")).await;
    assert!(!memory.to_string().contains("gold"), "{memory}");
    // A turn cancelled before it ran: the ones after it still wait their turn.
    let (_, dropped) = server
        .post_json("/v1/agents/chat/execute", &start("dropped", json!({})))
        .await;
    let dropped = dropped["id"].as_str().unwrap().to_owned();
    let (status, cancelled) = server
        .post_json(&format!("/v1/executions/{dropped}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{cancelled}"
    );
    let (status, body) = server.delete(&format!("/v1/conversations/{conversation}")).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conversation_busy"),
        "{body}"
    );
    let fourth = turn(&server, "four", json!({ "conversation_id": conversation })).await;
    let second = server.wait_terminal(&second).await;
    let third = server.wait_terminal(&third).await;
    for (before, after) in [(&first, &second), (&second, &third), (&third, &fourth)] {
        assert_eq!(after["status"], "completed", "{after}");
        assert!(
            after["started_at"].as_str().unwrap() >= before["completed_at"].as_str().unwrap(),
            "each turn ran after the one before it: {before} {after}"
        );
    }
    let (_, got) = server.get(&format!("/v1/conversations/{conversation}")).await;
    let said: Vec<&str> = got["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "user")
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["one", "two", "three", "four"]);
    let (_, memory) = server.get(&format!("/v1/conversations/{conversation}/memory")).await;
    assert_eq!(memory["data"][0]["value"], "gold", "{memory}");
    // The fourth turn's model saw every turn before it.
    let seen = fake.seen.lock().unwrap().clone();
    let messages = roles_and_contents(&seen[3].0["messages"]);
    let users: Vec<&str> = messages
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(users, ["one", "two", "three", "four"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_returns_the_partial_output_and_the_usage_so_far() {
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::Stall).await;
    let (server, _tmp) = with_model(&fake, |_| {}).await;
    let (status, accepted) = server
        .post_json(
            "/v1/agents/chat/execute",
            &json!({ "input": { "message": "tell me a long story" }, "conversation": true, "mode": "async" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    // Wait until the stalled answer's first words streamed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, events) = server.get(&format!("/v1/executions/{id}/events")).await;
        if events.to_string().contains("A-1001") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing streamed: {events}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, cancelled) = server
        .post_json(&format!("/v1/executions/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "the answer waits for the stop: {cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["output_partial"], STALLED, "{cancelled}");
    let usage = &cancelled["token_usage"];
    assert!(
        usage["prompt"].as_u64().unwrap() > 0 && usage["completion"].as_u64().unwrap() > 0,
        "{usage}"
    );
    assert_eq!(cancelled["usage_estimated"], true);
    // As stored; and a cancelled turn adds nothing to its conversation.
    let (_, stored) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(stored["output_partial"], STALLED);
    assert_eq!(stored["token_usage"], *usage);
    let (_, conversation) = server
        .get(&format!(
            "/v1/conversations/{}",
            stored["conversation_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(conversation["turn_count"], 0, "{conversation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_conversations_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.memory.conversation_ttl_secs = 1;
    config.retention_sweep_ms = 100;
    let server = Server::start_with(config).await;
    server.deploy("chat", json!({})).await;
    let first = turn(
        &server,
        "hi",
        json!({ "conversation": true, "memory": { "session": { "k": 1 } } }),
    )
    .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = server.get(&format!("/v1/conversations/{conversation}")).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its executions stay (under their own retention).
    let (status, _) = server
        .get(&format!("/v1/executions/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(leftovers(server, &conversation).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_killed_in_its_model_call_resumes_by_replay() {
    // The second model request hangs: the host is killed while it waits.
    let fake = FakeProvider::start(Protocol::OpenAi, Mode::SlowAt(2, Duration::from_secs(600))).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "deploy_examples = false\n[[llm.providers]]\nname = \"fake\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\
             api_key_env = \"CARGO_PKG_NAME\"\nmodels = [\"gpt-test\"]\n",
            fake.url()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let start = || Warden::start_with(&data, &["--config", config.to_str().unwrap()]);
    let warden = start();
    let server = warden.client();
    server.deploy("chat", json!({ "models": ["gpt-test"] })).await;
    let first = turn(&server, "my name is Cy", json!({ "conversation": true })).await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let (status, accepted) = server
        .post_json(
            "/v1/agents/chat/execute",
            &json!({ "input": "who am I?", "conversation_id": conversation, "mode": "async" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fake.requests.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn never called its model"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A third turn is queued behind it.
    let (status, queued) = server
        .post_json(
            "/v1/agents/chat/execute",
            &json!({ "input": "and then?", "conversation_id": conversation, "mode": "async" }),
        )
        .await;
    assert_eq!(
        (status, queued["status"].as_str()),
        (StatusCode::ACCEPTED, Some("queued")),
        "{queued}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    warden.sigkill();

    let warden = start();
    let server = warden.client();
    let done = ended(&server, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["turn"], 2);
    let third = ended(&server, queued["id"].as_str().unwrap()).await;
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(third["output"]["turn"], 3, "{third}");
    assert!(
        third["started_at"].as_str().unwrap() >= done["completed_at"].as_str().unwrap(),
        "still one turn at a time after the restart"
    );
    // The call cut short was made again, with the same history; then the third's.
    assert_eq!(fake.requests.load(Ordering::SeqCst), 4);
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[1].0["messages"], seen[2].0["messages"]);
    let users = roles_and_contents(&seen[3].0["messages"])
        .into_iter()
        .filter(|(r, _)| r == "user")
        .count();
    assert_eq!(users, 3, "the third turn saw the resumed second");
    let (_, got) = server.get(&format!("/v1/conversations/{conversation}")).await;
    assert_eq!(got["turn_count"], 6, "{got}");
    drop(warden);
}

/// Polls an execution until it has ended (30 s at most).
async fn ended(server: &Server, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, e) = server.get(&format!("/v1/executions/{id}")).await;
        if warden_tests::TERMINAL.contains(&e["status"].as_str().unwrap_or("")) {
            return e;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ended: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
