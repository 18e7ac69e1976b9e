//! Bad input gets a clear, typed error and leaves nothing half-stored.

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::{Server, agent_manifest, agent_wasm, error_code, test_config};

covers!(stranger => broken_components_are_refused_and_not_stored);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors() {
    let server = Server::start().await;
    server.deploy("echo", json!({})).await;

    // Malformed JSON.
    let execute = || server.http.post(server.url("/v1/agents/echo/execute"));
    let (status, body) = server
        .send(
            execute()
                .header("content-type", "application/json")
                .body("{\"input\": "),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "malformed_json");

    // JSON of the wrong shape.
    let (status, body) = server
        .post_json("/v1/agents/echo/execute", &json!({ "mode": "later" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "invalid_request");
    let (status, body) = server
        .post_json("/v1/agents/echo/execute", &json!({ "metadata": [1] }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_request");
    let (status, body) = server
        .post_json("/v1/agents/echo/execute", &json!({ "priority": 101 }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Not JSON at all.
    let (status, body) = server.send(execute().body("hi")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(&body), "unsupported_media_type");

    // Unknown agent, execution, route; wrong method.
    let (status, body) = server.post_json("/v1/agents/nobody/execute", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    for path in [
        "/v1/agents/nobody",
        "/v1/executions/exec_nope",
        "/v1/executions/exec_nope/logs",
        "/v1/executions/exec_nope/steps",
        "/v2/whatever",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(&body), "not_found");
    }
    let (status, body) = server.send(server.http.delete(server.url("/v1/agents"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body), "method_not_allowed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.http.max_body_bytes = 64 << 10;
    config.http.max_component_bytes = 200 << 10;
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;

    let big = "x".repeat(100 << 10);
    let (status, body) = server
        .post_json("/v1/agents/echo/execute", &json!({ "input": big }))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "payload_too_large");

    let mut huge = agent_wasm("echo");
    huge.extend(std::iter::repeat_n(0u8, 2 << 20));
    let (status, body) = server.deploy_bytes(huge, &json!({ "name": "huge" })).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "payload_too_large");
    let (_, agents) = server.get("/v1/agents").await;
    assert_eq!(agents["data"].as_array().unwrap().len(), 1);
    server.stop().await;
}

/// A component that imports these interfaces (each an empty instance) and
/// does nothing else, encoded by hand (its import section under 128 bytes).
fn importing(names: &[&str]) -> Vec<u8> {
    let mut imports = vec![names.len() as u8];
    for name in names {
        imports.extend([0x00, name.len() as u8]);
        imports.extend(name.as_bytes());
        imports.extend([0x05, 0x00]); // an instance of type 0
    }
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend([0x07, 0x03, 0x01, 0x42, 0x00]); // type 0: an instance type with no exports
    bytes.extend([0x0a, imports.len() as u8]);
    bytes.extend(imports);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_components_are_refused_and_not_stored() {
    let server = Server::start().await;
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("text", b"this is not wasm".to_vec(), "not_wasm", "not WebAssembly"),
        (
            "core-module",
            b"\0asm\x01\0\0\0".to_vec(),
            "not_a_component",
            "core WebAssembly module",
        ),
        (
            "garbage-component",
            b"\0asm\x0d\0\x01\0\xff\xff\xff".to_vec(),
            "invalid_component",
            "not valid",
        ),
        // A real WASI component that is not an agent: it exports wasi:cli/run, not `run`.
        ("stranger", agent_wasm("stranger"), "wrong_world", "run"),
        // One that needs what the host does not provide: refused before
        // compiling, each missing import named.
        (
            "needs-keyvalue",
            importing(&[
                "wasi:keyvalue/store@0.2.0-draft",
                "wasi:http/outgoing-handler@0.2.0",
                "wasi:http/incoming-handler@0.2.0",
            ]),
            "wrong_world",
            "does not provide: wasi:keyvalue/store@0.2.0-draft, wasi:http/incoming-handler@0.2.0 (",
        ),
    ];
    for (name, bytes, code, says) in cases {
        let (status, body) = server.deploy_bytes(bytes, &json!({ "name": name })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(error_code(&body), code, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
    }

    // Manifests are checked and the failing field named.
    let (status, body) = server
        .deploy_bytes(agent_wasm("echo"), &json!({ "name": "Bad Name!" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "invalid_manifest");
    assert!(body["error"]["message"].as_str().unwrap().contains("manifest.name"));
    let mut manifest = agent_manifest("echo");
    manifest["limits"]["timeout_ms"] = json!(0);
    let (status, body) = server.deploy_bytes(agent_wasm("echo"), &manifest).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manifest.limits.timeout_ms"),
        "{body}"
    );
    let (status, body) = server
        .deploy_bytes(agent_wasm("echo"), &json!({ "name": "x", "colour": "red" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["message"].as_str().unwrap().contains("colour"), "{body}");

    // Missing parts.
    let form = reqwest::multipart::Form::new().text("manifest", "{\"name\":\"x\"}");
    let (status, body) = server
        .send(server.http.post(server.url("/v1/agents")).multipart(form))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_multipart");

    // None of them became an agent, and nothing was compiled into the cache.
    let (_, agents) = server.get("/v1/agents").await;
    assert_eq!(agents["data"], json!([]));
    let (_, health) = server.get("/admin/health").await;
    assert_eq!(health["components"]["compiled"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_schema_is_enforced_before_queueing() {
    let server = Server::start().await;
    let schema = json!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "additionalProperties": false
    });
    server.deploy("echo", json!({"input_schema": schema})).await;

    let execute = |input: serde_json::Value| {
        let server = &server;
        async move {
            server
                .post_json("/v1/agents/echo/execute", &json!({"input": input}))
                .await
        }
    };
    let (status, body) = execute(json!({"name": 5, "tags": ["a", 7], "extra": true})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        "{body}"
    );
    let mut paths: Vec<&str> = body["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["", "/name", "/tags/1"], "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("/name") && message.contains("/tags/1"), "{message}");

    let (status, body) = execute(json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["message"].as_str().unwrap().contains("name"), "{body}");
    let (status, _) = execute(json!("just a string")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was queued or stored for refused inputs.
    let (_, list) = server.get("/v1/executions").await;
    assert_eq!(list["data"], json!([]));

    let ok = server.run("echo", json!({"name": "Ada", "tags": ["x"]})).await;
    assert_eq!(ok["status"], "completed");

    // Broken schemas are refused at deploy, naming the field; nothing is fetched.
    for bad in [
        json!({"type": "nope"}),
        json!(["not", "a", "schema"]),
        json!({"$ref": "http://169.254.169.254/latest/schema.json"}),
        json!({"$ref": "file:///etc/passwd"}),
    ] {
        let mut manifest = agent_manifest("echo");
        manifest["name"] = json!("echo-bad-schema");
        manifest["input_schema"] = bad.clone();
        let (status, body) = server.deploy_bytes(agent_wasm("echo"), &manifest).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest"),
            "{bad}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("manifest.input_schema"),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_over_the_limit_get_413() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.http.max_input_bytes = 1000;
    let server = Server::start_with(config).await;
    server.deploy("echo", json!({})).await;
    let (status, body) = server
        .post_json("/v1/agents/echo/execute", &json!({"input": {"name": "x".repeat(2000)}}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("1000"));
    assert_eq!(
        server.run("echo", json!({"name": "small"})).await["status"],
        "completed"
    );
}
