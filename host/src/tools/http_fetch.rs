//! `http_fetch`: GET or POST to a host on the agent's allowlist, at the address
//! [`egress`](super::egress) checked (no second lookup to rebind), without
//! redirects, with size and time caps.

use std::time::Duration;

use serde_json::{Value, json};

use super::egress::{PinnedClients, check_url};
use super::{ToolCtx, ToolError, str_arg};
use crate::config::ToolsConfig;

pub async fn call(
    clients: &PinnedClients,
    config: &ToolsConfig,
    ctx: &ToolCtx,
    args: Value,
) -> Result<Value, ToolError> {
    let (url, host, addr) = check_url(config, ctx, str_arg(&args, "url")?).await?;
    let timeout = Duration::from_millis(config.http_timeout_ms);
    let client = clients.get(&host, addr)?;
    let method = args["method"].as_str().unwrap_or("GET");
    let mut request = match method {
        "GET" => client.get(url.clone()),
        "POST" => client.post(url.clone()),
        other => {
            return Err(ToolError::InvalidArguments(format!(
                "method {other:?} is not GET or POST"
            )));
        }
    };
    request = request.timeout(timeout);
    if let Some(body) = args["body"].as_str() {
        request = request.body(body.to_owned());
    }
    if let Some(ct) = args["content_type"].as_str() {
        request = request.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let (Some(trace_id), Some(span_id)) = (&ctx.trace_id, &ctx.span_id) {
        request = request.header("traceparent", crate::trace::traceparent(trace_id, span_id));
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| ToolError::Failed(format!("fetching {url}: {e}")))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = config.http_max_bytes.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    truncated = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(ToolError::Failed(format!("reading {url}: {e}"))),
        }
    }
    Ok(json!({
        "status": status,
        "content_type": content_type,
        "body": String::from_utf8_lossy(&body),
        "truncated": truncated,
    }))
}
