//! `sleepy`: sleeps for `ms` milliseconds. The sleep is a WASI clock subscription,
//! so the guest is parked in a host call, not running wasm; only the host's
//! wall-clock deadline can stop it early.

use serde::{Deserialize, Serialize};
use warden_sdk::{AgentError, log};

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    slept_ms: u64,
}

fn run(input: Input) -> Result<Output, AgentError> {
    log::info(format!("sleeping {} ms", input.ms));
    std::thread::sleep(std::time::Duration::from_millis(input.ms));
    Ok(Output { slept_ms: input.ms })
}

warden_sdk::agent!(run);
