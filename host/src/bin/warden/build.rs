//! `warden new`, `warden build` and `warden deploy DIR`: an agent's directory
//! (its `manifest.json` and source) scaffolded in Rust, Python or
//! JavaScript/TypeScript, built into a component with its language's
//! toolchain, and deployed. Rust builds with `cargo` for `wasm32-wasip2`;
//! Python with `componentize-py` (a venv); JavaScript and TypeScript are
//! bundled by `rolldown` and built with the QuickJS-based `componentize-qjs`
//! (npm). The Python and JavaScript toolchains are installed into a cache on
//! first use (`~/.cache/warden`). The SDKs and the WIT world ship inside this
//! binary and are written into the cache, so a build needs no checkout of
//! Warden. An agent's own packages come as its ecosystem has them: a Python
//! agent's `requirements.txt` (pure-Python wheels, installed with pip into the
//! build), a JavaScript one's `package.json` dependencies (installed with npm,
//! bundled with its code).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The componentize-py release the Python SDK is built and tested with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The CPython componentize-py embeds: what an agent's own Python packages
/// are chosen for.
const GUEST_PYTHON: &str = "3.14";
/// The npm packages JavaScript and TypeScript agents are built with.
const JS_TOOLS: &[&str] = &["componentize-qjs@0.4.5", "rolldown@1.3.3"];

/// The files of the SDKs and of the world, by their path in the cache.
const SDK: &[(&str, &str)] = &[
    ("wit/agent.wit", include_str!("../../../../wit/agent.wit")),
    ("wit/deps/cli.wit", include_str!("../../../../wit/deps/cli.wit")),
    ("wit/deps/clocks.wit", include_str!("../../../../wit/deps/clocks.wit")),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../../wit/deps/filesystem.wit"),
    ),
    ("wit/deps/http.wit", include_str!("../../../../wit/deps/http.wit")),
    ("wit/deps/io.wit", include_str!("../../../../wit/deps/io.wit")),
    ("wit/deps/random.wit", include_str!("../../../../wit/deps/random.wit")),
    ("wit/deps/sockets.wit", include_str!("../../../../wit/deps/sockets.wit")),
    ("rust/Cargo.toml", include_str!("../../../../guest-sdk/Cargo.toml")),
    ("rust/src/lib.rs", include_str!("../../../../guest-sdk/src/lib.rs")),
    (
        "python/warden/__init__.py",
        include_str!("../../../../guest-sdk/python/warden/__init__.py"),
    ),
    (
        "python/warden/_agent.py",
        include_str!("../../../../guest-sdk/python/warden/_agent.py"),
    ),
    (
        "python/warden/_step.py",
        include_str!("../../../../guest-sdk/python/warden/_step.py"),
    ),
    (
        "python/warden/approval.py",
        include_str!("../../../../guest-sdk/python/warden/approval.py"),
    ),
    (
        "python/warden/artifacts.py",
        include_str!("../../../../guest-sdk/python/warden/artifacts.py"),
    ),
    (
        "python/warden/conversation.py",
        include_str!("../../../../guest-sdk/python/warden/conversation.py"),
    ),
    (
        "python/warden/http.py",
        include_str!("../../../../guest-sdk/python/warden/http.py"),
    ),
    (
        "python/warden/llm.py",
        include_str!("../../../../guest-sdk/python/warden/llm.py"),
    ),
    (
        "python/warden/log.py",
        include_str!("../../../../guest-sdk/python/warden/log.py"),
    ),
    (
        "python/warden/memory.py",
        include_str!("../../../../guest-sdk/python/warden/memory.py"),
    ),
    (
        "python/warden/tools.py",
        include_str!("../../../../guest-sdk/python/warden/tools.py"),
    ),
    (
        "js/warden/package.json",
        include_str!("../../../../guest-sdk/js/warden/package.json"),
    ),
    (
        "js/warden/index.js",
        include_str!("../../../../guest-sdk/js/warden/index.js"),
    ),
    (
        "js/warden/errors.js",
        include_str!("../../../../guest-sdk/js/warden/errors.js"),
    ),
    (
        "js/warden/http.js",
        include_str!("../../../../guest-sdk/js/warden/http.js"),
    ),
    (
        "js/warden/index.d.ts",
        include_str!("../../../../guest-sdk/js/warden/index.d.ts"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    /// JavaScript or TypeScript (`agent.js` or `agent.ts`).
    Js,
}

/// What language the agent in `dir` is written in.
fn detect(dir: &Path) -> anyhow::Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("agent.py").is_file() {
        Ok(Lang::Python)
    } else if js_entry(dir).is_some() {
        Ok(Lang::Js)
    } else {
        bail!(
            "{} holds no agent: expected Cargo.toml (Rust), agent.py (Python) or agent.ts / agent.js \
             (TypeScript, JavaScript) next to manifest.json",
            dir.display()
        )
    }
}

