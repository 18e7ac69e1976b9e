//! `http_fetch`: GET or POST to a host on the agent's allowlist. The host name is
//! resolved here and every address checked: loopback, private, link-local (cloud
//! metadata), multicast and unspecified addresses are refused unless the host's
//! config allows them; the request then goes to the checked address (no second
//! lookup to rebind), without redirects, with size and time caps.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};

use super::{ToolCtx, ToolError, str_arg};
use crate::config::ToolsConfig;

/// Whether `host` matches an allowlist entry (`api.example.com`, `*.example.com`).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        match entry.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == entry,
        }
    })
}

/// Addresses a guest may not reach unless the host allows private addresses.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// Checks a URL against the agent's allowlist and the address rules; returns it
/// parsed, with its host and the checked address to connect to.
pub async fn check_url(
    config: &ToolsConfig,
    ctx: &ToolCtx,
    url: &str,
) -> Result<(reqwest::Url, String, SocketAddr), ToolError> {
    let url = reqwest::Url::parse(url).map_err(|e| ToolError::InvalidArguments(format!("url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ToolError::InvalidArguments(
            "url: only http and https are allowed".into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| ToolError::InvalidArguments("url: no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if !host_allowed(&host, &ctx.allowed_hosts) {
        return Err(ToolError::Failed(format!(
            "refused: {host} is not in this agent's allowed_hosts"
        )));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let timeout = Duration::from_millis(config.http_timeout_ms);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| ToolError::Failed(format!("resolving {host} timed out")))?
            .map_err(|e| ToolError::Failed(format!("resolving {host}: {e}")))?
            .collect(),
    };
    if !config.allow_private_addresses
        && let Some(bad) = addrs.iter().find(|a| forbidden(a.ip()))
    {
        return Err(ToolError::Failed(format!(
            "refused: {host} is {}, a loopback, private or link-local address",
            bad.ip()
        )));
    }
    let addr = *addrs
        .first()
        .ok_or_else(|| ToolError::Failed(format!("{host} has no address")))?;
    Ok((url, host, addr))
}

pub async fn call(
    http: &reqwest::Client,
    config: &ToolsConfig,
    ctx: &ToolCtx,
    args: Value,
) -> Result<Value, ToolError> {
    let (url, host, addr) = check_url(config, ctx, str_arg(&args, "url")?).await?;
    let timeout = Duration::from_millis(config.http_timeout_ms);
    let client = reqwest::Client::builder()
        .resolve(&host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .unwrap_or_else(|_| http.clone());
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
    if let Some(body) = args["body"].as_str() {
        request = request.body(body.to_owned());
    }
    if let Some(ct) = args["content_type"].as_str() {
        request = request.header(reqwest::header::CONTENT_TYPE, ct);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_hosts_and_subdomains() {
        let allowed = vec!["api.example.com".to_owned(), "*.docs.example.com".to_owned()];
        assert!(host_allowed("API.example.com", &allowed));
        assert!(host_allowed("v1.docs.example.com", &allowed));
        assert!(!host_allowed("docs.example.com", &allowed));
        assert!(!host_allowed("evil-api.example.com", &allowed));
        assert!(!host_allowed("api.example.com.evil.net", &allowed));
    }

    #[test]
    fn private_and_metadata_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }
}
