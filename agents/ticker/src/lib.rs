//! `ticker`: logs `n` lines, `ms` milliseconds apart, then returns how many. Feeds
//! live event streams at a steady pace.

use serde::{Deserialize, Serialize};
use warden_sdk::{AgentError, log};

#[derive(Deserialize)]
struct Input {
    n: u32,
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    ticks: u32,
}

fn run(input: Input) -> Result<Output, AgentError> {
    for i in 0..input.n {
        log::info(format!("tick {i}"));
        std::thread::sleep(std::time::Duration::from_millis(input.ms));
    }
    Ok(Output { ticks: input.n })
}

warden_sdk::agent!(run);
