//! The `warden` CLI against a running server: deploy, run, executions list/get,
//! approvals list and decide.

use std::process::Command;

use serde_json::Value;
use warden_tests::{Server, warden_bin};

fn warden(base: &str, args: &[&str]) -> Value {
    let out = Command::new(warden_bin())
        .arg("--server")
        .arg(base)
        .args(args)
        .output()
        .expect("warden runs");
    assert!(
        out.status.success(),
        "warden {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("warden prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploys_runs_and_inspects() {
    let server = Server::start().await;
    let wasm = warden_host::bundled::agent_path("echo").unwrap().to_owned();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../agents/echo/manifest.json");
    let (deployed, record, list, got, failure) = tokio::task::spawn_blocking({
        let base = server.base.clone();
        move || {
            let deployed = warden(&base, &["deploy", &wasm, "--name", "cli-echo", "--manifest", manifest]);
            let record = warden(&base, &["run", "cli-echo", "--input", r#"{"name":"Cli"}"#]);
            let list = warden(&base, &["executions", "list", "--agent", "cli-echo"]);
            let id = record["id"].as_str().unwrap().to_owned();
            let got = warden(&base, &["executions", "get", &id]);
            let failure = Command::new(warden_bin())
                .args(["--server", &base, "run", "nobody", "--input", "{}"])
                .output()
                .unwrap();
            (deployed, record, list, got, failure)
        }
    })
    .await
    .unwrap();
    assert_eq!(deployed["agent"]["name"], "cli-echo");
    assert_eq!(record["output"]["greeting"], "Hello, Cli!");
    assert_eq!(list["data"][0]["id"], record["id"]);
    assert_eq!(got["status"], "completed");
    assert!(!failure.status.success());
    assert!(String::from_utf8_lossy(&failure.stderr).contains("not_found"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_decides_approval_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = warden_tests::test_config(tmp.path());
    config.durability.approval_grace_ms = 100;
    let server = Server::start_with(config).await;
    server.deploy("refund", serde_json::json!({})).await;
    let (listed, decided, rejected) = tokio::task::spawn_blocking({
        let base = server.base.clone();
        move || {
            let first = warden(
                &base,
                &["run", "refund", "--input", r#"{"order_id":"C-1","amount":500}"#],
            );
            let second = warden(
                &base,
                &["run", "refund", "--input", r#"{"order_id":"C-2","amount":900}"#],
            );
            assert_eq!(first["status"], "awaiting_approval", "{first}");
            let listed = warden(&base, &["approvals", "list", "--status", "pending"]);
            let request = listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["execution_id"] == first["id"])
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let decided = warden(
                &base,
                &[
                    "approvals",
                    "approve",
                    &request,
                    "--comment",
                    "ok",
                    "--data",
                    r#"{"note":"cli"}"#,
                ],
            );
            let execution = second["id"].as_str().unwrap();
            let rejected = warden(&base, &["approvals", "reject", execution, "--reason", "too much"]);
            (listed, decided, rejected)
        }
    })
    .await
    .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(
        (decided["status"].as_str(), decided["comment"].as_str()),
        (Some("approved"), Some("ok"))
    );
    assert_eq!(decided["data"], serde_json::json!({ "note": "cli" }));
    assert_eq!(
        (rejected["status"].as_str(), rejected["comment"].as_str()),
        (Some("rejected"), Some("too much"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_chats_turn_by_turn_and_manages_conversations() {
    let server = Server::start().await;
    server.deploy("chat", serde_json::json!({})).await;
    let base = server.base.clone();
    let (out, err, listed, got, deleted, gone) = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(warden_bin())
            .args(["--server", &base, "chat", "chat"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("warden chat starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello\n\nmy name is Ada\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed = warden(&base, &["conversations", "list", "--agent", "chat"]);
        let id = listed["data"][0]["id"].as_str().unwrap().to_owned();
        let got = warden(&base, &["conversations", "get", &id]);
        let deleted = warden(&base, &["conversations", "delete", &id]);
        let gone = Command::new(warden_bin())
            .args(["--server", &base, "conversations", "get", &id])
            .output()
            .unwrap();
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
            listed,
            got,
            deleted,
            gone,
        )
    })
    .await
    .unwrap();
    // One answer a line, streamed as the model said it; the empty line skipped.
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(
        answers,
        ["(scripted) You said: hello", "(scripted) You said: my name is Ada"],
        "{out}"
    );
    let id = listed["data"][0]["id"].as_str().unwrap();
    assert!(
        err.contains(id),
        "the conversation is named so it can be continued: {err}"
    );
    assert_eq!(got["turn_count"], 4, "{got}");
    assert_eq!(got["turns"][2]["content"], "my name is Ada");
    assert_eq!(deleted["deleted"], id);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not_found"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_schedules() {
    let server = Server::start().await;
    server.deploy("echo", serde_json::json!({})).await;
    let base = server.base.clone();
    let (made, listed, paused, resumed, triggered, got, deleted) = tokio::task::spawn_blocking(move || {
        let made = warden(
            &base,
            &[
                "schedules",
                "create",
                "echo",
                "--cron",
                "0 9 * * MON",
                "--timezone",
                "Europe/Paris",
                "--input",
                r#"{"n":1}"#,
                "--overlap",
                "buffer_one",
            ],
        );
        let id = made["id"].as_str().unwrap().to_owned();
        let listed = warden(&base, &["schedules", "list", "--agent", "echo"]);
        let paused = warden(&base, &["schedules", "pause", &id]);
        let resumed = warden(&base, &["schedules", "resume", &id]);
        let triggered = warden(&base, &["schedules", "trigger", &id]);
        let got = warden(&base, &["schedules", "get", &id]);
        let deleted = warden(&base, &["schedules", "delete", &id]);
        (made, listed, paused, resumed, triggered, got, deleted)
    })
    .await
    .unwrap();
    assert_eq!(made["timezone"], "Europe/Paris");
    assert_eq!(made["overlap"], "buffer_one");
    assert_eq!(made["input"], serde_json::json!({ "n": 1 }));
    assert!(made["description"].as_str().unwrap().contains("Monday"), "{made}");
    assert_eq!(listed["data"][0]["id"], made["id"]);
    assert_eq!(
        (paused["enabled"].as_bool(), resumed["enabled"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(triggered["trigger"], "schedule");
    assert_eq!(got["runs"], 1, "{got}");
    assert_eq!(deleted["deleted"], made["id"]);
    server.stop().await;
}
