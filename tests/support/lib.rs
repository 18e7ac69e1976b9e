//! Test support: start a real Warden server in-process on `127.0.0.1:0` with its
//! own data dir, deploy real components built from `agents/`, talk real HTTP.

pub mod browser;
pub mod postgres;
pub mod providers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warden_host::app::App;
use warden_host::config::Config;

/// Longest any single request in a test may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server. Stop it with [`Server::stop`] to reuse its data dir.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// The bytes of an agent built from `agents/` (`echo`, `spin`, ...).
pub fn agent_wasm(name: &str) -> Vec<u8> {
    let path = warden_host::bundled::agent_path(name).unwrap_or_else(|| panic!("no built agent named {name}"));
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// An agent of `agents/<lang>/<dir>` (`python`, `js`): its component (built
/// by the test set-up with `warden build`, into
/// `target/<lang>-agents/<dir>.wasm`) and its manifest.
pub fn guest_agent(lang: &str, dir: &str) -> (Vec<u8>, Value) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join(format!("target/{lang}-agents")).join(format!("{dir}.wasm"));
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (scripts/test builds it: `warden build agents/{lang}/{dir} --out {}`)",
            wasm.display(),
            wasm.display()
        )
    });
    let manifest = root.join("agents").join(lang).join(dir).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    (bytes, serde_json::from_str(&text).expect("manifest is JSON"))
}

/// Runs the `warden` CLI against the server at `base`, in `dir` (or here).
pub fn warden_cli(base: &str, dir: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(warden_bin());
    command.arg("--server").arg(base).args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command.output().expect("warden runs")
}

/// [`warden_cli`] that must succeed: its standard output.
pub fn warden_ok(base: &str, dir: Option<&Path>, args: &[&str]) -> String {
    let out = warden_cli(base, dir, args);
    assert!(
        out.status.success(),
        "warden {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The manifest kept beside an agent's source (`agents/<name>/manifest.json`).
pub fn agent_manifest(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agents")
        .join(name)
        .join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// A config for tests: small pools, no bundled examples unless asked.
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        addr: "127.0.0.1:0".parse().expect("address"),
        data_dir: data_dir.to_path_buf(),
        deploy_examples: false,
        max_concurrent_executions: 16,
        // Stopping a test server does not wait long for runs it left going.
        shutdown_grace_ms: 300,
        // Components compile in a child process, as under `warden serve`.
        deploy: warden_host::config::CompileConfig {
            program: Some(warden_bin()),
            ..Default::default()
        },
        ..Config::default()
    }
}

impl Server {
    /// A server on a fresh temporary data dir.
    pub async fn start() -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = test_config(tmp.path());
        let mut server = Server::start_with(config).await;
        server._tmp = Some(tmp);
        server
    }

    pub async fn start_with(config: Config) -> Server {
        let listener = tokio::net::TcpListener::bind(config.addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let data_dir = config.data_dir.clone();
        let app = App::open(config).await.expect("app opens");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(warden_host::server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            data_dir,
            shutdown: Some(tx),
            task: Some(task),
            _tmp: None,
        }
    }

    /// A handle to a server running elsewhere (another process): requests only.
    pub fn attach(base: &str) -> Server {
        Server {
            base: base.to_owned(),
            http: reqwest::Client::new(),
            data_dir: PathBuf::new(),
            shutdown: None,
            task: None,
            _tmp: None,
        }
    }

    /// A handle to the same server that sends `token` as its API key.
    pub fn with_key(&self, token: &str) -> Server {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header value"),
        );
        Server {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("client"),
            data_dir: self.data_dir.clone(),
            shutdown: None,
            task: None,
            _tmp: None,
        }
    }

    /// Stops serving and waits until everything is committed. Returns the data
    /// dir's guard so a test can start another server on it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(REQUEST_TIMEOUT, task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ran cleanly");
        }
        self._tmp.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends any request; returns the status and the JSON body.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, req.send())
            .await
            .expect("request finishes in time")
            .expect("request is sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON ({status}): {text}"));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    /// DELETE; the status (a 204 has no body), and the body of an error.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.delete(self.url(path)).send())
            .await
            .expect("request finishes in time")
            .expect("request is sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Deploys raw bytes with a manifest; returns status and body.
    pub async fn deploy_bytes(&self, bytes: Vec<u8>, manifest: &Value) -> (StatusCode, Value) {
        let form = Form::new()
            .part("component", Part::bytes(bytes).file_name("agent.wasm"))
            .text("manifest", manifest.to_string());
        self.send(self.http.post(self.url("/v1/agents")).multipart(form)).await
    }

    /// Sends a background deploy (`?wait=false`) of a guest built from
    /// `agents/<lang>/<dir>` with its manifest; panics unless it is accepted.
    /// The job's address (`/v1/deploys/{id}`).
    pub async fn deploy_in_background(&self, lang: &str, dir: &str) -> String {
        let (wasm, manifest) = guest_agent(lang, dir);
        let form = Form::new()
            .part("component", Part::bytes(wasm).file_name("c.wasm"))
            .text("manifest", manifest.to_string());
        let (status, job) = self
            .send(self.http.post(self.url("/v1/agents?wait=false")).multipart(form))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        format!("/v1/deploys/{}", job["id"].as_str().expect("a job id"))
    }

    /// Deploys an agent built from `agents/` with its own manifest, adjusted by
    /// `tweak` (merged over it); panics unless it is created.
    pub async fn deploy(&self, name: &str, tweak: Value) -> Value {
        let mut manifest = agent_manifest(name);
        merge(&mut manifest, tweak);
        let (status, body) = self.deploy_bytes(agent_wasm(name), &manifest).await;
        assert_eq!(status, StatusCode::CREATED, "deploying {name}: {body}");
        body
    }

    /// Executes synchronously; returns the final record.
    pub async fn run(&self, agent: &str, input: Value) -> Value {
        let (status, body) = self
            .post_json(&format!("/v1/agents/{agent}/execute"), &json!({ "input": input }))
            .await;
        assert_eq!(status, StatusCode::OK, "executing {agent}: {body}");
        body
    }

    /// Reads an execution's whole SSE stream, from after `last_event_id` if given.
    pub async fn stream(&self, id: &str, last_event_id: Option<u64>) -> Vec<SseEvent> {
        let mut req = self.http.get(self.url(&format!("/v1/executions/{id}/stream")));
        if let Some(n) = last_event_id {
            req = req.header("last-event-id", n.to_string());
        }
        read_sse(req.send().await.expect("stream request")).await
    }

    /// Waits for an execution's end on its event stream (which closes after
    /// the `done` or `error` that follows the end's commit) and returns its
    /// record, whatever the terminal status.
    pub async fn wait_terminal(&self, id: &str) -> Value {
        let events = self.stream(id, None).await;
        let last = events
            .last()
            .unwrap_or_else(|| panic!("execution {id}: an empty stream"));
        assert!(
            matches!(last.event.as_str(), "done" | "error"),
            "execution {id}: the stream closed after {last:?}"
        );
        let (status, body) = self.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let terminal = body["status"].as_str().is_some_and(|s| TERMINAL.contains(&s));
        assert!(
            terminal,
            "execution {id} streamed its end but its record is not terminal: {body}"
        );
        body
    }
}

