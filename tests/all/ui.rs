//! The dashboard, in a real headless Chromium against a real server: sign in
//! with a key; list, filter and open executions; watch a live run stream and
//! finish; Stop a run; approve a waiting one; Make Repeatable; chat. Stream
//! tokens over plain HTTP. Screenshots go to `target/ui-screenshots/`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::browser::Browser;
use warden_tests::{Server, create_key, error_code, test_config};

const WAIT: Duration = Duration::from_secs(20);

/// A server whose data dir has an admin key from the start: the server, a
/// handle that sends the key, and the key.
async fn keyed_server() -> (Server, Server, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let token = create_key(tmp.path(), "default", "ops", true);
    let server = Server::start_with(test_config(tmp.path())).await;
    let keyed = server.with_key(&token);
    (server, keyed, token, tmp)
}

/// A browser on the dashboard, signed in with `token`.
async fn signed_in(base: &str, token: &str) -> Browser {
    let browser = Browser::launch(1280, 900).await;
    browser.goto(&format!("{base}/")).await;
    browser.wait_for("document.querySelector('#api-key')", WAIT).await;
    browser.fill("#api-key", token).await;
    browser.click("#sign-in").await;
    browser.wait_for("document.querySelector('#executions')", WAIT).await;
    browser
}

/// The statuses of the listed rows, top to bottom.
async fn listed(browser: &Browser) -> Vec<String> {
    let rows = browser
        .eval("[...document.querySelectorAll('#executions tr')].map(r => r.dataset.status)")
        .await;
    serde_json::from_value(rows).unwrap()
}

