//! `chatty`: writes `lines` lines each to stdout, stderr and the log import, then
//! returns how many it wrote. Exercises the run log's capture and caps.

use serde::{Deserialize, Serialize};
use warden_sdk::{AgentError, log};

#[derive(Deserialize)]
struct Input {
    lines: u32,
}

#[derive(Serialize)]
struct Output {
    written: u32,
}

fn run(input: Input) -> Result<Output, AgentError> {
    for i in 0..input.lines {
        println!("stdout line {i}");
        eprintln!("stderr line {i}");
        log::debug(format!("log line {i}"));
    }
    // A last line without a newline is still captured.
    print!("no newline at the end");
    Ok(Output { written: input.lines })
}

warden_sdk::agent!(run);
