//! The `warden` CLI against a running server: deploy, run, executions list/get,
//! approvals list and decide.

use std::process::Command;

use serde_json::Value;
use warden_tests::{Server, warden_bin};

fn warden(base: &str, args: &[&str]) -> Value {
    serde_json::from_str(&warden_tests::warden_ok(base, None, args)).expect("warden prints JSON")
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

/// Runs `warden` and returns its exit success, stdout and stderr.
fn warden_text(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = warden_tests::warden_cli(base, None, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prints_tables_for_people_and_follows_runs_live() {
    let server = Server::start().await;
    server.deploy("support", serde_json::json!({})).await;
    server.deploy("ticker", serde_json::json!({})).await;
    server.deploy("echo", serde_json::json!({})).await;
    let base = server.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("question.json");
    std::fs::write(
        &input,
        r#"{"question": "Where is order A-1001?", "orders": {"A-1001": {"status": "shipped"}}}"#,
    )
    .unwrap();
    let input_arg = format!("@{}", input.display());
    let ticker = server
        .post_json(
            "/v1/agents/ticker/execute",
            &serde_json::json!({"input": {"n": 8, "ms": 150}, "mode": "async"}),
        )
        .await
        .1;
    let ticker = ticker["id"].as_str().unwrap().to_owned();
    let (live, returned, failed, followed, table, json, completions) = tokio::task::spawn_blocking(move || {
        // Followed live (--stream: the output here is a pipe): the answer on
        // stdout as it streams, tool calls and the end on stderr.
        let live = warden_text(&base, &["run", "support", "--stream", "--input", &input_arg]);
        // An agent that streams nothing: its output, whole, at the end.
        let returned = warden_text(&base, &["run", "echo", "--stream", "--input", r#"{"name":"Live"}"#]);
        // Piped, a run that fails prints its record and fails the command.
        let failed = warden_text(&base, &["run", "support", "--input", r#""not a question""#]);
        let followed = warden_text(&base, &["executions", "logs", "--follow", &ticker]);
        let table = warden_text(&base, &["--output", "table", "executions", "list"]);
        let json = warden_text(&base, &["--json", "executions", "list"]);
        let completions = warden_text(&base, &["completions", "bash"]);
        (live, returned, failed, followed, table, json, completions)
    })
    .await
    .unwrap();

    let (ok, out, err) = live;
    assert!(ok, "{err}");
    assert!(out.contains("(scripted) Here is what I found"), "{out}");
    assert!(err.contains("→ kv") && err.contains("← kv ok"), "{err}");
    assert!(err.contains("completed in"), "{err}");

    let (ok, out, err) = returned;
    assert!(ok, "{err}");
    assert!(out.contains(r#""greeting": "Hello, Live!""#), "{out}");
    let (ok, out, _) = failed;
    assert!(!ok, "a failed run fails the command");
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["status"], "failed");

    let (ok, out, err) = followed;
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.contains("info  tick")).count(), 8, "{out}");
    assert!(err.contains("done completed"), "{err}");

    let (ok, out, err) = table;
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    for column in ["ID", "AGENT", "STATUS", "TRIGGER", "DURATION", "COST"] {
        assert!(header.contains(column), "{out}");
    }
    assert!(
        out.lines().any(|l| l.contains("support") && l.contains("completed")),
        "{out}"
    );
    assert!(serde_json::from_str::<Value>(&out).is_err(), "a table, not JSON");

    let (ok, out, _) = json;
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        4,
        "ticker, support twice, echo"
    );

    let (ok, out, _) = completions;
    assert!(ok && out.contains("_warden()") && out.contains("complete"), "{out}");
    server.stop().await;
}

/// `warden run sleepy --stream` for a minute, interrupted with SIGINT once it
/// started, then given `answer` on its input (`None`: it has none); its
/// execution id, exit status and what it wrote on stderr.
fn interrupt_a_live_run(base: &str, answer: Option<&[u8]>) -> (String, std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Write};
    let stdin = match answer {
        Some(_) => std::process::Stdio::piped(),
        None => std::process::Stdio::null(),
    };
    let mut child = Command::new(warden_bin())
        .args([
            "--server",
            base,
            "run",
            "sleepy",
            "--stream",
            "--input",
            r#"{"ms": 60000}"#,
        ])
        .stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("warden run starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let id = first.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("exec_"), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    if let Some(answer) = answer {
        std::thread::sleep(std::time::Duration::from_millis(300));
        child.stdin.take().unwrap().write_all(answer).unwrap();
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    (id, child.wait().unwrap(), rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_a_live_run_offers_to_cancel_it() {
    let server = Server::start().await;
    server.deploy("sleepy", serde_json::json!({})).await;
    let base = server.base.clone();
    let (id, status, err) = tokio::task::spawn_blocking(move || interrupt_a_live_run(&base, Some(b"y\n")))
        .await
        .unwrap();
    assert!(err.contains(&format!("Cancel {id}? [y/N]")), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    assert!(!status.success(), "a cancelled run is not a success");
    let (_, record) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(record["status"], "cancelled");

    // With nobody to answer (no input left), Ctrl-C leaves the run going and
    // says how to stop it, with the status of an interrupted command.
    let base = server.base.clone();
    let (id, status, err) = tokio::task::spawn_blocking(move || interrupt_a_live_run(&base, None))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains(&format!("warden executions cancel {id}")), "{err}");
    let (_, record) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(record["status"], "running");
    server
        .post_json(&format!("/v1/executions/{id}/cancel"), &serde_json::json!(null))
        .await;
    server.stop().await;
}

#[test]
fn a_rust_agent_is_scaffolded_with_its_sdk_beside_it() {
    let work = tempfile::tempdir().unwrap();
    let out = warden_tests::warden_cli(
        "http://127.0.0.1:9",
        Some(work.path()),
        &["new", "greeter", "--lang", "rust"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let agent = work.path().join("greeter");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "manifest.json",
        "warden-sdk/rust/Cargo.toml",
        "warden-sdk/rust/src/lib.rs",
        "warden-sdk/wit/agent.wit",
    ] {
        assert!(agent.join(file).is_file(), "{file}");
    }
    // The crate names its SDK by a path inside it (it builds wherever it is
    // checked out), and cargo resolves it.
    let cargo = std::fs::read_to_string(agent.join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains(r#"warden-sdk = { path = "warden-sdk/rust" }"#),
        "{cargo}"
    );
    let metadata = std::process::Command::new("cargo")
        .args(["metadata", "--offline", "--format-version", "1", "--manifest-path"])
        .arg(agent.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        metadata.status.success(),
        "{}",
        String::from_utf8_lossy(&metadata.stderr)
    );
    let packages: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
    assert!(
        packages["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "warden-sdk"),
        "the SDK is not among the crate's packages"
    );
}
