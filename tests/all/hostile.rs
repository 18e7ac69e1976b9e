//! Hostile guests beyond spin, hog and crash: no ambient environment, files or
//! network, and a stack overflow is a trap; the host keeps serving.

use serde_json::json;
use warden_tests::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sees_no_environment_files_or_network() {
    let server = Server::start().await;
    server.deploy("snoop", json!({})).await;
    let record = server.run("snoop", json!({})).await;
    assert_eq!(record["status"], "completed", "{record}");
    let seen = &record["output"];
    assert_eq!(seen["env"], json!([]), "the host's environment leaked: {seen}");
    assert_eq!(seen["args"], json!([]));
    assert_eq!(seen["opened"], json!([]), "files were reachable: {seen}");
    assert_eq!(seen["created"], false);
    assert_eq!(seen["socket"], false, "a socket was opened: {seen}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_is_a_trap_and_the_host_keeps_serving() {
    let server = Server::start().await;
    server.deploy("deep", json!({})).await;
    server.deploy("echo", json!({})).await;
    let record = server.run("deep", json!({})).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "trap", "{record}");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("stack"),
        "{record}"
    );
    let echo = server.run("echo", json!({ "name": "after" })).await;
    assert_eq!(echo["output"]["greeting"], "Hello, after!");
    server.stop().await;
}
