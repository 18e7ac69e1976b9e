//! A full disk, for real: the data dir on a small tmpfs filled to the last byte
//! under a running `warden serve`. Nobody is told of an outcome that was not
//! stored: writes wait until space comes back and then land, in order; new
//! work is refused meanwhile with a typed 503; health says why; no temporary
//! file is left behind. (Mounting needs root, as CI runs.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use warden_tests::{Warden, error_code};

/// A tmpfs of `mb` MiB mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mb: u32) -> Tmpfs {
        let uid = std::process::Command::new("id").arg("-u").output().expect("id runs");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test mounts a small filesystem and needs root (CI runs as root)"
        );
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs failed");
        Tmpfs { dir, _parent: parent }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
    }
}

/// Writes zeros to `path` until the disk is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(".tmp-") {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_waited_out_and_nothing_unstored_is_claimed() {
    let disk = Tmpfs::mount(48);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("warden.toml");
    std::fs::write(&config, "deploy_examples = false\n").unwrap();
    let data = disk.dir.join("data");
    let warden = Warden::start_with(&data, &["--config", config.to_str().unwrap()]);
    let server = warden.client();
    server.deploy("echo", json!({})).await;
    server.deploy("toolbox", json!({})).await;
    assert_eq!(server.run("echo", json!({ "n": 0 })).await["status"], "completed");

    let filler = disk.dir.join("filler");
    fill(&filler);
    // An artifact's bytes cannot be written now: the agent is told, and the
    // failed write leaves no temporary file.
    let input = json!({ "artifacts": [{ "name": "big.bin", "media_type": "application/octet-stream", "text": "x", "repeat": 1_000_000 }] });
    let record = server.run("toolbox", input).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert!(
        record["error"]["message"].as_str().unwrap().contains("could not store"),
        "{record}"
    );
    assert_eq!(temporary_files(&data), Vec::<PathBuf>::new());
    // A run whose record outgrows what the database has room for (its input,
    // output and last events, a few MB): the caller waits; it is not told an
    // outcome that is not stored.
    let big = "y".repeat(900_000);
    let echo = tokio::spawn({
        let server = warden.client();
        let body = json!({ "input": { "big": big } });
        async move { server.post_json("/v1/agents/echo/execute", &body).await }
    });
    // The host notices at its first write, says so, and refuses new work.
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let (status, health) = server.get("/admin/health").await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "health never said storage is failing: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(health["status"], "degraded");
    assert!(health["storage_failure"]["error"].is_string(), "{health}");
    let resp = server
        .http
        .post(server.url("/v1/agents/echo/execute"))
        .json(&json!({ "input": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(error_code(&resp.json().await.unwrap()), "storage_unavailable");
    let (status, body) = server
        .deploy_bytes(warden_tests::agent_wasm("hello"), &json!({ "name": "hello" }))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "storage_unavailable");
    // Nobody has been told an outcome meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !echo.is_finished(),
        "a caller was answered for a record that is not stored"
    );

    // Space comes back: the waiting writes land, in order, and only then are
    // the callers answered.
    std::fs::remove_file(&filler).unwrap();
    let (status, record) = echo.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["status"], "completed");
    let id = record["id"].as_str().unwrap();
    let (status, stored) = server.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["output"]["echo"]["big"].as_str().map(str::len), Some(900_000));
    let (status, health) = server.get("/admin/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert!(health.get("storage_failure").is_none());
    assert_eq!(temporary_files(&data), Vec::<PathBuf>::new());
    assert_eq!(server.run("echo", json!({ "n": 2 })).await["status"], "completed");
    drop(warden);
}
