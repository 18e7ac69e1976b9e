//! Approvals: a run asks, waits unloaded (its slot free), and goes on when a
//! person decides over HTTP; rejection and expiry end it `rejected`, cancel
//! ends it while it waits, waiting does not count against its timeout, and
//! only admin or approver keys of its own workspace see and decide.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, create_key, create_role_key, error_code, test_config};

use crate::durable::{ended, poll, start_async as start};

covers!(refund => refund_asks_a_person_for_large_refunds_and_goes_on_when_approved);

async fn server() -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.durability.approval_grace_ms = 100;
    config.durability.expiry_sweep_ms = 50;
    (Server::start_with(config).await, tmp)
}

/// The open request of an execution, once it waits.
async fn open_request(server: &Server, id: &str) -> Value {
    poll(server, id, |e| e["status"] == "awaiting_approval").await;
    let (status, page) = server.get(&format!("/v1/approvals?execution_id={id}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_asks_a_person_for_large_refunds_and_goes_on_when_approved() {
    let (server, _tmp) = server().await;
    server.deploy("refund", json!({})).await;
    let small = server.run("refund", json!({ "order_id": "A-1", "amount": 20 })).await;
    assert_eq!(small["status"], "completed", "{small}");
    assert!(small["output"]["approval"].is_null());

    // A sync caller hears that the run waits, once it is unloaded.
    let (status, waiting) = server
        .post_json(
            "/v1/agents/refund/execute",
            &json!({ "input": { "order_id": "B-2", "amount": 250, "reason": "broken" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{waiting}");
    assert_eq!(waiting["status"], "awaiting_approval", "{waiting}");
    let id = waiting["id"].as_str().unwrap();
    assert_eq!(server.get("/admin/health").await.1["executions"]["running"], 0);
    let request = open_request(&server, id).await;
    assert_eq!(request["title"], "Refund 250.00 for order B-2");
    assert_eq!(request["detail"]["reason"], "broken");
    assert_eq!(request["status"], "pending");
    assert!(request["expires_at"].is_string(), "{request}");
    let (status, decided) = server
        .post_json(
            &format!("/v1/executions/{id}/approve"),
            &json!({ "comment": "ok", "data": { "note": "goodwill" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let done = poll(&server, id, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["refund_id"], "rf-B-2");
    assert_eq!(done["output"]["approval"], json!({ "note": "goodwill" }));
    // The refund was recorded once: a second one is refused.
    let again = server.run("refund", json!({ "order_id": "B-2", "amount": 250 })).await;
    assert_eq!(again["status"], "failed", "{again}");
    assert_eq!(again["error"]["code"], "already_refunded");
    // No open request any more.
    let (status, body) = server
        .post_json(&format!("/v1/executions/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_expiry_and_cancel_end_a_waiting_run_and_waiting_is_not_timed() {
    let (server, _tmp) = server().await;
    server
        .deploy("ledger", json!({ "limits": { "timeout_ms": 1000 } }))
        .await;

    let rejected = start(&server, "ledger", json!({ "approve": "Delete it?" })).await;
    open_request(&server, &rejected).await;
    let (status, body) = server
        .post_json(
            &format!("/v1/executions/{rejected}/reject"),
            &json!({ "reason": "too risky" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "rejected");
    let done = poll(&server, &rejected, ended).await;
    assert_eq!(done["status"], "rejected", "{done}");
    assert_eq!(done["error"]["code"], "rejected");
    assert_eq!(done["error"]["message"], "too risky");

    let expiring = start(
        &server,
        "ledger",
        json!({ "approve": "Quick?", "approve_timeout_secs": 1 }),
    )
    .await;
    let request = open_request(&server, &expiring).await;
    let done = poll(&server, &expiring, ended).await;
    assert_eq!(done["status"], "rejected", "{done}");
    assert_eq!(done["error"]["code"], "approval_expired");
    let request = server
        .get(&format!("/v1/approvals/{}", request["id"].as_str().unwrap()))
        .await
        .1;
    assert_eq!(request["status"], "expired", "{request}");

    let cancelled = start(&server, "ledger", json!({ "approve": "Never mind?" })).await;
    let request = open_request(&server, &cancelled).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = server
        .post_json(&format!("/v1/executions/{cancelled}/cancel"), &json!({}))
        .await;
    // Resumed to end: the answer waits for that.
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{body}"
    );
    let done = poll(&server, &cancelled, ended).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let request = server
        .get(&format!("/v1/approvals/{}", request["id"].as_str().unwrap()))
        .await
        .1;
    assert_eq!(request["status"], "cancelled", "{request}");

    // Two seconds of waiting, in a run whose timeout is one.
    let patient = start(&server, "ledger", json!({ "approve": "Wait for me?" })).await;
    open_request(&server, &patient).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = server
        .post_json(&format!("/v1/executions/{patient}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = poll(&server, &patient, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["decision"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_and_approver_keys_of_its_workspace_see_and_decide_a_request() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.durability.approval_grace_ms = 100;
    config.auth.key_cache_ms = 50;
    let server = Server::start_with(config).await;
    let admin = server.with_key(&create_key(tmp.path(), "acme", "ops", true));
    let member = server.with_key(&create_key(tmp.path(), "acme", "dev", false));
    let approver = server.with_key(&create_role_key(tmp.path(), "acme", "finance", "approver"));
    let other = server.with_key(&create_key(tmp.path(), "globex", "ops", true));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.get("/v1/agents").await.0 != StatusCode::UNAUTHORIZED {
        assert!(tokio::time::Instant::now() < deadline, "the host never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    admin.deploy("ledger", json!({})).await;
    let id = start(&member, "ledger", json!({ "approve": "Pay the invoice?" })).await;
    let request = open_request(&member, &id).await;
    let approval = request["id"].as_str().unwrap().to_owned();

    // Another workspace neither sees nor decides it.
    let (status, page) = other.get("/v1/approvals").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"], json!([]));
    assert_eq!(
        other.get(&format!("/v1/approvals/{approval}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = other
        .post_json(&format!("/v1/approvals/{approval}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = other
        .post_json(&format!("/v1/executions/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A member key sees it but may not decide.
    let (status, body) = member
        .post_json(&format!("/v1/approvals/{approval}/approve"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    // An approver key decides, and may do nothing else.
    let (status, body) = approver
        .post_json("/v1/agents/ledger/execute", &json!({ "input": {} }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(approver.get(&format!("/v1/executions/{id}")).await.0, StatusCode::OK);
    let (status, decided) = approver
        .post_json(
            &format!("/v1/approvals/{approval}/approve"),
            &json!({ "comment": "paid" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["decided_by_name"], "finance");
    assert!(decided["decided_by"].as_str().unwrap().starts_with("key_"), "{decided}");
    let done = poll(&member, &id, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (status, body) = admin.get("/v1/approvals?status=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, page) = admin.get("/v1/approvals?status=approved").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
}