async fn run_async(server: &Server, agent: &str, input: Value) -> String {
    let (status, body) = server
        .post_json(
            &format!("/v1/agents/{agent}/execute"),
            &json!({"input": input, "mode": "async"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_filters_and_opens_executions() {
    let (_server, server, token, _tmp) = keyed_server().await;
    server.deploy("echo", json!({})).await;
    server.deploy("support", json!({})).await;
    let ok = server.run("echo", json!({"n": 1})).await;
    server.run("echo", json!({"n": 2})).await;
    let failed = server.run("support", json!("not the input it takes")).await;
    assert_eq!(failed["status"], "failed");

    // Without a key the page asks for one.
    let browser = Browser::launch(1280, 900).await;
    browser.goto(&server.url("/")).await;
    browser.wait_for("document.querySelector('#api-key')", WAIT).await;
    browser.fill("#api-key", "wdn_nope_nope").await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "document.querySelector('.signin .error-text').textContent.length > 0",
            WAIT,
        )
        .await;
    browser.close().await;

    let browser = signed_in(&server.base, &token).await;
    browser
        .wait_for("document.querySelectorAll('#executions tr').length === 3", WAIT)
        .await;
    assert_eq!(listed(&browser).await, ["failed", "completed", "completed"]);
    browser.screenshot("executions-list").await;

    // Filters: by status, then by agent; each is in the URL.
    browser.fill("#filter-status", "failed").await;
    browser
        .wait_for(
            "location.hash.includes('status=failed') && document.querySelectorAll('#executions tr').length === 1",
            WAIT,
        )
        .await;
    assert_eq!(listed(&browser).await, ["failed"]);
    browser.click("button[type=button]").await; // Clear
    browser
        .wait_for("document.querySelectorAll('#executions tr').length === 3", WAIT)
        .await;
    browser
        .wait_for("document.querySelectorAll('#filter-agent option').length === 3", WAIT)
        .await;
    browser.fill("#filter-agent", "echo").await;
    browser
        .wait_for(
            "location.hash.includes('agent=echo') && document.querySelectorAll('#executions tr').length === 2",
            WAIT,
        )
        .await;
    browser.fill("#filter-from", "2000-01-01T00:00").await;
    browser.fill("#filter-to", "2001-01-01T00:00").await;
    browser
        .wait_for(
            "location.hash.includes('to=') && document.querySelectorAll('#executions tr').length === 0",
            WAIT,
        )
        .await;

    // A row opens its execution: fields, output, logs, steps, raw JSON.
    let id = ok["id"].as_str().unwrap();
    browser.goto(&server.url("/#/executions")).await;
    browser
        .wait_for(&format!("document.querySelector('tr[data-id=\"{id}\"]')"), WAIT)
        .await;
    browser.click(&format!("tr[data-id=\"{id}\"]")).await;
    browser
        .wait_for(
            &format!("location.hash === '#/executions/{id}' && document.querySelector('#fields')"),
            WAIT,
        )
        .await;
    let shown = browser
        .wait_for("document.querySelector('#waterfall .step') && document.querySelector('#logs div') && document.body.innerText", WAIT)
        .await;
    let shown = shown.as_str().unwrap();
    for expected in [
        "echo v1",
        "completed",
        "Hello, world!",
        id,
        "Retry",
        "Make Repeatable",
        "Continue as Chat",
    ] {
        assert!(shown.contains(expected), "the detail page lacks {expected:?}:\n{shown}");
    }
    assert!(!shown.contains("Live"), "a finished run is not live");
    browser.screenshot("execution-detail").await;

    // Leaving a page before it has loaded: the next page is never drawn over.
    browser
        .eval(&format!(
            "location.hash = '#/executions/{id}'; setTimeout(() => {{ location.hash = '#/agents'; }}, 0); true"
        ))
        .await;
    browser.wait_for("document.querySelector('#agents')", WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        browser
            .eval("[!!document.querySelector('#agents'), !!document.querySelector('#fields')]")
            .await,
        json!([true, false])
    );

    // The failed one shows its error.
    browser
        .goto(&server.url(&format!("/#/executions/{}", failed["id"].as_str().unwrap())))
        .await;
    let error = browser
        .wait_for(
            "document.querySelector('#error') && document.querySelector('#error').textContent",
            WAIT,
        )
        .await;
    assert!(error.as_str().unwrap().starts_with("invalid_input:"), "{error}");
    assert_eq!(browser.errors(), Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_streams_and_finishes_and_stop_cancels_one() {
    let (_server, server, token, _tmp) = keyed_server().await;
    server.deploy("ticker", json!({})).await;
    server.deploy("sleepy", json!({})).await;
    let browser = signed_in(&server.base, &token).await;

    // 30 log lines, 100 ms apart: the page follows them as they come.
    let id = run_async(&server, "ticker", json!({"n": 30, "ms": 100})).await;
    browser.goto(&server.url(&format!("/#/executions/{id}"))).await;
    let seen = browser
        .wait_for(
            "document.querySelector('h1 .live') && document.querySelectorAll('#logs div').length",
            WAIT,
        )
        .await;
    let first = seen.as_u64().unwrap();
    assert!(first < 30, "the page opened after the run ended ({first} lines)");
    browser.screenshot("execution-live").await;
    let later = browser
        .wait_for(
            &format!("document.querySelectorAll('#logs div').length > {first} && document.querySelectorAll('#logs div').length"),
            WAIT,
        )
        .await;
    assert!(later.as_u64().unwrap() > first);
    // It ends: the badge says so, the Live indicator goes, every line is there.
    browser
        .wait_for(
            "document.querySelector('h1 .badge').dataset.status === 'completed' && !document.querySelector('h1 .live')",
            WAIT,
        )
        .await;
    assert_eq!(browser.eval("document.querySelectorAll('#logs div').length").await, 30);
    // The stream was opened with a stream token, never with the key.
    let urls = browser
        .eval("performance.getEntriesByType('resource').map(e => e.name).join('\\n')")
        .await;
    let urls = urls.as_str().unwrap();
    assert!(urls.contains("/stream?access_token=wst_"), "{urls}");
    assert!(!urls.contains(&token), "the key went into a URL: {urls}");

    // Stop: a long sleep, cancelled from its page.
    let id = run_async(&server, "sleepy", json!({"ms": 60_000})).await;
    browser.goto(&server.url(&format!("/#/executions/{id}"))).await;
    browser
        .wait_for(
            "document.querySelector('h1 .badge').dataset.status === 'running' && document.querySelector('#stop')",
            WAIT,
        )
        .await;
    browser.click("#stop").await;
    browser
        .wait_for(
            "document.querySelector('h1 .badge').dataset.status === 'cancelled' && !document.querySelector('h1 .live')",
            WAIT,
        )
        .await;
    browser.screenshot("execution-stopped").await;
    let (_, record) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(record["status"], "cancelled");
    assert_eq!(browser.errors(), Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_decided_from_the_inbox() {
    let (_server, server, token, _tmp) = keyed_server().await;
    server.deploy("refund", json!({})).await;
    let id = run_async(
        &server,
        "refund",
        json!({"order_id": "B-2", "amount": 250, "reason": "broken"}),
    )
    .await;
    let browser = signed_in(&server.base, &token).await;
    browser.goto(&server.url("/#/approvals")).await;
    browser
        .wait_for(
            &format!("document.querySelector('.approval-card a[href=\"#/executions/{id}\"]')"),
            WAIT,
        )
        .await;
    browser.screenshot("approvals-inbox").await;
    browser.fill(".approval-card .comment", "goodwill").await;
    browser.click(".approval-card .approve").await;
    browser
        .wait_for("!document.querySelector('.approval-card .approve') && document.body.innerText.includes('No pending approvals')", WAIT)
        .await;
    let record = server.wait_terminal(&id).await;
    assert_eq!(record["status"], "completed", "{record}");
    let (_, approvals) = server.get(&format!("/v1/approvals?execution_id={id}")).await;
    assert_eq!(approvals["data"][0]["status"], "approved");
    assert_eq!(approvals["data"][0]["comment"], "goodwill");
    // The run's page shows the decision.
    browser.goto(&server.url(&format!("/#/executions/{id}"))).await;
    browser
        .wait_for(
            "document.querySelector('.approval-card .badge').dataset.status === 'approved'",
            WAIT,
        )
        .await;

    // Another, rejected from its own live page: what is typed survives the
    // page's rereads of the record (every 3 s).
    let id = run_async(
        &server,
        "refund",
        json!({"order_id": "B-3", "amount": 500, "reason": "late"}),
    )
    .await;
    browser.goto(&server.url(&format!("/#/executions/{id}"))).await;
    browser
        .wait_for("document.querySelector('h1 .badge').dataset.status === 'awaiting_approval' && document.querySelector('h1 .live') && document.querySelector('.approval-card .reject')", WAIT)
        .await;
    browser.fill(".approval-card .comment", "too much").await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        browser
            .eval("document.querySelector('.approval-card .comment').value")
            .await,
        "too much"
    );
    browser.click(".approval-card .reject").await;
    browser
        .wait_for(
            "document.querySelector('h1 .badge').dataset.status === 'rejected' && !document.querySelector('h1 .live')",
            WAIT,
        )
        .await;
    let (_, approvals) = server.get(&format!("/v1/approvals?execution_id={id}")).await;
    assert_eq!(approvals["data"][0]["status"], "rejected");
    assert_eq!(approvals["data"][0]["comment"], "too much");
    assert_eq!(browser.errors(), Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_repeatable_and_chat_from_the_dashboard() {
    let (_server, server, token, _tmp) = keyed_server().await;
    server.deploy("echo", json!({})).await;
    server.deploy("chat", json!({})).await;
    let run = server.run("echo", json!({"repeat": "me"})).await;
    let id = run["id"].as_str().unwrap();
    let browser = signed_in(&server.base, &token).await;
    browser.goto(&server.url(&format!("/#/executions/{id}"))).await;
    browser.wait_for("document.querySelector('#repeat')", WAIT).await;
    browser.click("#repeat").await;
    browser.fill("#repeat-cron", "0 9 * * *").await;
    browser.fill("#repeat-zone", "Europe/Paris").await;
    browser.click("#repeat-save").await;
    browser
        .wait_for(
            "location.hash.startsWith('#/schedules') && document.querySelector('#schedules tr[data-schedule]')",
            WAIT,
        )
        .await;
    let (_, schedules) = server.get("/v1/schedules").await;
    let schedule = &schedules["data"][0];
    assert_eq!(schedule["cron"], "0 9 * * *");
    assert_eq!(schedule["timezone"], "Europe/Paris");
    assert_eq!(schedule["input"], json!({"repeat": "me"}));
    browser.screenshot("schedules").await;

    // A conversation as a chat: send a message, the answer streams in.
    let (status, conversation) = server.post_json("/v1/conversations", &json!({"agent": "chat"})).await;
    assert_eq!(status, StatusCode::CREATED, "{conversation}");
    let conversation = conversation["id"].as_str().unwrap();
    browser
        .goto(&server.url(&format!("/#/conversations/{conversation}")))
        .await;
    browser.wait_for("document.querySelector('#chat-input')", WAIT).await;
    browser.fill("#chat-input", "hello from the browser").await;
    browser.click("#chat-send").await;
    browser
        .wait_for("document.querySelectorAll('#chat .bubble').length === 2 && document.querySelector('#chat .bubble.assistant .meta')", WAIT)
        .await;
    let answer = browser
        .eval("document.querySelector('#chat .bubble.assistant').textContent")
        .await;
    assert!(
        answer.as_str().unwrap().contains("You said: hello from the browser"),
        "{answer}"
    );
    browser
        .wait_for(
            "document.querySelector('#chat-counts').textContent.startsWith('2 turns')",
            WAIT,
        )
        .await;
    browser.screenshot("conversation").await;

    // The Tasks tab: a task sent with another of the agent's models.
    server
        .deploy("support", json!({"models": ["scripted", "scripted-mini"]}))
        .await;
    browser.goto(&server.url("/#/agents/support?tab=tasks")).await;
    browser
        .wait_for(
            "document.querySelector('#task-model option[value=\"scripted-mini\"]')",
            WAIT,
        )
        .await;
    browser
        .fill(
            "#task-input",
            r#"{"question": "Where is order A-7?", "orders": {"A-7": "late"}}"#,
        )
        .await;
    browser
        .eval("document.querySelector('#task-model').value = 'scripted-mini'")
        .await;
    browser.click("#task-send").await;
    browser
        .wait_for(
            "document.querySelector('#task-history tr[data-status=\"completed\"]')",
            WAIT,
        )
        .await;
    let (_, runs) = server.get("/v1/agents/support/executions").await;
    assert_eq!(runs["data"][0]["model"], "scripted-mini", "{runs}");
    assert_eq!(runs["data"][0]["model_used"], "scripted:scripted-mini", "{runs}");
    browser.screenshot("tasks").await;
    assert_eq!(browser.errors(), Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tokens_open_one_stream_and_keys_stay_out_of_urls() {
    let (_server, server, token, _tmp) = keyed_server().await;
    server.deploy("echo", json!({})).await;
    let run = server.run("echo", json!(1)).await;
    let id = run["id"].as_str().unwrap();
    let other = server.run("echo", json!(2)).await;
    let other = other["id"].as_str().unwrap();

    let (status, grant) = server
        .post_json(&format!("/v1/executions/{id}/stream-token"), &json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    let stream_token = grant["token"].as_str().unwrap();
    assert!(stream_token.starts_with("wst_") && !stream_token.contains(&token));
    let anonymous = reqwest::Client::new();
    // It opens its execution's stream, without a key.
    let response = anonymous
        .get(server.url(grant["stream_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = warden_tests::read_sse(response).await;
    assert_eq!(events.last().unwrap().event, "done");
    // Nothing else: another execution's stream, another route, a forged token.
    for path in [
        format!("/v1/executions/{other}/stream?access_token={stream_token}"),
        format!("/v1/executions/{id}?access_token={stream_token}"),
        format!("/v1/executions/{id}/events?access_token={stream_token}"),
        format!("/v1/executions/{id}/stream?access_token={stream_token}x"),
        format!("/v1/executions/{id}/stream?access_token={token}"),
    ] {
        let response = anonymous.get(server.url(&path)).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{path}"
        );
    }
    // Another workspace's key cannot have one made.
    let globex = server.with_key(&create_key(&server.data_dir, "globex", "g", true));
    let (status, _) = globex
        .post_json(&format!("/v1/executions/{id}/stream-token"), &json!(null))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A revoked key's tokens stop working.
    let member = create_key(&server.data_dir, "default", "member", false);
    let member = server.with_key(&member);
    let (_, grant) = member
        .post_json(&format!("/v1/executions/{id}/stream-token"), &json!(null))
        .await;
    let (_, keys) = server.get("/admin/keys").await;
    let member_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "member")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = server.delete(&format!("/admin/keys/{member_id}")).await;
    assert!(status.is_success(), "{body}");
    let response = anonymous
        .get(server.url(grant["stream_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The page itself: no key needed, a strict policy, cached by its digest.
    let page = anonymous.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let etag = page.headers()["etag"].to_str().unwrap().to_owned();
    let again = anonymous
        .get(server.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    for file in [
        "app.css",
        "main.js",
        "core.js",
        "executions.js",
        "detail.js",
        "pages.js",
    ] {
        let response = anonymous.get(server.url(&format!("/ui/{file}"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
    }
    let missing = anonymous.get(server.url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_token_of_an_open_host_ends_with_its_first_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.auth.key_cache_ms = 50;
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    let run = server.run("echo", json!(1)).await;
    let id = run["id"].as_str().unwrap();
    let (status, grant) = server
        .post_json(&format!("/v1/executions/{id}/stream-token"), &json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    let url = server.url(grant["stream_url"].as_str().unwrap());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
    create_key(tmp.path(), "default", "first", true);
    // The host closes once it sees the key; the open host's token with it.
    for _ in 0..100 {
        if server.get("/v1/agents").await.0 == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.get("/v1/agents").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}
