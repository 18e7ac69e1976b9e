//! `crash` (hostile): panics, which the host sees as a trap.

use serde_json::Value;
use warden_sdk::{AgentError, log};

fn run(_input: Value) -> Result<Value, AgentError> {
    log::info("about to panic");
    panic!("crash agent panicked on purpose");
}

warden_sdk::agent!(run);
