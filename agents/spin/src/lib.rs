//! `spin` (hostile): never returns; only fuel or the wall clock can stop it.

use serde_json::Value;
use warden_sdk::{AgentError, log};

fn run(_input: Value) -> Result<Value, AgentError> {
    log::info("spinning forever");
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

warden_sdk::agent!(run);
