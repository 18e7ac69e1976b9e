//! Tasks, taken by the official Rust SDK's client (`rmcp`).

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities, ClientConfig, GetTaskParams,
    GetTaskResult, Implementation, JsonObject, ProtocolVersion, TaskPayload, TaskStatus, UpdateTaskParams,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use warden_tests::{Server, create_key, create_role_key, test_config};

type Client = RunningService<RoleClient, ClientConfig>;

async fn connect(server: &Server, token: &str) -> Client {
    let mut capabilities = ClientCapabilities::default();
    capabilities.extensions = Some(
        [(rmcp::model::TASKS_EXTENSION_ID.to_owned(), JsonObject::new())]
            .into_iter()
            .collect(),
    );
    let info = ClientConfig::new(capabilities, Implementation::new("warden-tests", "1"))
        .with_protocol_version(ProtocolVersion::V_2025_11_25);
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")).auth_header(token.to_owned()),
    );
    info.serve(transport).await.expect("connects")
}

fn call(name: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else {
        unreachable!()
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

/// Polls the task until `done` says so (within 20 s).
async fn poll(client: &Client, id: &str, done: impl Fn(&GetTaskResult) -> bool) -> GetTaskResult {
    for _ in 0..200 {
        let task = client.get_task(GetTaskParams::new(id)).await.expect("tasks/get");
        if done(&task) {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} never got there");
}

fn task_id(response: CallToolResponse) -> String {
    match response {
        CallToolResponse::Task(created) => {
            assert!(
                matches!(created.task.status, TaskStatus::Working | TaskStatus::InputRequired),
                "{created:?}"
            );
            created.task.task_id
        }
        other => panic!("expected a task, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_runs_become_tasks_that_are_read_cancelled_and_approved() {
    let tmp = tempfile::tempdir().unwrap();
    let token = create_key(tmp.path(), "default", "ops", true);
    let mut config = test_config(tmp.path());
    config.mcp.task_after_ms = 300;
    let host = Server::start_with(config).await;
    let server = host.with_key(&token);
    server.deploy("sleepy", json!({})).await;
    server.deploy("refund", json!({})).await;
    let client = connect(&server, &token).await;

    // A short run answers at once.
    let quick = client.call_tool_once(call("sleepy", json!({ "ms": 5 }))).await.unwrap();
    let CallToolResponse::Complete(quick) = quick else {
        panic!("{quick:?}")
    };
    assert_eq!(quick.structured_content, Some(json!({ "slept_ms": 5 })));

    // A long one becomes a task, whose id is the execution's.
    let slow = client
        .call_tool_once(call("sleepy", json!({ "ms": 1500 })))
        .await
        .unwrap();
    let id = task_id(slow);
    let (_, record) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(record["trigger"], "mcp", "{record}");
    let done = poll(&client, &id, |t| t.task.status() == TaskStatus::Completed).await;
    let TaskPayload::Completed { result } = &done.task.payload else {
        unreachable!()
    };
    assert_eq!(result["structuredContent"], json!({ "slept_ms": 1500 }), "{result:?}");

    // Cancelling the task cancels the execution.
    let id = task_id(
        client
            .call_tool_once(call("sleepy", json!({ "ms": 30000 })))
            .await
            .unwrap(),
    );
    client.cancel_task(CancelTaskParams::new(&id)).await.unwrap();
    poll(&client, &id, |t| t.task.status() == TaskStatus::Cancelled).await;
    assert_eq!(server.wait_terminal(&id).await["status"], "cancelled");

    // Waiting for an approval is input_required; the answer decides it.
    let id = task_id(
        client
            .call_tool_once(call("refund", json!({ "order_id": "o-7", "amount": 250 })))
            .await
            .unwrap(),
    );
    let waiting = poll(&client, &id, |t| t.task.status() == TaskStatus::InputRequired).await;
    let TaskPayload::InputRequired { input_requests } = &waiting.task.payload else {
        unreachable!()
    };
    assert_eq!(input_requests.len(), 1);
    let (approval_id, request) = input_requests.iter().next().unwrap();
    assert!(approval_id.starts_with("apr_"), "{approval_id}");
    let request = serde_json::to_value(request).unwrap();
    assert_eq!(request["method"], "elicitation/create", "{request}");
    let answer = json!({ "action": "accept", "content": { "approve": true, "comment": "fine" } });
    client
        .update_task(UpdateTaskParams::new(
            &id,
            [(approval_id.clone(), answer)].into_iter().collect(),
        ))
        .await
        .unwrap();
    let done = poll(&client, &id, |t| t.task.status() == TaskStatus::Completed).await;
    let TaskPayload::Completed { result } = &done.task.payload else {
        unreachable!()
    };
    assert_ne!(result.get("isError"), Some(&json!(true)), "{result:?}");
    let (_, approval) = server.get(&format!("/v1/approvals/{approval_id}")).await;
    assert_eq!(approval["status"], "approved", "{approval}");

    // Someone else's task is not found; an approver does not cancel.
    let other = create_key(tmp.path(), "other", "ops", true);
    let stranger = connect(&server, &other).await;
    let id = task_id(
        client
            .call_tool_once(call("sleepy", json!({ "ms": 30000 })))
            .await
            .unwrap(),
    );
    let refusal = |e: rmcp::ServiceError| e.to_string();
    let denied = stranger
        .get_task(GetTaskParams::new(&id))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert!(denied.contains("no task"), "{denied}");
    let denied = stranger
        .cancel_task(CancelTaskParams::new(&id))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert!(denied.contains("no task"), "{denied}");
    let answer = json!({ "action": "accept", "content": { "approve": true } });
    let denied = stranger
        .update_task(UpdateTaskParams::new(
            &id,
            [("apr_x".to_owned(), answer)].into_iter().collect(),
        ))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert!(denied.contains("no task"), "{denied}");
    let reviewer = create_role_key(tmp.path(), "default", "reviewer", "approver");
    let approver = connect(&server, &reviewer).await;
    let denied = approver
        .cancel_task(CancelTaskParams::new(&id))
        .await
        .map_err(refusal)
        .unwrap_err();
    assert!(denied.contains("approver"), "{denied}");
    let (_, record) = server.get(&format!("/v1/executions/{id}")).await;
    assert!(
        !matches!(record["status"].as_str(), Some("cancelled" | "cancel_requested")),
        "{record}"
    );
    client.cancel_task(CancelTaskParams::new(&id)).await.unwrap();
    assert_eq!(server.wait_terminal(&id).await["status"], "cancelled");
    for session in [client, stranger, approver] {
        session.cancel().await.unwrap();
    }
    host.stop().await;
}
