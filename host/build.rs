//! Builds the agents under `agents/` for wasm32-wasip2 (release, their own target
//! directory) and generates `agents.rs`: the bundled examples embedded in the
//! binary and the paths of every built agent (the test fixtures).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// Agents `warden serve` deploys on a first start.
const EXAMPLES: &[&str] = &["echo", "hello", "support", "refund", "chat"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ has a parent").to_path_buf();
    let agents_dir = root.join("agents");
    for watched in ["agents", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("wasm-agents"),
        None => root.join("target").join("wasm-agents"),
    };

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&agents_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running cargo to build the agents");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "\n\nThe wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2` (the README's set-up does)."
        } else {
            ""
        };
        panic!("building the agents under agents/ failed:\n{stderr}{hint}");
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut names: Vec<String> = fs::read_dir(&agents_dir)
        .expect("listing agents/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();

    let mut code = String::from("/// Every agent built from agents/, by name, with its component's path.\n");
    code.push_str("pub const AGENT_PATHS: &[(&str, &str)] = &[\n");
    for name in &names {
        let wasm = wasm_file(&wasm_dir, name);
        code.push_str(&format!("    ({name:?}, {:?}),\n", wasm.display().to_string()));
    }
    code.push_str("];\n\n/// The examples `serve` deploys on a first start.\npub const EXAMPLES: &[Example] = &[\n");
    for name in EXAMPLES {
        let wasm = wasm_file(&wasm_dir, name);
        let manifest = agents_dir.join(name).join("manifest.json");
        code.push_str(&format!(
            "    Example {{ name: {name:?}, manifest: include_str!({:?}), wasm: include_bytes!({:?}) }},\n",
            manifest.display().to_string(),
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n\n");
    code.push_str("/// Calls `$m!(name)` for every agent under agents/ (`-` in a name becomes `_`):\n");
    code.push_str("/// a test suite checks with it that each agent has a test.\n#[macro_export]\n");
    code.push_str("macro_rules! foreach_agent {\n    ($m:ident) => {\n");
    for name in &names {
        code.push_str(&format!("        $m!({});\n", name.replace('-', "_")));
    }
    code.push_str("    };\n}\n");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out_dir.join("agents.rs"), code).expect("writing agents.rs");
}

fn wasm_file(dir: &Path, crate_name: &str) -> PathBuf {
    let path = dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.exists(),
        "agent {crate_name} built but {} is missing",
        path.display()
    );
    path
}
