//! The CLI's client: every command except `serve` talks to a running server over
//! HTTP and prints the JSON it answers. API errors become process errors with the
//! server's code and message.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// A deploy job's elapsed time.
fn seconds(job: &Value) -> f64 {
    job["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0
}

pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base`, sending `api_key` (if any) as a Bearer token.
    pub fn new(base: &str, api_key: Option<&str>) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key has characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().default_headers(headers).build()?,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the warden server at {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.context("the server's answer is not JSON")?;
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("unknown");
            let message = body["error"]["message"].as_str().unwrap_or("");
            bail!("{status}: {code}: {message}");
        }
        Ok(body)
    }

    /// Deploys a component (the manifest's agent, or `name`), waiting while the
    /// host compiles it; answers what a waiting deploy answers.
    pub async fn deploy(&self, wasm: &Path, name: Option<&str>, manifest: Option<&Path>) -> anyhow::Result<Value> {
        let bytes = tokio::fs::read(wasm)
            .await
            .with_context(|| format!("reading {}", wasm.display()))?;
        let mut manifest: Value = match manifest {
            Some(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
            }
            None => json!({}),
        };
        if let Some(name) = name {
            manifest["name"] = json!(name);
        }
        if manifest.get("name").is_none() {
            bail!("give the agent a name with --name or in the manifest");
        }
        let form = Form::new()
            .part("component", Part::bytes(bytes).file_name("component.wasm"))
            .text("manifest", manifest.to_string());
        // The host compiles in the background; the deploy is polled, and its
        // progress shown on a terminal.
        let job = self
            .send(
                self.http
                    .post(format!("{}/v1/agents", self.base))
                    .query(&[("wait", "false")])
                    .multipart(form),
            )
            .await?;
        let id = job["id"].as_str().context("the server's deploy has no id")?.to_owned();
        let name = job["agent_name"].as_str().unwrap_or_default().to_owned();
        let show = std::io::stderr().is_terminal();
        let mut answered = std::time::Instant::now();
        loop {
            // The deploy is stored: a host restarting meanwhile goes on with
            // it, so a failing poll is tried again for a while.
            let job = match self.get(&format!("/v1/deploys/{id}"), &[]).await {
                Ok(job) => {
                    answered = std::time::Instant::now();
                    job
                }
                Err(e) if transient(&e) && answered.elapsed() < FOLLOW_PATIENCE => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "following deploy {id} (the host goes on with it: `GET /v1/deploys/{id}` shows it once the host answers)"
                    )));
                }
            };
            match job["status"].as_str() {
                Some("deployed") => {
                    if show {
                        eprintln!("\rcompiled {name} in {:.1} s   ", seconds(&job));
                    }
                    return Ok(job["deployed"].clone());
                }
                Some("failed") => {
                    if show {
                        eprintln!();
                    }
                    let code = job["error"]["code"].as_str().unwrap_or("unknown");
                    let message = job["error"]["message"].as_str().unwrap_or("");
                    bail!("deploy failed: {code}: {message}");
                }
                _ => {
                    if show {
                        eprint!("\rcompiling {name}: {:.1} s", seconds(&job));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Executes `agent`: `body` is the execute request's (`input`, `model`...),
    /// `mode` its mode.
    pub async fn run(&self, agent: &str, mut body: Value, mode: &str) -> anyhow::Result<Value> {
        body["mode"] = json!(mode);
        self.send(
            self.http
                .post(format!("{}/v1/agents/{agent}/execute", self.base))
                .json(&body),
        )
        .await
    }

    /// POST with a JSON body (approve, reject).
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// POST with no body (cancel, retry).
    pub async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base))).await
    }

    /// DELETE; a 204 answers nothing.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("cannot reach the warden server at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            bail!(
                "{status}: {}: {}",
                body["error"]["code"].as_str().unwrap_or("unknown"),
                body["error"]["message"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    /// One turn of a conversation, streamed: each content delta goes to
    /// `on_delta` as it comes; returns the end's event (`done` or `error`) data.
    pub async fn chat_turn(
        &self,
        agent: &str,
        conversation: &str,
        message: &str,
        mut on_delta: impl FnMut(&str),
    ) -> anyhow::Result<(String, Value)> {
        let body = json!({ "input": { "message": message }, "conversation_id": conversation, "mode": "stream" });
        let resp = self
            .http
            .post(format!("{}/v1/agents/{agent}/execute", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach the warden server at {}", self.base))?;
        read_events(resp, |kind, event| {
            if kind == "content" {
                on_delta(event["data"]["delta"].as_str().unwrap_or_default());
            }
        })
        .await
    }

    /// An execution's events from after `after`, live, each to `on_event(type,
    /// event)`, until its end; returns the end's type (`done` or `error`) and data.
    pub async fn follow(
        &self,
        id: &str,
        after: u64,
        on_event: impl FnMut(&str, &Value),
    ) -> anyhow::Result<(String, Value)> {
        let resp = self
            .http
            .get(format!("{}/v1/executions/{id}/stream", self.base))
            .query(&[("after", after.to_string())])
            .send()
            .await
            .with_context(|| format!("cannot reach the warden server at {}", self.base))?;
        read_events(resp, on_event).await
    }
}

/// Reads server-sent events (`event:` and `data:` lines, a blank line after
/// each) to `on_event(type, event)` until a `done` or `error` one, which it
/// returns. Bytes are kept until a line is whole: a character may span two chunks.
async fn read_events(
    mut resp: reqwest::Response,
    mut on_event: impl FnMut(&str, &Value),
) -> anyhow::Result<(String, Value)> {
    if !resp.status().is_success() {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        bail!(
            "{status}: {}: {}",
            body["error"]["code"].as_str().unwrap_or("unknown"),
            body["error"]["message"].as_str().unwrap_or("")
        );
    }
    let mut buffer: Vec<u8> = Vec::new();
    let mut kind = String::new();
    while let Some(chunk) = resp.chunk().await.context("the stream broke off")? {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(k) = line.strip_prefix("event:") {
                kind = k.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                let event: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                on_event(&kind, &event);
                if matches!(kind.as_str(), "done" | "error") {
                    return Ok((kind, event["data"].clone()));
                }
            }
        }
    }
    bail!("the stream ended before the execution did")
}

/// How long `warden deploy` goes on following a deploy the host does not
/// answer for (a restart: the deploy is stored, and made when it is back).
const FOLLOW_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a failed request may succeed later: the server out of reach (it
/// may be restarting) or failing for now (`5xx`).
fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.downcast_ref::<reqwest::Error>().is_some()) || e.to_string().starts_with('5')
}
