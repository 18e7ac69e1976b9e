//! Agents in JavaScript and TypeScript: built with `warden build` (rolldown,
//! componentize-qjs and the JS SDK), deployed and run like any component.
//! `hello` and `support` in TypeScript answer as their Rust twins do; a hostile JavaScript
//! guest is contained like the Rust ones; `warden new --lang js` then `warden
//! deploy DIR` gives a running agent.

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_tests::{Server, error_code, guest_agent};

async fn deployed(server: &Server, dir: &str, tweak: Value) {
    let (wasm, mut manifest) = guest_agent("js", dir);
    warden_tests::merge(&mut manifest, tweak);
    let (status, body) = server.deploy_bytes(wasm, &manifest).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_in_typescript_answers_as_its_rust_twin() {
    let server = Server::start().await;
    deployed(&server, "hello", json!({})).await;
    // Input that does not fit: `invalid_input` (here the manifest's
    // input_schema says so, before the run).
    let (status, refused) = server
        .post_json("/v1/agents/hello-js/execute", &json!({ "input": { "nome": "typo" } }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(error_code(&refused), "invalid_input");
    assert!(
        refused["error"]["message"].as_str().unwrap().contains("name"),
        "{refused}"
    );
    // An error the agent throws on purpose keeps its code.
    let record = server.run("hello-js", json!({ "name": "x", "times": 11 })).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"]["code"], "too_many", "{record}");
    assert_eq!(record["error"]["source"], "agent");
    // And the happy path, with its log line and step through the SDK.
    let record = server.run("hello-js", json!({ "name": "x", "times": 2 })).await;
    assert_eq!(record["output"]["greeting"], "Hello, x! Hello, x!", "{record}");
    let id = record["id"].as_str().unwrap();
    let (_, steps) = server.get(&format!("/v1/executions/{id}/steps")).await;
    assert_eq!(steps["data"][0]["name"], "greet");
    assert_eq!(steps["data"][0]["detail"], json!({ "name": "x", "times": 2 }));
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert_eq!(logs["data"][0]["message"], "greeting x 2 time(s)");
    assert_eq!(logs["data"][0]["level"], "info");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_in_typescript_answers_as_its_rust_twin() {
    let server = Server::start().await;
    deployed(&server, "support", json!({})).await;
    // The model and tool loop through the SDK's llm and tools, with the same
    // assertions as the Rust `support`'s.
    let record = crate::llm::answers_offline(&server, "support-js").await;
    let id = record["id"].as_str().unwrap();
    let (_, logs) = server.get(&format!("/v1/executions/{id}/logs")).await;
    assert!(logs.to_string().contains("looking up order A-1001"), "{logs}");
    let record = server
        .run("support-js", json!({ "question": "?", "model": "gpt-5" }))
        .await;
    assert_eq!(record["error"]["code"], "model_not_allowed", "{record}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_javascript_guest_is_contained() {
    let server = Server::start().await;
    deployed(
        &server,
        "hostile",
        json!({ "limits": { "memory_mb": 32, "fuel": 500_000_000u64 } }),
    )
    .await;
    server.deploy("echo", json!({})).await;
    let attack = |name: &str| server.run("hostile-js", json!({ "attack": name }));
    // No way out: no process, require, fetch, sockets or files to find.
    let seen = attack("snoop").await;
    assert_eq!(seen["output"], json!({ "globals": [], "fetched": [] }), "{seen}");
    assert_eq!(seen["tool_calls"].as_array().unwrap().len(), 3, "{seen}");
    crate::python::contained(
        &server,
        "hostile-js",
        500_000_000,
        32,
        "TypeError: the agent broke on purpose",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_agent_is_scaffolded_built_and_deployed_from_the_cli() {
    let server = Server::start().await;
    let work = crate::python::scaffolded(&server, "js", &["manifest.json", "agent.ts", "tsconfig.json"]);
    let record = server.run("greeter", json!({ "name": "Ada", "times": 2 })).await;
    assert_eq!(record["output"]["greeting"], "Hello, Ada! Hello, Ada!", "{record}");

    // Its own packages, from package.json (here one beside it), bundled in.
    let agent = work.path().join("greeter");
    std::fs::create_dir_all(agent.join("vendor/shout")).unwrap();
    std::fs::write(
        agent.join("vendor/shout/package.json"),
        r#"{ "name": "shout", "version": "1.0.0", "type": "module", "main": "index.js" }"#,
    )
    .unwrap();
    std::fs::write(
        agent.join("vendor/shout/index.js"),
        "export function shout(text) { return text.toUpperCase(); }\n",
    )
    .unwrap();
    std::fs::write(
        agent.join("package.json"),
        r#"{ "name": "greeter", "private": true, "dependencies": { "shout": "file:./vendor/shout" } }"#,
    )
    .unwrap();
    std::fs::write(
        agent.join("agent.ts"),
        "import { agent } from \"warden\";\nimport { shout } from \"shout\";\n\n\
         export const run = agent((input: { name: string }) => ({ greeting: shout(`Hello, ${input.name}!`) }));\n",
    )
    .unwrap();
    let out = warden_tests::warden_cli(&server.base, Some(work.path()), &["deploy", "greeter"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record = server.run("greeter", json!({ "name": "Ada" })).await;
    assert_eq!(record["output"]["greeting"], "HELLO, ADA!", "{record}");
    server.stop().await;
}
