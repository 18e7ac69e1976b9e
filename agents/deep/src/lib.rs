//! `deep` (hostile): unbounded recursion; the host must stop it with a trap.

use serde_json::Value;
use warden_sdk::AgentError;

/// Recurses until `n` reaches `stop`, which no stack allows.
#[inline(never)]
fn down(n: u64, stop: u64) -> u64 {
    if n >= stop {
        return n;
    }
    std::hint::black_box(down(std::hint::black_box(n + 1), stop)) + 1
}

fn run(_input: Value) -> Result<Value, AgentError> {
    Ok(Value::from(down(0, u64::MAX)))
}

warden_sdk::agent!(run);