/// The statuses an execution ends in.
pub const TERMINAL: &[&str] = &["completed", "failed", "cancelled", "rejected"];

/// Merges `patch` into `base` (objects recursively, anything else replaced).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// Asserts the typed error shape and returns the code.
pub fn error_code(body: &Value) -> &str {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code in {body}"));
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no error.message in {body}"
    );
    code
}

/// Creates an API key with `warden keys create` on a data dir; returns its token.
pub fn create_key(data_dir: &Path, workspace: &str, name: &str, admin: bool) -> String {
    create_role_key(data_dir, workspace, name, if admin { "admin" } else { "member" })
}

/// Creates an API key of a role (`admin`, `member`, `approver`); returns its token.
pub fn create_role_key(data_dir: &Path, workspace: &str, name: &str, role: &str) -> String {
    let mut cmd = std::process::Command::new(warden_bin());
    cmd.arg("keys")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["create", "--workspace", workspace, "--name", name]);
    if role != "member" {
        cmd.arg(format!("--{role}"));
    }
    let out = cmd.output().expect("warden keys runs");
    assert!(
        out.status.success(),
        "warden keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("warden keys prints JSON");
    created["token"].as_str().expect("a token").to_owned()
}

/// The `warden` binary built beside the test executable.
pub fn warden_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("warden{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p warden-host --bin warden` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A real `warden serve` child process on `127.0.0.1:0` and the address it
/// serves on (for tests that kill, signal or restart the host).
pub struct Warden {
    child: std::process::Child,
    pub base: String,
    /// Its last log lines (stderr), kept for tests that read them.
    log: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

impl Warden {
    pub fn start(data_dir: &Path) -> Warden {
        Warden::start_with(data_dir, &[])
    }

    /// Starts with more `serve` arguments (`--config`, ...).
    pub fn start_with(data_dir: &Path, args: &[&str]) -> Warden {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(warden_bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("warden starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut early = std::collections::VecDeque::new();
        let addr = loop {
            let line = lines.next().expect("warden logs before exiting").expect("log line");
            if let Some(rest) = line
                .split("addr=")
                .nth(1)
                .filter(|_| line.contains("warden is serving"))
            {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
            early.push_back(line);
        };
        // Keep draining the log so the child never blocks on a full pipe,
        // keeping its last lines (and those from before it served).
        let log = std::sync::Arc::new(std::sync::Mutex::new(early));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                if kept.len() == 10_000 {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        Warden {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    /// Its last log lines (up to 10,000).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().cloned().collect()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of it.
    pub fn client(&self) -> Server {
        Server::attach(&self.base)
    }

    pub fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Sends SIGTERM (what process managers send) and returns at once.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit (up to `within`); its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "warden did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Server-Sent Event as a client sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

/// Reads a whole SSE response (the server closes it after `done` or `error`).
pub async fn read_sse(resp: reqwest::Response) -> Vec<SseEvent> {
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap(),
        "text/event-stream",
        "not an event stream"
    );
    let text = tokio::time::timeout(REQUEST_TIMEOUT, resp.text())
        .await
        .expect("the stream ends in time")
        .expect("stream body");
    parse_sse(&text)
}

pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        // (A message without an id, such as `shutdown`, reads as id 0.)
        if let Some(event) = event {
            out.push(SseEvent {
                id: id.unwrap_or(0),
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            });
        }
    }
    out
}
