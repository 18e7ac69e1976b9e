//! API keys and workspaces: keys made with `warden keys` and `/admin/keys`, every
//! resource scoped to its workspace (another tenant gets 404), revocation, rate
//! limits, and the refusal to serve openly on a non-loopback address.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_host::app::App;
use warden_tests::{Server, create_key, error_code, test_config};

/// Waits until the open host has noticed the first key (it looks every `key_cache_ms`).
async fn until_closed(server: &Server) {
    for _ in 0..200 {
        if server.get("/v1/agents").await.0 == StatusCode::UNAUTHORIZED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the host kept serving without a key after one was created");
}

fn keyed_config(dir: &std::path::Path) -> warden_host::config::Config {
    let mut config = test_config(dir);
    config.auth.key_cache_ms = 50;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_never_see_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(keyed_config(tmp.path())).await;
    // Open while no key exists; the first key, made beside the running host, closes it.
    assert_eq!(server.get("/v1/agents").await.0, StatusCode::OK);
    let acme = server.with_key(&create_key(tmp.path(), "acme", "acme-ops", true));
    let globex = server.with_key(&create_key(tmp.path(), "globex", "globex-ops", true));
    until_closed(&server).await;

    let (status, body) = server.get("/v1/agents").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let resp = server.http.get(server.url("/v1/agents")).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    for bad in ["Bearer nope", "Basic abc", "Bearer wdn_01aaaaaaaaaaaaaaaaaaaaaaaa_00"] {
        let (status, body) = server
            .send(server.http.get(server.url("/v1/agents")).header("authorization", bad))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{bad}"
        );
    }
    // Health stays open (probes carry no key).
    assert_eq!(server.get("/admin/health").await.0, StatusCode::OK);

    // acme deploys and runs; globex has an agent of the same name of its own.
    acme.deploy("echo", json!({})).await;
    acme.deploy("toolbox", json!({"tools": ["agent_call"]})).await;
    let mine = acme.run("echo", json!({"name": "acme"})).await;
    let id = mine["id"].as_str().unwrap();
    assert_eq!(mine["output"]["greeting"], "Hello, acme!");
    let (status, _) = globex
        .deploy_bytes(warden_tests::agent_wasm("echo"), &json!({"name": "echo"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let theirs = globex.run("echo", json!({"name": "globex"})).await;
    assert_ne!(theirs["agent_id"], mine["agent_id"]);

    // Everything of acme's is "not found" to globex, shaped like any missing thing.
    let (_, list) = globex.get("/v1/agents").await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo"]);
    let acme_agent = mine["agent_id"].as_str().unwrap();
    for path in [
        format!("/v1/agents/{acme_agent}"),
        "/v1/agents/toolbox".to_owned(),
        format!("/v1/executions/{id}"),
        format!("/v1/executions/{id}/logs"),
        format!("/v1/executions/{id}/steps"),
        format!("/v1/executions/{id}/events"),
        format!("/v1/executions/{id}/stream"),
        format!("/v1/executions/{id}/artifacts"),
        format!("/v1/executions/{id}/artifacts/art_x"),
    ] {
        let (status, body) = globex.get(&path).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
        assert!(!body.to_string().contains("acme"), "{path} leaks: {body}");
    }
    for action in ["cancel", "retry"] {
        let (status, _) = globex
            .post_json(&format!("/v1/executions/{id}/{action}"), &json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    let (status, _) = globex
        .post_json(&format!("/v1/agents/{acme_agent}/execute"), &json!({"input": {}}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = globex.get(&format!("/v1/executions?agent_id={acme_agent}")).await;
    assert_eq!(listed["data"], json!([]));
    let (_, listed) = globex.get("/v1/executions").await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [theirs["id"].as_str().unwrap()]);
    // acme still sees its own.
    assert_eq!(acme.get(&format!("/v1/executions/{id}/logs")).await.0, StatusCode::OK);

    // An agent_call names agents of the caller's own workspace only: globex's
    // `echo` is not acme's, and globex cannot reach acme's `toolbox` at all.
    let call = acme
        .run(
            "toolbox",
            json!({"tool": "agent_call", "args": {"agent": "echo", "input": {"name": "child"}}}),
        )
        .await;
    assert_eq!(call["status"], "completed", "{call}");
    let child = call["output"]["result"]["execution_id"].as_str().unwrap();
    assert_eq!(acme.get(&format!("/v1/executions/{child}")).await.0, StatusCode::OK);
    assert_eq!(
        globex.get(&format!("/v1/executions/{child}")).await.0,
        StatusCode::NOT_FOUND
    );

    // The same Idempotency-Key in two workspaces is two keys.
    let send = |s: &Server| {
        s.http
            .post(s.url("/v1/agents/echo/execute"))
            .header("idempotency-key", "same-key")
            .json(&json!({"input": {"name": "idem"}}))
    };
    let (a, b) = (acme.send(send(&acme)).await.1, globex.send(send(&globex)).await.1);
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["status"], "completed");
    assert_eq!(b["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_their_workspace_keys_and_revocation_is_immediate() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(keyed_config(tmp.path())).await;
    let admin = server.with_key(&create_key(tmp.path(), "acme", "ops", true));
    let other = server.with_key(&create_key(tmp.path(), "globex", "ops", true));
    until_closed(&server).await;

    let (status, made) = admin.post_json("/admin/keys", &json!({"name": "ci"})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["key"]["workspace"], "acme");
    assert_eq!(made["key"]["role"], "member");
    let token = made["token"].as_str().unwrap();
    assert!(token.starts_with("wdn_"));
    let member_id = made["key"]["id"].as_str().unwrap();
    let member = server.with_key(token);
    assert_eq!(member.get("/v1/agents").await.0, StatusCode::OK);

    // Listing shows no secrets. (The test must not open the database file
    // itself: closing it would drop the server's POSIX locks on it.)
    let (_, list) = admin.get("/admin/keys").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&token[30..]));

    // Members cannot manage keys; admins only their own workspace's.
    let (status, body) = member.get("/admin/keys").await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, _) = member
        .post_json("/admin/keys", &json!({"name": "escalate", "role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .post_json("/admin/keys", &json!({"name": "x", "workspace": "globex"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = other
        .send(other.http.delete(other.url(&format!("/admin/keys/{member_id}"))))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) = other.get("/admin/keys").await;
    assert!(!theirs.to_string().contains(member_id));
    let (status, body) = admin.post_json("/admin/keys", &json!({"name": ""})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );

    // Revoked through the API: refused on the very next request.
    let (status, revoked) = admin
        .send(admin.http.delete(admin.url(&format!("/admin/keys/{member_id}"))))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let (status, body) = member.get("/v1/agents").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"));

    // Revoked with `warden keys revoke` beside the running host: refused within
    // the key cache time.
    let out = std::process::Command::new(warden_tests::warden_bin())
        .arg("keys")
        .arg("--data-dir")
        .arg(tmp.path())
        .arg("list")
        .output()
        .unwrap();
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let globex_id = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["workspace"] == "globex")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = std::process::Command::new(warden_tests::warden_bin())
        .arg("keys")
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["revoke", &globex_id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut refused = false;
    for _ in 0..200 {
        if other.get("/v1/agents").await.0 == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "a key revoked with `warden keys revoke` kept working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_has_its_own_rate_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = keyed_config(tmp.path());
    config.auth.rate_limit_per_sec = 1.0;
    config.auth.rate_limit_burst = 5;
    let a = create_key(tmp.path(), "acme", "a", false);
    let b = create_key(tmp.path(), "acme", "b", false);
    let server = Server::start_with(config).await;
    let (a, b) = (server.with_key(&a), server.with_key(&b));
    for _ in 0..5 {
        assert_eq!(a.get("/v1/agents").await.0, StatusCode::OK);
    }
    let resp = a.http.get(a.url("/v1/agents")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "rate_limited");
    // Another key of the same workspace is not slowed down.
    assert_eq!(b.get("/v1/agents").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_open_host_off_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.addr = "0.0.0.0:0".parse().unwrap();
    let refused = App::open(config.clone())
        .await
        .err()
        .expect("an open host off loopback is refused");
    assert!(format!("{refused:#}").contains("without API keys"), "{refused:#}");
    // The binary says so and exits.
    let out = std::process::Command::new(warden_tests::warden_bin())
        .arg("serve")
        .arg("--addr")
        .arg("0.0.0.0:0")
        .arg("--data-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without API keys"));
    // With a key it may serve anywhere.
    create_key(tmp.path(), "acme", "ops", true);
    let app = App::open(config).await.expect("a keyed host may listen anywhere");
    assert!(!app.auth.is_open());
    app.close().await;
}
