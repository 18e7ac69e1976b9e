//! Agents in Python: built with `warden build` (componentize-py and the Python
//! SDK), deployed and run like any component. `support` in Python answers as
//! its Rust twin does; a hostile Python guest is contained like the Rust ones;
//! `warden new --lang python` then `warden deploy DIR` gives a running agent.

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, error_code, guest_agent};

async fn deployed(server: &Server, dir: &str, tweak: Value) {
    let (wasm, mut manifest) = guest_agent("python", dir);
    warden_tests::merge(&mut manifest, tweak);
    let (status, body) = server.deploy_bytes(wasm, &manifest).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_in_python_answers_as_its_rust_twin() {
    let server = Server::start().await;
    deployed(&server, "support", json!({})).await;
    // The same assertions as the Rust `support`'s.
    let record = crate::llm::answers_offline(&server, "support-py").await;
    let id = record["id"].as_str().unwrap();
    let (_, steps) = server.get(&format!("/v1/executions/{id}/steps")).await;
    let steps = steps["data"].as_array().unwrap();
    // The agent's own step and log line, through the SDK.
    let lookup = steps.iter().find(|s| s["name"] == "lookup_order").expect("its step");
    assert_eq!(lookup["detail"], json!({ "order_id": "A-1001", "found": true }));
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert!(logs.to_string().contains("looking up order A-1001"), "{logs}");

    // Input that does not fit the dataclass: `invalid_input`, as in Rust.
    for (bad, says) in [
        (json!({ "question": 7 }), "question: expected a string, got an integer"),
        (json!({ "orders": {} }), "missing field 'question'"),
        (json!([1]), "expected an object, got an array"),
    ] {
        let record = server.run("support-py", bad).await;
        assert_eq!(record["status"], "failed");
        assert_eq!(record["error"]["code"], "invalid_input", "{record}");
        assert_eq!(record["error"]["source"], "agent");
        let message = record["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // Fields it does not name are ignored, as serde does.
    let record = server
        .run("support-py", json!({ "question": "Where is A-1001?", "colour": "red" }))
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    // A model outside the manifest is the SDK's `model_not_allowed`.
    let record = server
        .run("support-py", json!({ "question": "?", "model": "gpt-5" }))
        .await;
    assert_eq!(record["error"]["code"], "model_not_allowed", "{record}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_deploy_compiles_in_the_background_while_runs_go_on() {
    let server = Server::start().await;
    server.deploy("echo", json!({})).await;
    let (wasm, manifest) = guest_agent("python", "hello");
    let form = reqwest::multipart::Form::new()
        .part("component", reqwest::multipart::Part::bytes(wasm).file_name("c.wasm"))
        .text("manifest", manifest.to_string());
    let resp = server
        .http
        .post(server.url("/v1/agents?wait=false"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/v1/deploys/{}", job["id"].as_str().unwrap()));
    assert_eq!(job["status"], "compiling", "{job}");
    assert_eq!(job["agent_name"], "hello-py");
    // Other work goes on meanwhile.
    let echo = server.run("echo", json!({ "name": "meanwhile" })).await;
    assert_eq!(echo["status"], "completed");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let done = loop {
        let (status, job) = server.get(&location).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["status"] != "compiling" {
            break job;
        }
        assert!(job["elapsed_ms"].as_i64().unwrap() >= 0);
        assert!(tokio::time::Instant::now() < deadline, "still compiling: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "deployed", "{done}");
    assert_eq!(done["deployed"]["version"]["version"], 1, "{done}");
    assert!(done["ended_at"].is_string(), "{done}");
    let record = server.run("hello-py", json!({ "name": "Ada" })).await;
    assert_eq!(record["output"]["greeting"], "Hello, Ada!", "{record}");

    // One that fails once compiled: the job says why, as a waiting deploy would.
    let form = reqwest::multipart::Form::new()
        .part(
            "component",
            reqwest::multipart::Part::bytes(warden_tests::agent_wasm("stranger")).file_name("c.wasm"),
        )
        .text("manifest", json!({ "name": "stranger" }).to_string());
    let (status, job) = server
        .send(server.http.post(server.url("/v1/agents?wait=false")).multipart(form))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap();
    let failed = loop {
        let (_, job) = server.get(&format!("/v1/deploys/{id}")).await;
        if job["status"] != "compiling" {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "wrong_world", "{failed}");
    // What fails the checks is refused at once, with no job.
    let form = reqwest::multipart::Form::new()
        .part(
            "component",
            reqwest::multipart::Part::bytes(b"not wasm".to_vec()).file_name("c.wasm"),
        )
        .text("manifest", json!({ "name": "junk" }).to_string());
    let (status, body) = server
        .send(server.http.post(server.url("/v1/agents?wait=false")).multipart(form))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "not_wasm");
    let (status, _) = server.get("/v1/deploys/dep_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_python_guest_is_contained() {
    let server = Server::start().await;
    deployed(
        &server,
        "hostile",
        json!({ "limits": { "memory_mb": 48, "fuel": 2_000_000_000u64 } }),
    )
    .await;
    deployed(&server, "hello", json!({})).await;
    server.deploy("echo", json!({})).await;
    // `hello` in Python answers as its Rust twin (tests/all/execute.rs).
    let record = server.run("hello-py", json!({ "nome": "typo" })).await;
    assert_eq!(record["error"]["code"], "invalid_input", "{record}");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("name"),
        "{record}"
    );
    let record = server.run("hello-py", json!({ "name": "x", "times": 11 })).await;
    assert_eq!(record["error"]["code"], "too_many");
    let record = server.run("hello-py", json!({ "name": "x", "times": 2 })).await;
    assert_eq!(record["output"]["greeting"], "Hello, x! Hello, x!");
    let attack = |name: &str| server.run("hostile-py", json!({ "attack": name }));

    // No environment, files or network.
    let seen = attack("snoop").await;
    assert_eq!(seen["status"], "completed", "{seen}");
    let seen = &seen["output"];
    assert_eq!(seen["env"], json!([]), "the host's environment leaked: {seen}");
    assert_eq!(seen["opened"], json!([]), "files were reachable: {seen}");
    assert_eq!(seen["created"], false);
    assert_eq!(seen["socket"], false, "a socket was opened: {seen}");
    assert_eq!(seen["fetched"], json!([]), "a request went out: {seen}");
    let raised = contained(
        &server,
        "hostile-py",
        2_000_000_000,
        48,
        "ValueError: the agent broke on purpose",
    )
    .await;
    // Its traceback is on the run's stderr.
    let id = raised["id"].as_str().unwrap();
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert!(logs.to_string().contains("Traceback"), "{logs}");
    server.stop().await;
}

/// A hostile guest `agent` (Python or JavaScript) deployed with `fuel` and
/// `memory_mb`: an endless loop runs out of fuel, an allocation bomb stops at
/// the memory limit, an exception is `agent_exception` with its type and
/// message, an unknown attack `invalid_input`; echo keeps answering. Returns
/// the exception's record.
pub(crate) async fn contained(server: &Server, agent: &str, fuel: u64, memory_mb: u64, raised: &str) -> Value {
    let attack = |name: &str| server.run(agent, json!({ "attack": name }));
    let spun = attack("loop").await;
    assert_eq!(spun["status"], "failed");
    assert_eq!(spun["error"]["code"], "fuel_exhausted", "{spun}");
    assert_eq!(spun["fuel_used"], fuel);
    let hog = attack("allocate").await;
    assert_eq!(hog["status"], "failed");
    assert_eq!(hog["error"]["code"], "memory_limit", "{hog}");
    let peak = hog["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak <= memory_mb << 20 && peak > (memory_mb / 2) << 20, "peak {peak}");
    let record = attack("raise").await;
    assert_eq!(record["error"]["code"], "agent_exception", "{record}");
    assert_eq!(record["error"]["message"], raised);
    let unknown = attack("nothing").await;
    assert_eq!(unknown["error"]["code"], "invalid_input", "{unknown}");
    let echo = server.run("echo", json!({ "name": "after" })).await;
    assert_eq!(echo["output"]["greeting"], "Hello, after!");
    record
}

/// `warden new NAME --lang LANG` then `warden deploy NAME` makes an agent that
/// greets; returns the directory it was made in.
pub(crate) fn scaffolded(server: &Server, lang: &str, files: &[&str]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let warden = |args: &[&str]| warden_tests::warden_ok(&server.base, Some(work.path()), args);
    warden(&["new", "greeter", "--lang", lang]);
    for file in files {
        assert!(work.path().join("greeter").join(file).is_file(), "{file}");
    }
    let deployed: Value = serde_json::from_str(&warden(&["--json", "deploy", "greeter"])).unwrap();
    assert_eq!(deployed["agent"]["name"], "greeter", "{deployed}");
    assert!(work.path().join("greeter/build/greeter.wasm").is_file());
    work
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_agent_is_scaffolded_built_and_deployed_from_the_cli() {
    let server = Server::start().await;
    let work = scaffolded(&server, "python", &["manifest.json", "agent.py", ".gitignore"]);
    assert!(
        !work.path().join("greeter/__pycache__").exists(),
        "the build leaves no bytecode behind"
    );
    let record = server.run("greeter", json!({ "name": "Ada", "times": 2 })).await;
    assert_eq!(record["output"]["greeting"], "Hello, Ada! Hello, Ada!", "{record}");
    let record = server.run("greeter", json!({ "name": "Ada", "times": 11 })).await;
    assert_eq!(error_code(&record), "too_many", "{record}");

    // Its own packages, from requirements.txt (here a wheel beside it).
    let agent = work.path().join("greeter");
    wheel(&agent, "shout-1.0-py3-none-any.whl", "py3-none-any");
    std::fs::write(agent.join("requirements.txt"), "./shout-1.0-py3-none-any.whl\n").unwrap();
    std::fs::write(
        agent.join("agent.py"),
        "from dataclasses import dataclass\n\nimport shout\nimport warden\n\n\n@dataclass\nclass Input:\n    name: str\n\n\n\
         @warden.agent\ndef run(input: Input) -> dict:\n    return {\"greeting\": shout.shout(f\"Hello, {input.name}!\")}\n",
    )
    .unwrap();
    let warden = |args: &[&str]| warden_tests::warden_cli(&server.base, Some(work.path()), args);
    let out = warden(&["deploy", "greeter"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record = server.run("greeter", json!({ "name": "Ada" })).await;
    assert_eq!(record["output"]["greeting"], "HELLO, ADA!", "{record}");
    // A native extension cannot load in the component: the build says so.
    let native = "fast-1.0-cp314-cp314-manylinux_2_17_x86_64.whl";
    wheel(&agent, native, "cp314-cp314-manylinux_2_17_x86_64");
    std::fs::write(agent.join("requirements.txt"), format!("./{native}\n")).unwrap();
    let out = warden(&["build", "greeter"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("pure-Python wheels only"), "{said}");

    // A directory with no agent in it is refused, saying what it looked for.
    std::fs::create_dir(work.path().join("empty")).unwrap();
    std::fs::write(work.path().join("empty/manifest.json"), r#"{"name": "empty"}"#).unwrap();
    let out = warden_tests::warden_cli(&server.base, Some(work.path()), &["build", "empty"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent.py (Python)"));
    server.stop().await;
}

/// Writes a one-module wheel (module `shout`: `shout(text)` upper-cases) named
/// `file`, tagged `tag`, into `dir`.
fn wheel(dir: &std::path::Path, file: &str, tag: &str) {
    let script = r#"
import sys, zipfile
path, tag = sys.argv[1], sys.argv[2]
name, version = path.rsplit("/", 1)[-1].split("-")[:2]
info = f"{name}-{version}.dist-info"
files = {
    "shout.py": "def shout(text):\n    return text.upper()\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {str(tag.startswith('py3')).lower()}\nTag: {tag}\n",
}
files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{info}/RECORD"])
with zipfile.ZipFile(path, "w") as z:
    for f, text in files.items():
        z.writestr(f, text)
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join(file))
        .arg(tag)
        .status()
        .unwrap();
    assert!(status.success(), "making {file}");
}
