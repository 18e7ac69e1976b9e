//! The event log and its SSE stream: live, resumed, replayed after the fact,
//! `mode: "stream"`, JSON pages, model and tool events, and subscribers that go
//! away.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, SseEvent, read_sse};

covers!(chatty => stream_mode_resume_and_replay);

fn kinds(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|e| e.event.clone()).collect()
}

fn assert_ordered(events: &[SseEvent], from: u64) {
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    let expected: Vec<u64> = (from..from + events.len() as u64).collect();
    assert_eq!(ids, expected, "gaps or duplicates");
    let terminal = events
        .iter()
        .filter(|e| e.event == "done" || e.event == "error")
        .count();
    assert_eq!(terminal, 1, "exactly one terminal event: {:?}", kinds(events));
    assert!(matches!(events.last().unwrap().event.as_str(), "done" | "error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_resume_and_replay() {
    let server = Server::start().await;
    server.deploy("chatty", json!({})).await;
    let resp = server
        .http
        .post(server.url("/v1/agents/chatty/execute"))
        .json(&json!({ "input": { "lines": 2 }, "mode": "stream" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let live = read_sse(resp).await;
    assert_ordered(&live, 1);
    let ks = kinds(&live);
    assert_eq!(&ks[..2], ["status", "status"]);
    assert_eq!(live[0].data["data"]["status"], "queued");
    assert_eq!(live[1].data["data"]["status"], "running");
    assert_eq!(ks.iter().filter(|k| *k == "log").count(), 7, "{ks:?}");
    assert_eq!(ks[ks.len() - 2], "status");
    let done = live.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["data"]["output"], json!({ "written": 2 }));
    let id = {
        let (_, list) = server.get("/v1/executions?limit=1").await;
        list["data"][0]["id"].as_str().unwrap().to_owned()
    };

    // After the fact: the whole log again, then the stream closes.
    let replay = server.stream(&id, None).await;
    assert_eq!(kinds(&replay), kinds(&live));
    // Resume from the middle, by header and by query: no gaps, no duplicates.
    let resumed = server.stream(&id, Some(4)).await;
    assert_ordered(&resumed, 5);
    assert_eq!(kinds(&resumed), kinds(&live[4..]));
    let by_query = read_sse(
        server
            .http
            .get(server.url(&format!("/v1/executions/{id}/stream?after=4")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(kinds(&by_query), kinds(&resumed));

    // The same events as JSON pages.
    let (_, page) = server.get(&format!("/v1/executions/{id}/events?limit=3")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_cursor"], 3);
    let (_, rest) = server.get(&format!("/v1/executions/{id}/events?after=3")).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), live.len() - 3);
    assert_eq!(rest["data"][0]["type"], live[3].event);
    // Cursors are non-negative int64s, as documented.
    for bad in ["-1", "9223372036854775808"] {
        let (status, body) = server.get(&format!("/v1/executions/{id}/events?after={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "after={bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query");
        let (status, _) = server.get(&format!("/v1/executions/{id}/stream?after={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "stream after={bad}");
        let stream = server.url(&format!("/v1/executions/{id}/stream"));
        let (status, _) = server.send(server.http.get(stream).header("last-event-id", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "Last-Event-ID {bad}");
    }
    let (status, _) = server.get("/v1/executions/exec_nope/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_mid_run_sees_the_rest_and_a_vanished_one_disturbs_nothing() {
    let server = Server::start().await;
    server.deploy("sleepy", json!({})).await;
    let (_, accepted) = server
        .post_json(
            "/v1/agents/sleepy/execute",
            &json!({ "input": { "ms": 400 }, "mode": "async" }),
        )
        .await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    // One subscriber connects and goes away at once.
    let gone = server
        .http
        .get(server.url(&format!("/v1/executions/{id}/stream")))
        .send()
        .await
        .unwrap();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, now) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(now["status"], "running");
    // Another joins mid-run, from the start: it gets everything in order.
    let events = server.stream(&id, None).await;
    assert_ordered(&events, 1);
    assert_eq!(
        events.last().unwrap().data["data"]["output"],
        json!({ "slept_ms": 400 })
    );
    let done = server.wait_terminal(&id).await;
    assert_eq!(done["status"], "completed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_tool_events_and_an_error_terminal() {
    let server = Server::start().await;
    server.deploy("support", json!({})).await;
    server.deploy("crash", json!({})).await;
    let resp = server
        .http
        .post(server.url("/v1/agents/support/execute"))
        .json(&json!({ "input": { "question": "Where is order A-7?", "orders": { "A-7": "late" } }, "mode": "stream" }))
        .send()
        .await
        .unwrap();
    let events = read_sse(resp).await;
    assert_ordered(&events, 1);
    let ks = kinds(&events);
    for kind in ["tool_start", "tool_end", "content", "step"] {
        assert!(ks.iter().any(|k| k == kind), "no {kind} event in {ks:?}");
    }
    let start = events.iter().position(|e| e.event == "tool_start").unwrap();
    let end = events.iter().position(|e| e.event == "tool_end").unwrap();
    assert!(start < end);
    assert_eq!(events[start].data["data"]["name"], "kv");
    let content: String = events
        .iter()
        .filter(|e| e.event == "content")
        .map(|e| e.data["data"]["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        Value::String(content),
        events.last().unwrap().data["data"]["output"]["answer"]
    );

    let failed = read_sse(
        server
            .http
            .post(server.url("/v1/agents/crash/execute"))
            .json(&json!({ "mode": "stream" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ordered(&failed, 1);
    let last = failed.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.data["data"]["error"]["code"], "trap");
    server.stop().await;
}
