//! `hello`: the README's SDK example. Typed input and output; an input that does
//! not fit fails with `invalid_input` before `run` is called.

use serde::{Deserialize, Serialize};
use warden_sdk::{AgentError, log, step};

#[derive(Deserialize)]
struct Input {
    name: String,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

fn run(input: Input) -> Result<Output, AgentError> {
    if input.times > 10 {
        return Err(AgentError::new("too_many", "at most 10 greetings"));
    }
    log::info(format!("greeting {} {} time(s)", input.name, input.times));
    step(
        "greet",
        &serde_json::json!({ "name": input.name, "times": input.times }),
    );
    let greeting = vec![format!("Hello, {}!", input.name); input.times as usize].join(" ");
    Ok(Output { greeting })
}

warden_sdk::agent!(run);
