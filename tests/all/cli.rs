//! The `warden` CLI against a running server: deploy, run, executions list/get.

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