/// The agent's name, from its manifest.
fn name_of(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    manifest["name"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} names no agent (\"name\")", path.display()))
}

/// Where toolchains and the SDKs are kept: `$WARDEN_CACHE`, else
/// `$XDG_CACHE_HOME/warden`, else `~/.cache/warden`.
fn cache() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WARDEN_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("warden"));
    }
    let home = std::env::var_os("HOME").context("no HOME for the build cache: set WARDEN_CACHE")?;
    Ok(PathBuf::from(home).join(".cache/warden"))
}

/// This binary's SDKs and world, written into the cache (again each time:
/// a few files, and never stale).
pub(crate) fn sdk() -> anyhow::Result<PathBuf> {
    let root = cache()?.join("sdk").join(env!("CARGO_PKG_VERSION"));
    write_sdk(&root, &[""])?;
    Ok(root)
}

/// Writes the SDK's files whose paths start with one of `parts` under `root`
/// (those unchanged are left as they are). The Rust SDK finds the world at
/// `../wit`.
pub(crate) fn write_sdk(root: &Path, parts: &[&str]) -> anyhow::Result<()> {
    for (path, text) in SDK.iter().filter(|(path, _)| parts.iter().any(|p| path.starts_with(p))) {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if std::fs::read_to_string(&file).ok().as_deref() != Some(*text) {
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(())
}

/// Runs a toolchain's command; what it prints goes to stderr (stdout is the
/// CLI's answer).
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("{what}: could not start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// componentize-py, installed into the cache on first use.
fn componentize_py() -> anyhow::Result<PathBuf> {
    let venv = cache()?.join("toolchains").join(COMPONENTIZE_PY.replace("==", "-"));
    let bin = venv.join("bin/componentize-py");
    if !bin.is_file() {
        eprintln!("installing {COMPONENTIZE_PY} into {} (once)", venv.display());
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "creating a Python venv (python3 -m venv)",
        )?;
        run(
            Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                COMPONENTIZE_PY,
            ]),
            "installing componentize-py",
        )?;
    }
    Ok(bin)
}

/// Builds the agent in `dir`; returns its component's path (`out`, or
/// `DIR/build/NAME.wasm`).
pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let name = name_of(dir)?;
    let out = match out {
        Some(out) => out.to_path_buf(),
        None => dir.join("build").join(format!("{name}.wasm")),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    match detect(dir)? {
        Lang::Rust => build_rust(dir, &out)?,
        Lang::Python => build_python(dir, &out)?,
        Lang::Js => build_js(dir, &out)?,
    }
    Ok(out)
}

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let output = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("could not start cargo (is Rust installed, with `rustup target add wasm32-wasip2`?)")?;
    if !output.status.success() {
        bail!("cargo build failed ({})", output.status);
    }
    // The component is the cdylib artifact cargo reports.
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
        .context("cargo built no .wasm: is the crate a cdylib (`crate-type = [\"cdylib\"]`)?")?;
    std::fs::copy(&built, out).with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    Ok(())
}

