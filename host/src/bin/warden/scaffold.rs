//! `warden new`: a new agent's directory in Rust, Python or TypeScript, its
//! manifest and a greeting agent to start from, ready for `warden build`.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::build::{Lang, sdk, write_sdk};

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
        "description": "Greets someone, up to 10 times.",
        "version": "0.1.0",
        "limits": { "timeout_ms": 10_000 },
        // The host checks input against it before a run (TypeScript's types
        // are gone by then).
        "input_schema": {
            "type": "object",
            "properties": { "name": { "type": "string" }, "times": { "type": "integer", "minimum": 1 } },
            "required": ["name"]
        }
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
            // The SDK goes with the crate (and the world it is built from):
            // the agent builds wherever it is checked out.
            write_sdk(&dir.join("warden-sdk"), &["rust/", "wit/"])?;
            files.push((dir.join("Cargo.toml"), rust_cargo(name)));
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

fn rust_cargo(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# The SDK this warden ships, written beside the crate by `warden new`.
warden-sdk = {{ path = "warden-sdk/rust" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
"#
    )
}

// A new agent starts as the `hello` example of its language: the very agents
// the tests build and run.
const PYTHON_TEMPLATE: &str = include_str!("../../../../agents/python/hello/agent.py");
const JS_TEMPLATE: &str = include_str!("../../../../agents/js/hello/agent.ts");
const RUST_TEMPLATE: &str = include_str!("../../../../agents/hello/src/lib.rs");
