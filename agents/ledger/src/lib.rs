//! `ledger`: the fixture of durable-run tests. It reads the wall clock, the
//! monotonic clock and randomness, makes `calls` model calls (with `model`) or
//! `kv` reads, then optionally a POST (`post_url`, a write that must never be
//! made twice) and an approval request (`approve`), logging and recording a
//! step around each. Its output holds everything it observed, so a run resumed
//! by replay can be compared with one left alone.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};
use warden_sdk::llm::{self, Message};
use warden_sdk::{AgentError, approval, log, step, tools};

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    calls: u32,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    post_url: Option<String>,
    #[serde(default)]
    approve: Option<String>,
    #[serde(default)]
    approve_timeout_secs: Option<u64>,
}

fn run(input: Input) -> Result<Value, AgentError> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mono = Instant::now();
    let random = RandomState::new().hash_one(42u64);
    log::info(format!("start wall={wall} random={random}"));
    let mut answers = Vec::new();
    for i in 0..input.calls {
        let answer = match &input.model {
            Some(model) => {
                let mut options = llm::options();
                options.model = Some(model.clone());
                let c = llm::chat(&[Message::user(format!("call {i}"))], &[], &options)?;
                c.content
            }
            None => tools::call("kv", &json!({ "op": "get", "key": format!("k{i}") }))?.to_string(),
        };
        log::info(format!("call {i} answered"));
        step("call", &json!({ "i": i }));
        answers.push(answer);
    }
    let posted = match &input.post_url {
        Some(url) => {
            let r = tools::call("http_fetch", &json!({ "url": url, "method": "POST", "body": "once" }))?;
            log::info("posted");
            Some(r["status"].clone())
        }
        None => None,
    };
    let decision = match &input.approve {
        Some(title) => {
            let mut request = approval::request(title, &json!({ "answers": answers.len() }));
            request.timeout_secs = input.approve_timeout_secs;
            let data = approval::require(&request)?;
            log::info("approved");
            Some(data.unwrap_or(Value::Null))
        }
        None => None,
    };
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(json!({
        "wall": wall,
        "random": random,
        "answers": answers,
        "posted": posted,
        "decision": decision,
        "later": after >= wall,
        "monotonic_ok": mono.elapsed().as_nanos() < u128::from(u64::MAX),
    }))
}

warden_sdk::agent!(run);