fn build_python(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let tool = componentize_py()?;
    let sdk = sdk()?;
    // The component's entry module (the agent's, then the SDK's export), and
    // a copy of the agent's source: snapshotting imports it, and the
    // bytecode that leaves stays out of the agent's directory.
    let work = temp_dir()?;
    let entry = work.path();
    let source = entry.join("agent-src");
    copy_source(dir, &source)?;
    std::fs::write(
        entry.join("warden_entry.py"),
        "import agent  # noqa: F401 (registers the agent)\nfrom warden._agent import WitWorld  # noqa: F401\n",
    )?;
    let mut componentize = Command::new(&tool);
    componentize
        .arg("-d")
        .arg(sdk.join("wit"))
        .args(["-w", "agent-http", "componentize", "warden_entry"])
        .arg("-p")
        .arg(entry)
        .arg("-p")
        .arg(&source)
        .arg("-p")
        .arg(sdk.join("python"));
    // Its own packages: wheels any platform runs (the component cannot load
    // native extensions), for the CPython it embeds, after the SDK on the path.
    let requirements = std::path::absolute(dir.join("requirements.txt"))?;
    if requirements.is_file() {
        let site = entry.join("site-packages");
        run(
            Command::new(tool.with_file_name("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "--no-input"])
                .args(["--only-binary=:all:", "--platform", "any", "--implementation", "py"])
                .args(["--python-version", GUEST_PYTHON, "--target"])
                .arg(&site)
                .arg("-r")
                .arg(&requirements)
                .current_dir(dir),
            "installing the agent's packages (pip install -r requirements.txt: pure-Python wheels only, \
             as the component cannot load native extensions)",
        )?;
        componentize.arg("-p").arg(&site);
    }
    run(componentize.arg("-o").arg(out), "componentize-py")
}

/// Whether an agent's `package.json` (if it has one) names dependencies.
fn has_dependencies(package: &Path) -> anyhow::Result<bool> {
    let text = match std::fs::read_to_string(package) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", package.display())),
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", package.display()))?;
    Ok(json["dependencies"].as_object().is_some_and(|d| !d.is_empty()))
}

/// A JavaScript or TypeScript agent's module.
fn js_entry(dir: &Path) -> Option<&'static str> {
    ["agent.ts", "agent.js"].into_iter().find(|f| dir.join(f).is_file())
}

/// componentize-qjs and rolldown, installed into the cache on first use.
fn js_tools() -> anyhow::Result<PathBuf> {
    let dir = cache()?.join("toolchains").join(JS_TOOLS.join("+").replace('@', "-"));
    if !dir.join("node_modules/.bin/componentize-qjs").is_file() || !dir.join("node_modules/.bin/rolldown").is_file() {
        eprintln!("installing {} into {} (once)", JS_TOOLS.join(" "), dir.display());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&dir)
                .args(JS_TOOLS),
            "installing the JavaScript toolchain (npm install)",
        )?;
    }
    Ok(dir.join("node_modules/.bin"))
}

fn build_js(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let bin = js_tools()?;
    let sdk = sdk()?;
    let entry = js_entry(dir).context("no agent.ts or agent.js")?;
    // The agent's source with the SDK as its `warden` package, bundled into
    // one module: the world's imports stay imports.
    let work = temp_dir()?;
    let work = work.path();
    {
        copy_source(dir, work)?;
        // Its own packages, as npm installs them (from its lockfile if it has
        // one); then the SDK, which npm would prune as a package it does not name.
        if has_dependencies(&work.join("package.json"))? {
            run(
                Command::new("npm")
                    .args([
                        "install",
                        "--omit=dev",
                        "--ignore-scripts",
                        "--no-audit",
                        "--no-fund",
                        "--silent",
                    ])
                    .current_dir(work),
                "installing the agent's packages (npm install)",
            )?;
        }
        copy_source(&sdk.join("js/warden"), &work.join("node_modules/warden"))?;
        std::fs::write(
            work.join("rolldown.config.mjs"),
            format!(
                "export default {{ input: {entry:?}, external: [/^warden:agent\\//], \
                 output: {{ file: \"bundle.js\", format: \"esm\" }} }};\n"
            ),
        )?;
        run(
            Command::new(bin.join("rolldown"))
                .args(["-c", "rolldown.config.mjs"])
                .current_dir(work),
            "bundling the agent (rolldown)",
        )?;
        run(
            Command::new(bin.join("componentize-qjs"))
                .arg("--wit")
                .arg(sdk.join("wit"))
                .args(["--world", "agent", "--sync", "--js"])
                .arg(work.join("bundle.js"))
                .arg("-o")
                .arg(std::path::absolute(out)?),
            "componentize-qjs",
        )
    }
}

/// Copies an agent's source, leaving out what builds make.
fn copy_source(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(
            name.to_str(),
            Some("build" | "target" | "__pycache__" | ".git" | "node_modules" | ".venv" | "venv")
        ) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_source(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// A fresh private directory for a build (removed when dropped).
fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("warden-build-")
        .tempdir()
        .context("creating a directory for the build")
}
