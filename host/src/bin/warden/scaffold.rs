//! `warden new`: a new agent's directory in Rust, Python or TypeScript, its
//! manifest and a greeting agent to start from, ready for `warden build`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::build::{Lang, sdk};

/// Scaffolds the agent `name` in a new directory of that name.
pub fn new(name: &str, lang: Lang) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!("an agent's name is 1 to 64 lowercase letters, digits, - and _");
    }
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = serde_json::json!({
        "name": name,
        "description": "Greets someone.",
        "version": "0.1.0",
        "limits": { "timeout_ms": 10_000 }
    });
    let mut files: Vec<(PathBuf, String)> = vec![
        (dir.join("manifest.json"), format!("{:#}\n", manifest)),
        (dir.join(".gitignore"), "build/\ntarget/\n__pycache__/\n".into()),
    ];
    match lang {
        Lang::Python => files.push((dir.join("agent.py"), PYTHON_TEMPLATE.into())),
        Lang::Js => {
            // An editor finds the SDK's types (the package's `types`) where
            // the bundler finds its code (the package's `main`).
            let types = sdk()?.join("js/warden");
            let tsconfig = serde_json::json!({
                "compilerOptions": {
                    "target": "es2022", "module": "es2022", "moduleResolution": "bundler", "strict": true,
                    "noEmit": true, "paths": { "warden": [types] }
                }
            });
            files.push((dir.join("agent.ts"), JS_TEMPLATE.into()));
            files.push((dir.join("tsconfig.json"), format!("{tsconfig:#}\n")));
        }
        Lang::Rust => {
            let sdk = sdk()?.join("rust");
            files.push((dir.join("Cargo.toml"), rust_cargo(name, &sdk)));
            files.push((dir.join("src/lib.rs"), RUST_TEMPLATE.into()));
        }
    }
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

fn rust_cargo(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# The SDK this warden ships, written into its cache.
warden-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
"#,
        sdk = sdk.display()
    )
}

const PYTHON_TEMPLATE: &str = r#""""An agent: JSON in (checked against `Input`), JSON out."""

from dataclasses import dataclass

import warden


@dataclass
class Input:
    name: str
    times: int = 1


@warden.agent
def run(input: Input) -> dict:
    if input.times > 10:
        raise warden.AgentError("too_many", "at most 10 greetings")
    warden.log.info(f"greeting {input.name} {input.times} time(s)")
    warden.step("greet", {"name": input.name, "times": input.times})
    return {"greeting": " ".join([f"Hello, {input.name}!"] * input.times)}
"#;

const JS_TEMPLATE: &str = r#"// An agent: JSON in, JSON out (the manifest's input_schema checks the input).

import { AgentError, agent, log, step } from "warden";

interface Input {
  name: string;
  times?: number;
}

export const run = agent((input: Input) => {
  const times = input.times ?? 1;
  if (times > 10) {
    throw new AgentError("too_many", "at most 10 greetings");
  }
  log.info(`greeting ${input.name} ${times} time(s)`);
  step("greet", { name: input.name, times });
  return { greeting: Array(times).fill(`Hello, ${input.name}!`).join(" ") };
});
"#;

const RUST_TEMPLATE: &str = r#"//! An agent: JSON in (checked against `Input`), JSON out.

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
    step("greet", &serde_json::json!({ "name": input.name, "times": input.times }));
    let greeting = vec![format!("Hello, {}!", input.name); input.times as usize].join(" ");
    Ok(Output { greeting })
}

warden_sdk::agent!(run);
"#;
