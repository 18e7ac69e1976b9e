//! Starting the browser for one call: found in the usual places (or
//! `tools.browser_path`), with a throwaway profile, never as root (a host running
//! as root starts it as `tools.browser_user`, `nobody` by default), with its own
//! sandbox on, and with its name resolution pinned: every name it may look up is
//! resolved and checked here first ([`egress`](super::super::egress)), mapped to
//! that address, and every other name fails, so no lookup of its own can rebind
//! a name to a forbidden address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::config::ToolsConfig;
use crate::ports::ToolError;

/// Where browsers are usually installed.
const CANDIDATES: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/snap/bin/chromium",
];

pub fn find_browser(config: &ToolsConfig) -> Result<PathBuf, ToolError> {
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

/// The user a browser runs as when the host is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Who the browser runs as: `None` (the host's own user) unless the host is
/// root; then `tools.browser_user`, which must exist.
pub fn run_as(config: &ToolsConfig) -> Result<Option<RunAs>, ToolError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    user_in(&passwd, &config.browser_user).map(Some).ok_or_else(|| {
        ToolError::Failed(format!(
            "the host runs as root and the browser never does: tools.browser_user {:?} does not exist",
            config.browser_user
        ))
    })
}

/// A user's ids from `/etc/passwd` text.
fn user_in(passwd: &str, name: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == name).then(|| {
            Some(RunAs {
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })?
    })
}

/// The browser's resolver rules: each name mapped to its checked address, every
/// other name not found.
pub fn resolver_rules(pinned: &[(String, SocketAddr)]) -> String {
    let mut rules = String::new();
    for (host, addr) in pinned {
        match addr.ip() {
            std::net::IpAddr::V4(ip) => rules.push_str(&format!("MAP {host} {ip}, ")),
            std::net::IpAddr::V6(ip) => rules.push_str(&format!("MAP {host} [{ip}], ")),
        }
    }
    rules.push_str("MAP * ~NOTFOUND");
    rules
}

/// A started browser and the DevTools address it listens on.
pub struct Started {
    pub child: Child,
    pub devtools: String,
}

/// Starts the browser with `profile` (which it creates) and `rules`.
pub async fn start(
    config: &ToolsConfig,
    browser: &Path,
    profile: &Path,
    rules: &str,
    user: Option<RunAs>,
) -> Result<Started, ToolError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| ToolError::Failed(format!("browser: {what}: {e}"));
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
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
        // Its home and caches in its throwaway profile, not the host's.
        .env("HOME", profile)
        .env("XDG_CONFIG_HOME", profile)
        .env("XDG_CACHE_HOME", profile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if config.browser_no_sandbox {
        command.arg("--no-sandbox");
    }
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
    let mut child = command.spawn().map_err(|e| failed("starting the browser", &e))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| ToolError::Failed("browser: no stderr".into()))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut last = String::new();
    let devtools = loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(rest) = line.split("DevTools listening on ").nth(1) {
                    break rest.trim().to_owned();
                }
                last = line;
            }
            Ok(None) => {
                return Err(ToolError::Failed(format!(
                    "browser: it exited before it was ready (its sandbox needs unprivileged user namespaces; \
                     its last words: {last})"
                )));
            }
            Err(e) => return Err(failed("reading its output", &e)),
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Started { child, devtools })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pinned_to_their_checked_addresses() {
        let pinned = vec![
            ("api.example.com".to_owned(), "93.184.216.34:443".parse().unwrap()),
            ("v6.example.com".to_owned(), "[2606:4700::1111]:443".parse().unwrap()),
        ];
        assert_eq!(
            resolver_rules(&pinned),
            "MAP api.example.com 93.184.216.34, MAP v6.example.com [2606:4700::1111], MAP * ~NOTFOUND"
        );
        assert_eq!(resolver_rules(&[]), "MAP * ~NOTFOUND");
    }

    #[test]
    fn the_browser_user_is_read_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(user_in(passwd, "nobody"), Some(RunAs { uid: 65534, gid: 65534 }));
        assert_eq!(user_in(passwd, "ghost"), None);
        assert_eq!(user_in("broken:x:nope:1:", "broken"), None);
    }
}
