//! Egress: where a tool may connect. A URL's host must be on the agent's
//! allowlist; its name is resolved here and every address checked: loopback,
//! private, link-local (cloud metadata), shared, reserved, benchmarking,
//! documentation, multicast and unspecified addresses are refused unless the
//! host's config allows private addresses, and so is an IPv4 address carried
//! inside an IPv6 one (mapped, compatible, NAT64, 6to4) that would be refused on
//! its own. The caller then connects to the checked address only (pinned: no
//! second lookup can rebind the name), with a client kept for that host and
//! address ([`PinnedClients`]).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::{ToolCtx, ToolError};
use crate::config::ToolsConfig;

pub use crate::manifest::host_allowed;

/// Clients kept for reuse, with their open connections: at most this many.
const MAX_CLIENTS: usize = 64;
/// Idle connections one kept client holds open.
const IDLE_PER_CLIENT: usize = 8;

/// HTTP clients pinned to a checked address (a name resolves to that address
/// only, no proxy from the environment, nothing follows redirects), one per
/// host and address, kept for reuse:
/// building one (its TLS set-up) and connecting cost more than most requests.
pub struct PinnedClients {
    connect_timeout: Duration,
    kept: Mutex<VecDeque<((String, SocketAddr), reqwest::Client)>>,
}

impl PinnedClients {
    pub fn new(config: &ToolsConfig) -> Self {
        Self {
            connect_timeout: Duration::from_millis(config.http_timeout_ms),
            kept: Mutex::new(VecDeque::new()),
        }
    }

    /// The client for `host` at `addr` (made now if none is kept; the least
    /// recently used one goes past the cap).
    pub fn get(&self, host: &str, addr: SocketAddr) -> Result<reqwest::Client, ToolError> {
        let found = {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            let at = kept.iter().position(|((h, a), _)| h == host && *a == addr);
            at.and_then(|at| kept.remove(at)).map(|entry| {
                let client = entry.1.clone();
                kept.push_back(entry);
                client
            })
        };
        if let Some(client) = found {
            return Ok(client);
        }
        // Made outside the lock (its TLS set-up takes a while).
        let client = reqwest::Client::builder()
            .resolve(host, addr)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(IDLE_PER_CLIENT)
            .build()
            .map_err(|e| ToolError::Failed(format!("making an HTTP client: {e}")))?;
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.push_back(((host.to_owned(), addr), client.clone()));
        if kept.len() > MAX_CLIENTS {
            kept.pop_front();
        }
        Ok(client)
    }
}

/// Addresses a guest may not reach unless the host allows private addresses.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 0.0.0.0/8 "this network"
        || a == 0
        // 100.64.0.0/10 shared address space (carrier-grade NAT)
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 0)
        // 192.88.99.0/24 the 6to4 relay anycast
        || (a == 192 && b == 88 && c == 99)
        // 198.18.0.0/15 benchmarking
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4 reserved
        || a >= 240
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local
        || (s[0] & 0xfe00) == 0xfc00
        // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfe80
        // fec0::/10 site-local (deprecated, still routed somewhere)
        || (s[0] & 0xffc0) == 0xfec0
        // 2001::/32 Teredo: its IPv4 ends are hidden in the address
        || (s[0] == 0x2001 && s[1] == 0)
        // 2001:db8::/32 documentation
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        // 100::/64 discard-only
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
        // 64:ff9b:1::/48 local-use NAT64
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
}

/// The IPv4 address an IPv6 one carries and leads to: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and
/// 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..6] == [0; 6] || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4]) {
        return Some(last);
    }
    (s[0] == 0x2002).then(|| Ipv4Addr::new(o[2], o[3], o[4], o[5]))
}

/// Resolves `host` and checks every address it has; returns the first.
pub async fn resolve_checked(config: &ToolsConfig, host: &str, port: u16) -> Result<SocketAddr, ToolError> {
    let timeout = Duration::from_millis(config.http_timeout_ms);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| ToolError::Failed(format!("resolving {host} timed out")))?
            .map_err(|e| ToolError::Failed(format!("resolving {host}: {e}")))?
            .collect(),
    };
    if !config.allow_private_addresses
        && let Some(bad) = addrs.iter().find(|a| forbidden(a.ip()))
    {
        return Err(ToolError::Failed(format!(
            "refused: {host} is {}, a loopback, private or link-local address, or one reserved for special use",
            bad.ip()
        )));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| ToolError::Failed(format!("{host} has no address")))
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
    let addr = resolve_checked(config, &host, port).await?;
    Ok((url, host, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_reserved_and_smuggled_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            // The metadata address behind NAT64, 6to4 and IPv4-compatible forms.
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::a9fe:a9fe",
            "::127.0.0.1",
            "64:ff9b:1::1",
            "2001::1",
            "2001:db8::1",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        // Public addresses, also carried inside IPv6 ones.
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "198.20.0.1",
            "100.128.0.1",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }
}
