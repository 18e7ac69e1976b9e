//! `browser`: opens a URL in a real headless Chromium over the DevTools protocol,
//! waits for the page to load, and returns its title (and text, if asked); its
//! PNG screenshot becomes an artifact of the run. One browser process per call,
//! with a throwaway profile, stopped and removed afterwards. The URL is checked
//! like `http_fetch`'s, and the browser is started as [`launch`] says: never as
//! root, sandboxed, its name resolution pinned to checked addresses. No browser
//! installed is a clear error, never a hang.

mod cdp;
mod launch;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use self::cdp::Cdp;
use self::launch::{find_browser, resolver_rules, run_as, start};
use super::egress::{check_url, resolve_checked};
use super::{ToolCtx, ToolError};
use crate::config::ToolsConfig;

/// Longest page text returned.
const MAX_TEXT_BYTES: usize = 64 << 10;

struct Page {
    title: String,
    text: String,
    png: Vec<u8>,
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
    let (_, host, addr) = check_url(config, ctx, url).await?;
    let browser = find_browser(config)?;
    let user = run_as(config)?;
    // The URL's host at its checked address, and every other allowlisted name
    // (not wildcards) that resolves to an allowed one: the page's own requests.
    let mut pinned = vec![(host.clone(), addr)];
    for other in ctx.allowed_hosts.iter() {
        if other.starts_with("*.") || other.eq_ignore_ascii_case(&host) {
            continue;
        }
        if let Ok(addr) = resolve_checked(config, other, addr.port()).await {
            pinned.push((other.clone(), addr));
        }
    }
    let rules = resolver_rules(&pinned);
    let timeout = Duration::from_millis(config.browser_timeout_ms);
    let profile = std::env::temp_dir().join(format!("warden-browser-{}", crate::ids::artifact()));
    let result = tokio::time::timeout(timeout, drive(config, &browser, &profile, &rules, user, url)).await;
    remove_profile(&profile).await;
    match result {
        Ok(page) => page,
        Err(_) => Err(ToolError::Failed(format!(
            "the browser did not finish with {url} within {} ms",
            timeout.as_millis()
        ))),
    }
}

async fn drive(
    config: &ToolsConfig,
    browser: &Path,
    profile: &Path,
    rules: &str,
    user: Option<launch::RunAs>,
    url: &str,
) -> Result<Page, ToolError> {
    let mut started = start(config, browser, profile, rules, user).await?;
    let page = read_page(&started.devtools, url).await;
    // Stopped and waited for, so that nothing writes to the profile any more.
    let _ = started.child.kill().await;
    page
}

async fn read_page(devtools: &str, url: &str) -> Result<Page, ToolError> {
    let mut cdp = Cdp::connect(devtools).await?;
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
        .map_err(|e| ToolError::Failed(format!("browser: decoding the screenshot: {e}")))?;
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
    Ok(Page { title, text, png })
}

/// Removes a throwaway profile; a browser's helpers may still be closing files
/// in it for a moment, so a failed removal is tried again.
async fn remove_profile(profile: &Path) {
    for _ in 0..20 {
        match tokio::fs::remove_dir_all(profile).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => return,
        }
    }
    tracing::warn!(profile = %profile.display(), "could not remove a browser profile");
}
