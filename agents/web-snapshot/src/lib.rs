//! `web-snapshot`: given URLs, opens each in the host's headless browser, stores a
//! screenshot of each (a PNG artifact) and returns their titles and artifact ids.

use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_sdk::{AgentError, log, tools};

#[derive(Deserialize)]
struct Input {
    urls: Vec<String>,
}

#[derive(Serialize)]
struct Snapshot {
    url: String,
    title: String,
    artifact_id: String,
}

#[derive(Serialize)]
struct Output {
    snapshots: Vec<Snapshot>,
}

fn run(input: Input) -> Result<Output, AgentError> {
    if input.urls.is_empty() {
        return Err(AgentError::invalid_input("give at least one URL"));
    }
    let mut snapshots = Vec::new();
    for url in input.urls {
        log::info(format!("opening {url}"));
        let page = tools::call("browser", &json!({ "url": url }))?;
        snapshots.push(Snapshot {
            title: page["title"].as_str().unwrap_or_default().to_owned(),
            artifact_id: page["artifact_id"].as_str().unwrap_or_default().to_owned(),
            url,
        });
    }
    Ok(Output { snapshots })
}

warden_sdk::agent!(run);
