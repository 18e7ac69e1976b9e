//! Live event streams under load: `EXECUTIONS` running `ticker` executions (a log
//! line every 20 ms), each watched by `SUBSCRIBERS` SSE clients over HTTP on
//! 127.0.0.1 (1,000 subscribers by default). Prints delivery latency of live events
//! (receipt time minus the event's timestamp, millisecond resolution; backlog sent
//! on connecting is not timed), events delivered, and the
//! process's resident memory before and during the streams (clients included:
//! they run in this process).
//!
//! `cargo bench -p warden-host --bench events` (env: BENCH_EXECUTIONS, default 10;
//! BENCH_SUBSCRIBERS per execution, default 100).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::Config;
use warden_host::manifest::Manifest;

warden_host::use_mimalloc!();

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

const TICKS: u32 = 100;
const TICK_MS: u64 = 20;

fn main() -> anyhow::Result<()> {
    let executions = env("BENCH_EXECUTIONS", 10);
    let subscribers = env("BENCH_SUBSCRIBERS", 100);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let config = Config {
        data_dir: tmp.path().to_path_buf(),
        deploy_examples: false,
        ..Config::default()
    };
    let (base, app) = server_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = App::open(config).await?;
        let path = warden_host::bundled::agent_path("ticker").ok_or_else(|| anyhow::anyhow!("ticker not built"))?;
        let manifest = Manifest::from_json(r#"{"name":"ticker","max_concurrency":100,"limits":{"timeout_ms":600000}}"#)
            .map_err(|e| anyhow::anyhow!(e))?;
        app.deployer
            .deploy(DEFAULT_WORKSPACE, manifest, Bytes::from(std::fs::read(path)?))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let served = Arc::clone(&app);
        tokio::spawn(async move { warden_host::server::serve(listener, served, std::future::pending()).await });
        anyhow::Ok((format!("http://{addr}"), app))
    })?;
    let before = rss_mib();

    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (latencies, delivered, peak) = client_rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(subscribers * executions)
            .build()?;
        let mut ids = Vec::new();
        for _ in 0..executions {
            let body = json!({ "input": { "n": TICKS, "ms": TICK_MS }, "mode": "async" });
            let accepted: Value = http
                .post(format!("{base}/v1/agents/ticker/execute"))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            ids.push(accepted["id"].as_str().unwrap_or_default().to_owned());
        }
        let mut tasks = Vec::new();
        for id in &ids {
            for _ in 0..subscribers {
                let (http, url) = (http.clone(), format!("{base}/v1/executions/{id}/stream"));
                tasks.push(tokio::spawn(async move {
                    let mut resp = http.get(url).send().await?;
                    // Events from before this subscriber connected are its backlog,
                    // not live delivery: they are counted, not timed.
                    let connected = chrono::Utc::now().timestamp_millis();
                    let mut lat = Vec::new();
                    let mut n = 0usize;
                    let mut buf = String::new();
                    while let Some(chunk) = resp.chunk().await? {
                        let now = chrono::Utc::now().timestamp_millis();
                        buf.push_str(&String::from_utf8_lossy(&chunk));
                        while let Some(end) = buf.find("\n\n") {
                            let block: String = buf.drain(..end + 2).collect();
                            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                                let v: Value = serde_json::from_str(data).unwrap_or_default();
                                n += 1;
                                if v["type"] == "log"
                                    && let Some(ts) = v["ts"]
                                        .as_str()
                                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                    && ts.timestamp_millis() >= connected
                                {
                                    lat.push(now - ts.timestamp_millis());
                                }
                            }
                        }
                    }
                    anyhow::Ok((lat, n))
                }));
            }
        }
        let sampler = tokio::spawn(async {
            let mut peak: f64 = 0.0;
            for _ in 0..((TICKS as u64 * TICK_MS) / 100 + 20) {
                peak = peak.max(rss_mib());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        let mut latencies = Vec::new();
        let mut delivered = 0;
        for t in tasks {
            let (lat, n) = t.await??;
            latencies.extend(lat);
            delivered += n;
        }
        let peak = sampler.await?;
        anyhow::Ok((latencies, delivered, peak))
    })?;
    let mut latencies = latencies;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "events: {executions} executions x {subscribers} subscribers = {} SSE streams; events delivered {delivered}",
        executions * subscribers
    );
    println!(
        "delivery latency of log events: n={} p50={} ms p99={} ms max={} ms",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    println!("resident memory: {before:.1} MiB before the streams, peak {peak:.1} MiB during them (clients included)");
    drop(app);
    Ok(())
}
