//! `browser`: opens a URL in a real headless Chromium over the DevTools protocol,
//! waits for the page to load, and returns its title (and text, if asked); its
//! PNG screenshot becomes an artifact of the run. One browser process per call, with a throwaway profile, killed
//! afterwards. The URL is checked like `http_fetch`'s (allowlist, no private
//! addresses unless allowed), and the browser's own name resolution is limited to
//! the allowlisted hosts. No browser installed is a clear error, never a hang.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use super::{ToolCtx, ToolError};
use crate::config::ToolsConfig;

/// Where browsers are usually installed.
const CANDIDATES: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/snap/bin/chromium",
];
/// Longest page text returned.
const MAX_TEXT_BYTES: usize = 64 << 10;

struct Page {
    pub title: String,
    pub text: String,
    pub png: Vec<u8>,
}

fn find_browser(config: &ToolsConfig) -> Result<PathBuf, ToolError> {
    if let Some(path) = &config.browser_path {
        return if Path::new(path).exists() {
            Ok(PathBuf::from(path))
        } else {
            Err(ToolError::Failed(format!("no browser at tools.browser_path {path:?}")))
        };
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| ToolError::Failed("no browser is installed: install chromium or set tools.browser_path".into()))
}

/// The tool: the page's title (and text, if asked), with its screenshot stored
/// as a PNG artifact of the run.
pub async fn call(config: &ToolsConfig, ctx: &ToolCtx, args: Value) -> Result<Value, ToolError> {
    let url = args["url"]
        .as_str()
        .ok_or_else(|| ToolError::InvalidArguments("`url` (a string) is required".into()))?;
    let page = snapshot(config, ctx, url).await?;
    let bytes = page.png.len();
    let name = format!("screenshot-{}.png", ctx.artifacts.stored() + 1);
    let artifact = ctx
        .artifacts
        .put(name, "image/png".into(), page.png)
        .await
        .map_err(|e| ToolError::Failed(format!("storing the screenshot: {e}")))?;
    let mut result = json!({
        "url": url,
        "title": page.title,
        "artifact_id": artifact.id,
        "screenshot_bytes": bytes,
    });
    if args["text"] == true {
        result["text"] = json!(page.text);
    }
    Ok(result)
}

/// Opens `url` and returns its title, text and a screenshot.
async fn snapshot(config: &ToolsConfig, ctx: &ToolCtx, url: &str) -> Result<Page, ToolError> {
    super::http_fetch::check_url(config, ctx, url).await?;
    let browser = find_browser(config)?;
    let timeout = Duration::from_millis(config.browser_timeout_ms);
    let profile = std::env::temp_dir().join(format!("warden-browser-{}", crate::ids::artifact()));
    let result = tokio::time::timeout(timeout, drive(&browser, &profile, ctx, url)).await;
    let _ = tokio::fs::remove_dir_all(&profile).await;
    match result {
        Ok(page) => page,
        Err(_) => Err(ToolError::Failed(format!(
            "the browser did not finish with {url} within {} ms",
            timeout.as_millis()
        ))),
    }
}

async fn drive(browser: &Path, profile: &Path, ctx: &ToolCtx, url: &str) -> Result<Page, ToolError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| ToolError::Failed(format!("browser: {what}: {e}"));
    // Only allowlisted names resolve inside the browser.
    let mut rules = String::from("MAP * ~NOTFOUND");
    for host in &ctx.allowed_hosts {
        rules.push_str(&format!(", EXCLUDE {host}"));
    }
    let mut child = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--window-size=1280,800",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--host-resolver-rules={rules}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed("starting the browser", &e))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| ToolError::Failed("browser: no stderr".into()))?;
    let mut lines = BufReader::new(stderr).lines();
    let ws_url = loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(rest) = line.split("DevTools listening on ").nth(1) {
                    break rest.trim().to_owned();
                }
            }
            Ok(None) => return Err(ToolError::Failed("browser: it exited before it was ready".into())),
            Err(e) => return Err(failed("reading its output", &e)),
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .map_err(|e| failed("connecting to DevTools", &e))?;
    let mut cdp = Cdp { ws, next_id: 0 };
    let target = cdp
        .call("Target.createTarget", json!({ "url": "about:blank" }), None)
        .await?;
    let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
            None,
        )
        .await?;
    let session = attached["sessionId"].as_str().unwrap_or_default().to_owned();
    let s = Some(session.as_str());
    cdp.call("Page.enable", json!({}), s).await?;
    let nav = cdp.call("Page.navigate", json!({ "url": url }), s).await?;
    if let Some(error) = nav["errorText"].as_str() {
        return Err(ToolError::Failed(format!("browser: could not open {url}: {error}")));
    }
    cdp.wait_event("Page.loadEventFired", &session).await?;
    let shot = cdp
        .call("Page.captureScreenshot", json!({ "format": "png" }), s)
        .await?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())
        .map_err(|e| failed("decoding the screenshot", &e))?;
    let title = cdp.eval("document.title", s).await?;
    let mut text = cdp.eval("document.body ? document.body.innerText : ''", s).await?;
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    let _ = cdp.call("Browser.close", json!({}), None).await;
    let _ = child.kill().await;
    Ok(Page { title, text, png })
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A DevTools protocol connection: numbered calls, events read as they come.
struct Cdp {
    ws: Socket,
    next_id: u64,
}

impl Cdp {
    async fn recv(&mut self) -> Result<Value, ToolError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| ToolError::Failed(format!("browser: bad DevTools message: {e}")));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ToolError::Failed(format!("browser: DevTools connection: {e}"))),
                None => return Err(ToolError::Failed("browser: DevTools connection closed".into())),
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Result<Value, ToolError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| ToolError::Failed(format!("browser: sending {method}: {e}")))?;
        loop {
            let v = self.recv().await?;
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    return Err(ToolError::Failed(format!("browser: {method}: {}", err["message"])));
                }
                return Ok(v["result"].clone());
            }
        }
    }

    async fn wait_event(&mut self, method: &str, session: &str) -> Result<(), ToolError> {
        loop {
            let v = self.recv().await?;
            if v["method"] == method && v["sessionId"] == session {
                return Ok(());
            }
        }
    }

    async fn eval(&mut self, expression: &str, session: Option<&str>) -> Result<String, ToolError> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
                session,
            )
            .await?;
        Ok(r["result"]["value"].as_str().unwrap_or_default().to_owned())
    }
}
