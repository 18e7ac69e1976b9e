//! Cancel latency: from a cancel request to the execution's `cancelled` record
//! being committed, for guests spinning in wasm (`spin`) and for guests parked in
//! a host call (`sleepy`). In process, no HTTP.
//!
//! Two shapes: one execution at a time (100 rounds), and 50 running at once on the
//! 2-core machine, all cancelled together (4 rounds).
//!
//! `cargo bench -p warden-host --bench cancel`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;
use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::Config;
use warden_host::executions::{NewExecution, Target};
use warden_host::manifest::Manifest;
use warden_host::record::{Status, Trigger};

warden_host::use_mimalloc!();

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
        let app = App::open(config).await?;
        let batch = 50;
        for (agent, input) in [("spin", "null"), ("sleepy", r#"{"ms":3600000}"#)] {
            let path = warden_host::bundled::agent_path(agent).ok_or_else(|| anyhow::anyhow!("{agent} not built"))?;
            let manifest = Manifest::from_json(&format!(
                r#"{{"name":"{agent}","max_concurrency":{batch},"limits":{{"fuel":1000000000000,"timeout_ms":600000}}}}"#
            ))
            .map_err(|e| anyhow::anyhow!(e))?;
            app.deployer.deploy(DEFAULT_WORKSPACE, manifest, Bytes::from(std::fs::read(path)?)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            for (together, rounds) in [(1, 100), (batch, 4)] {
                let lat = measure(&app, agent, input, together, rounds).await?;
                let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
                println!(
                    "cancel {agent:<7} ({:<21}) {together:>3} at once: n={} p50={:?} p99={:?} max={:?}",
                    if agent == "spin" { "running wasm" } else { "parked in a host call" },
                    lat.len(),
                    pct(0.5),
                    pct(0.99),
                    lat[lat.len() - 1]
                );
            }
        }
        app.close().await;
        anyhow::Ok(())
    })
}

async fn measure(
    app: &Arc<App>,
    agent: &str,
    input: &str,
    batch: usize,
    rounds: usize,
) -> anyhow::Result<Vec<Duration>> {
    let entry = app
        .registry
        .get(DEFAULT_WORKSPACE, agent)
        .ok_or_else(|| anyhow::anyhow!("no {agent}"))?;
    let version = entry.latest().ok_or_else(|| anyhow::anyhow!("no version"))?.clone();
    let mut lat = Vec::new();
    for _ in 0..rounds {
        let mut ids = Vec::new();
        for _ in 0..batch {
            let new = NewExecution::new(
                Target::Version(version.meta.id.clone()),
                RawValue::from_string(input.into())?.into(),
                Trigger::Api,
            );
            let accepted = app.executions.submit(new).await?;
            ids.push((accepted.execution.id, accepted.done));
        }
        // Wait until every one of them runs.
        while app.executions.agent_load(&entry.agent.id) != (0, batch) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut waits = Vec::new();
        for (id, mut done) in ids {
            let app = Arc::clone(app);
            waits.push(tokio::spawn(async move {
                let start = Instant::now();
                app.executions.cancel(&id).await?;
                let ended = done.wait_for(Option::is_some).await?.clone();
                let elapsed = start.elapsed();
                anyhow::ensure!(
                    ended.is_some_and(|e| e.status == Status::Cancelled),
                    "{id} did not end cancelled"
                );
                anyhow::Ok(elapsed)
            }));
        }
        for w in waits {
            lat.push(w.await??);
        }
    }
    lat.sort();
    Ok(lat)
}
