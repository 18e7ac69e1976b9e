//! `rogue` (hostile): raw bindings, no SDK. The input is the name of one attack,
//! `"<attack> <n>"`:
//! - `logs n`: `n` log lines through the log import;
//! - `steps n`: `n` steps, each with a 1 KiB detail;
//! - `artifacts n`: `n` artifacts of 64 KiB, ignoring refusals;
//! - `tools n`: `n` kv tool calls, ignoring refusals;
//! - `output n`: an output of `n` MiB;
//! - `utf8`: output bytes that are not UTF-8;
//! - `stdin`: reads stdin to its end (there is none to block on);
//! - `bignum`, `surrogate`, `deepjson n`: output that is JSON to a lenient parser
//!   but not to every reader (a number past a double, a lone surrogate escape,
//!   `n` nested arrays);
//! - `badsteps`: steps whose details are such JSON;
//! - `stdout n`: one raw stdout write of `n` MiB of newlines, past what WASI's
//!   check-write permits;
//! - `newlines n`: `n` MiB of newlines to stdout, in permitted writes, as fast
//!   as it can (0: until stopped);
//! - `errmsg n`: fails with an error message of `n` MiB;
//! - `bigsteps n`: `n` steps of 60 KiB details;
//! - `bigargs n`: a tool call with `n` MiB of arguments, then one nested 200 deep;
//! - `bigchat n`: model calls with `n` MiB of messages, with 1,000 tools, and
//!   with 100 tools of 1,000 string parameters each (what an amplifying
//!   provider would multiply);
//! - `child <attack>`: runs `rogue <attack>` through `agent_call` and returns
//!   what the tool answered; `bigchild n`: the same with an input of `n` bytes;
//! - `full`: everything a run may record, to its caps (logs, steps, tool calls,
//!   a 3 MiB output).
//!
//! Each counts what the host accepted and returns it, so a test sees the caps.

wit_bindgen::generate!({ world: "agent", path: "../../wit" });

use std::io::Read;

use warden::agent::{artifacts, llm, log, step, tools};

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
            "bignum" => return Ok("[1, 1e999]".into()),
            "surrogate" => return Ok(r#"{"text":"\ud800"}"#.into()),
            "deepjson" => {
                let n = n as usize;
                return Ok(format!("{}{}", "[".repeat(n), "]".repeat(n)));
            }
            "badsteps" => {
                step::add("bignum", "1e999");
                step::add("surrogate", r#""\ud800""#);
                step::add("deep", &format!("{}{}", "[".repeat(200), "]".repeat(200)));
                3
            }
            "stdout" => {
                let out = wasip2::cli::stdout::get_stdout();
                let bytes = vec![b'\n'; (n as usize) << 20];
                u64::from(out.write(&bytes).is_ok())
            }
            "newlines" => {
                let out = wasip2::cli::stdout::get_stdout();
                let chunk = vec![b'\n'; 64 << 10];
                let mut written = 0u64;
                while n == 0 || written < n << 20 {
                    let permit = out.check_write().unwrap_or(0).min(chunk.len() as u64) as usize;
                    if permit == 0 || out.write(&chunk[..permit]).is_err() {
                        break;
                    }
                    written += permit as u64;
                }
                written
            }
            "errmsg" => {
                return Err(AgentError {
                    code: "too_much".into(),
                    message: "e".repeat((n as usize) << 20),
                });
            }
            "bigsteps" => {
                let detail = format!("\"{}\"", "s".repeat(60 << 10));
                for _ in 0..n {
                    step::add("big", &detail);
                }
                n
            }
            "bigargs" => {
                let args = format!(
                    r#"{{"op":"set","key":"k","value":"{}"}}"#,
                    "a".repeat((n as usize) << 20)
                );
                let deep = format!(
                    r#"{{"op":"set","key":"k","value":{}{}}}"#,
                    "[".repeat(200),
                    "]".repeat(200)
                );
                let refused = |text: &str| matches!(tools::call("kv", text), Err(tools::Error::InvalidArguments(_)));
                u64::from(refused(&args)) + u64::from(refused(&deep))
            }
            "bigchat" => {
                let user = |content: String| llm::Message {
                    role: llm::Role::User,
                    content,
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                };
                let opts = || llm::Options {
                    model: None,
                    temperature: None,
                    max_tokens: None,
                    stop: Vec::new(),
                };
                let tool = |i: usize, params: usize| llm::ToolDefinition {
                    name: format!("t{i}"),
                    description: String::new(),
                    parameters: format!(
                        r#"{{"type":"object","properties":{{{}}}}}"#,
                        (0..params)
                            .map(|p| format!(r#""p{p}":{{"type":"string"}}"#))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                };
                let refused = |r: Result<llm::Completion, llm::Error>| matches!(r, Err(llm::Error::InvalidRequest(_)));
                let big = llm::chat(&[user("m".repeat((n as usize) << 20))], &[], &opts());
                let many: Vec<_> = (0..1000).map(|i| tool(i, 1)).collect();
                let tools_refused = llm::chat(&[user("hi".into())], &many, &opts());
                let wide: Vec<_> = (0..100).map(|i| tool(i, 1000)).collect();
                let amplified = llm::chat(&[user("x".repeat(100 << 10))], &wide, &opts());
                let answer = amplified.map(|c| c.tool_calls.iter().map(|t| t.arguments.len()).sum::<usize>());
                return Ok(format!(
                    r#"{{"big_refused":{},"tools_refused":{},"amplified_bytes":{}}}"#,
                    refused(big),
                    refused(tools_refused),
                    answer.map_or(-1, |b| b as i64)
                ));
            }
            "child" | "bigchild" => {
                let inner = match name.as_str() {
                    "child" => input
                        .trim()
                        .trim_matches('"')
                        .split_once(' ')
                        .map_or("", |(_, rest)| rest)
                        .to_owned(),
                    _ => "x".repeat(n as usize),
                };
                let args = format!(r#"{{"agent":"rogue","input":"{inner}"}}"#);
                return match tools::call("agent_call", &args) {
                    Ok(answer) => Ok(answer),
                    Err(e) => Ok(format!(
                        r#"{{"tool_error":"{}"}}"#,
                        format!("{e:?}").replace(['"', '\\'], "'")
                    )),
                };
            }
            "full" => {
                let line = "l".repeat(100);
                for _ in 0..20_000 {
                    log::write(log::Level::Info, &line);
                }
                let detail = format!("\"{}\"", "s".repeat(60 << 10));
                for _ in 0..1_000 {
                    step::add("full", &detail);
                }
                let value = format!(r#"{{"op":"set","key":"k","value":"{}"}}"#, "v".repeat(60 << 10));
                for _ in 0..100 {
                    let _ = tools::call("kv", &value);
                }
                let mut out = String::with_capacity(3 << 20);
                out.push('"');
                out.push_str(&"o".repeat(3 << 20));
                out.push('"');
                return Ok(out);
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
