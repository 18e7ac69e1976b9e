//! Cold start: deploy (validate + compile + store) of the echo agent and of a
//! ~2 MB component (`bench/components/bulky`, built by bench/run), then the time
//! until a host with 100 more agents deployed is ready again after a restart —
//! loading every component from the on-disk compiled cache (each artifact checked
//! against its recorded digest first), compiling none; and what that check costs
//! for one 40 MB artifact.
//!
//! `cargo bench -p warden-host --bench coldstart` (env BENCH_BULKY: the 2 MB
//! component; skipped when absent). Prints `RESULT {json}` lines for bench/run.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::Config;
use warden_host::manifest::Manifest;

warden_host::use_mimalloc!();

const AGENTS: usize = 100;

fn result(what: &str, ms: f64) {
    println!("{what:<58} {ms:>9.1} ms");
    println!("RESULT {}", json!({ "what": what, "ms": ms }));
}

/// `bytes` with a custom section appended: another component to the content hash
/// (so another compilation), the same code.
fn variant(bytes: &[u8], i: usize) -> Vec<u8> {
    let name = b"warden-bench";
    let payload = i.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(size as u8); // < 128: one LEB128 byte
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

async fn deploy(app: &App, name: &str, bytes: Vec<u8>) -> anyhow::Result<f64> {
    let manifest = Manifest::from_json(&format!(r#"{{"name":"{name}"}}"#)).map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    app.deployer
        .deploy(DEFAULT_WORKSPACE, manifest, Bytes::from(bytes))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tmp = tempfile::tempdir()?;
        let config = Config {
            data_dir: tmp.path().to_path_buf(),
            deploy_examples: false,
            ..Config::default()
        };
        let echo = std::fs::read(warden_host::bundled::agent_path("echo").ok_or_else(|| anyhow::anyhow!("no echo"))?)?;
        let app = App::open(config.clone()).await?;
        let ms = deploy(&app, "echo", echo.clone()).await?;
        result(&format!("deploy echo ({} KB)", echo.len() / 1000), ms);
        let bulky = std::env::var_os("BENCH_BULKY").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-wasm/wasm32-wasip2/release/bulky.wasm")
        });
        match std::fs::read(&bulky) {
            Ok(bytes) => {
                let size = bytes.len();
                let ms = deploy(&app, "bulky", bytes).await?;
                result(&format!("deploy a {:.1} MB component", size as f64 / 1e6), ms);
            }
            Err(e) => println!(
                "skipping the 2 MB component ({}: {e}); bench/run builds it",
                bulky.display()
            ),
        }
        let start = Instant::now();
        for i in 0..AGENTS {
            deploy(&app, &format!("echo-{i}"), variant(&echo, i)).await?;
        }
        let each = start.elapsed().as_secs_f64() * 1000.0 / AGENTS as f64;
        result(&format!("deploy {AGENTS} distinct echo variants, each"), each);
        let agents = app.registry.len();
        app.close().await;
        drop(app);

        let start = Instant::now();
        let app = App::open(config).await?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let (compiled, loaded) = app.runtime.cache_counts();
        anyhow::ensure!(compiled == 0, "the restart compiled {compiled} components");
        anyhow::ensure!(
            app.registry.len() == agents,
            "{} of {agents} agents back",
            app.registry.len()
        );
        let artifacts: u64 = std::fs::read_dir(tmp.path().join("compiled"))?
            .flatten()
            .flat_map(|engine| std::fs::read_dir(engine.path()).into_iter().flatten().flatten())
            .filter_map(|f| f.metadata().ok().map(|m| m.len()))
            .sum();
        result(
            &format!(
                "restart with {agents} agents deployed: ready ({loaded} loaded and verified, {:.0} MB of artifacts, \
                 {compiled} compiled)",
                artifacts as f64 / 1e6
            ),
            ms,
        );
        app.close().await;

        // What verifying costs per artifact: read it and hash it (SHA-256), as a
        // restart does before loading one, for a 40 MB artifact.
        let big = tmp.path().join("big.cwasm");
        std::fs::write(&big, vec![0x5au8; 40 << 20])?;
        let start = Instant::now();
        let bytes = std::fs::read(&big)?;
        let digest = warden_host::digest::sha256_hex(&bytes);
        anyhow::ensure!(digest.len() == 64);
        result(
            "verify a 40 MB compiled artifact before loading it (read + SHA-256)",
            start.elapsed().as_secs_f64() * 1000.0,
        );
        anyhow::Ok(())
    })
}
