//! `hog` (hostile): allocates 1 MiB blocks and keeps them until memory runs out.

use serde_json::Value;
use warden_sdk::{AgentError, log};

fn run(_input: Value) -> Result<Value, AgentError> {
    log::info("allocating until stopped");
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

warden_sdk::agent!(run);
