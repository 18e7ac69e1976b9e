//! `rogue` (hostile): raw bindings, no SDK. The input is the name of one attack,
//! `"<attack> <n>"`:
//! - `logs n`: `n` log lines through the log import;
//! - `steps n`: `n` steps, each with a 1 KiB detail;
//! - `artifacts n`: `n` artifacts of 64 KiB, ignoring refusals;
//! - `tools n`: `n` kv tool calls, ignoring refusals;
//! - `output n`: an output of `n` MiB;
//! - `utf8`: output bytes that are not UTF-8;
//! - `stdin`: reads stdin to its end (there is none to block on).
//!
//! Each counts what the host accepted and returns it, so a test sees the caps.

wit_bindgen::generate!({ world: "agent", path: "../../wit" });

use std::io::Read;

use warden::agent::{artifacts, log, step, tools};

struct Rogue;

/// The input is a JSON string; this guest has no JSON library, so it strips the
/// quotes and splits the rest.
fn attack(input: &str) -> (String, u64) {
    let mut parts = input.trim().trim_matches('"').split_whitespace();
    let name = parts.next().unwrap_or("").to_owned();
    let n = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (name, n)
}

impl Guest for Rogue {
    fn run(input: String) -> Result<String, AgentError> {
        let (name, n) = attack(&input);
        let accepted: u64 = match name.as_str() {
            "logs" => {
                for i in 0..n {
                    log::write(log::Level::Info, &format!("flood line {i} {}", "x".repeat(100)));
                }
                n
            }
            "steps" => {
                let detail = format!("\"{}\"", "d".repeat(1024));
                (0..n).filter(|_| step::add("flood", &detail) > 0).count() as u64
            }
            "artifacts" => {
                let data = vec![7u8; 64 << 10];
                (0..n)
                    .filter(|i| artifacts::put(&format!("blob-{i}.bin"), "application/octet-stream", &data).is_ok())
                    .count() as u64
            }
            "tools" => (0..n)
                .filter(|i| tools::call("kv", &format!(r#"{{"op":"get","key":"k{i}"}}"#)).is_ok())
                .count() as u64,
            "output" => {
                let mut out = String::with_capacity((n as usize) << 20);
                out.push('"');
                out.push_str(&"o".repeat((n as usize) << 20));
                out.push('"');
                return Ok(out);
            }
            "utf8" => {
                // Bytes that are not UTF-8 where the contract says `string`: the
                // host must refuse to lift them.
                let bytes = vec![b'"', 0xff, 0xfe, 0xfd, b'"'];
                // SAFETY: deliberately not UTF-8; nothing in this guest reads
                // the string, it is only handed to the host.
                return Ok(unsafe { String::from_utf8_unchecked(bytes) });
            }
            "stdin" => {
                let mut buf = Vec::new();
                let read = std::io::stdin().read_to_end(&mut buf).map_err(|e| AgentError {
                    code: "stdin".into(),
                    message: e.to_string(),
                })?;
                read as u64
            }
            other => {
                return Err(AgentError {
                    code: "invalid_input".into(),
                    message: format!("unknown attack {other:?}"),
                });
            }
        };
        Ok(format!(r#"{{"attack":"{name}","accepted":{accepted}}}"#))
    }
}

export!(Rogue);
