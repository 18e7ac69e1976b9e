//! Echo throughput: (a) in process — instantiate + call in a fresh store, no HTTP,
//! no database; (b) end to end — HTTP sync execute against a real server on
//! 127.0.0.1 with every run recorded in SQLite.
//!
//! `cargo bench -p warden-host --bench echo` (env: BENCH_SECS per phase, default 5;
//! BENCH_CONNS, default "16,64", empty for none). Prints a `RESULT {json}` line per
//! in-process point for bench/run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::Config;
use warden_host::events::EventLog;
use warden_host::llm::Llm;
use warden_host::manifest::Manifest;
use warden_host::memory::Memory;
use warden_host::ports::{
    AgentCalls, ApprovalDesk, ArtifactStore, ChildOutcome, EffectRefused, Effects, Memories, Reach, ToolCtx, ToolError,
};
use warden_host::record::{Approval, Artifact, Status};
use warden_host::runtime::{Grants, MemoryGrant, RunArtifacts, Runtime};
use warden_host::store::Stores;
use warden_host::tools::Tools;

warden_host::use_mimalloc!();

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5.0),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU seconds (user + system) this process has used, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, in clock ticks of 1/100 s (USER_HZ on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

fn echo() -> (Manifest, Vec<u8>) {
    let example = warden_host::bundled::EXAMPLES
        .iter()
        .find(|e| e.name == "echo")
        .expect("echo is bundled");
    (
        Manifest::from_json(example.manifest).expect("manifest"),
        example.wasm.to_vec(),
    )
}

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = Config {
        data_dir: tmp.path().to_path_buf(),
        deploy_examples: false,
        max_concurrent_executions: 256,
        ..Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    // BENCH_SKIP_IN_PROCESS=1 runs only the end-to-end phase (for profiling).
    let in_process = if std::env::var_os("BENCH_SKIP_IN_PROCESS").is_some() {
        1.0
    } else {
        rt.block_on(in_process(&config))?
    };
    println!();
    let conns: Vec<usize> = std::env::var("BENCH_CONNS")
        .unwrap_or_else(|_| "16,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for c in conns {
        let e2e = end_to_end(&config, c)?;
        println!("ratio end-to-end({c}) / in-process: {:.2}", e2e / in_process);
    }
    Ok(())
}

/// (a): the runtime alone, `tasks` concurrent loops of instantiate + call.
async fn in_process(config: &Config) -> anyhow::Result<f64> {
    let runtime = Arc::new(Runtime::new(config)?);
    let (manifest, wasm) = echo();
    let limits = manifest.effective_limits(&config.limits, config.max_concurrent_executions);
    let (pre, _, _) = runtime
        .prepare("bench-echo", None, || Ok(wasm))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let input = r#"{"name":"bench","n":[1,2,3]}"#;
    let llm = Arc::new(Llm::new(&config.llm, &config.pricing)?);
    let stores = Stores::open(&config.data_dir)?;
    let tools = Arc::new(Tools::new(config.tools.clone(), &config.mcp, Arc::clone(&stores.kv))?);
    let children: Arc<dyn AgentCalls> = Arc::new(Nobody);
    let memory: Arc<dyn Memories> = Arc::new(Memory::new(&stores, config.memory));
    let capture = config.capture;
    let grants = move || {
        let events = Arc::new(EventLog::new("exec_bench", 0, None));
        let artifacts = Arc::new(RunArtifacts::new(
            "exec_bench",
            capture,
            Arc::new(Nobody),
            Arc::clone(&events),
            Arc::new(Nobody),
        ));
        Grants {
            llm: Arc::clone(&llm),
            tools: tools.clone(),
            models: Default::default(),
            model: None,
            token_budget: 0,
            allowed_tools: Default::default(),
            max_tool_calls: 0,
            ctx: ToolCtx {
                agent_id: "agt_bench".into(),
                workspace: "default".into(),
                execution_id: "exec_bench".into(),
                trace_id: None,
                span_id: None,
                depth: 0,
                allowed_hosts: Default::default(),
                mcp_servers: Default::default(),
                artifacts: artifacts.clone(),
                children: Arc::clone(&children),
                child_id: None,
            },
            events,
            artifacts,
            effects: Arc::new(Nobody),
            desk: Arc::new(Nobody),
            approval_grace: std::time::Duration::ZERO,
            pauses: Default::default(),
            journal: None,
            announced: (0, 0),
            memory: MemoryGrant {
                port: Arc::clone(&memory),
                conversation_id: None,
                session: None,
                stores: Vec::new(),
                history_budget: (0, 0),
            },
            streamed: Default::default(),
        }
    };
    // Warm up.
    for _ in 0..1000 {
        let out = runtime.run(&pre, input, limits, grants(), std::future::pending()).await;
        anyhow::ensure!(out.result.is_ok(), "echo failed: {:?}", out.result.err());
    }
    for tasks in [1usize, 2, 4] {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        let start = Instant::now();
        let cpu_start = cpu_seconds();
        for _ in 0..tasks {
            let (runtime, pre, stop, grants) = (Arc::clone(&runtime), pre.clone(), Arc::clone(&stop), grants.clone());
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(200_000);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let out = runtime.run(&pre, input, limits, grants(), std::future::pending()).await;
                    lat.push(t.elapsed());
                    if out.result.is_err() {
                        return Err(anyhow::anyhow!("echo failed"));
                    }
                }
                Ok(lat)
            }));
        }
        tokio::time::sleep(secs()).await;
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu_us = (cpu_seconds() - cpu_start) * 1e6 / lat.len().max(1) as f64;
        lat.sort();
        let rate = lat.len() as f64 / elapsed;
        println!(
            "in-process   tasks={tasks:<3} runs={:<8} runs/s={rate:>9.0}  run p50={:?} p99={:?}",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        println!(
            "RESULT {}",
            json!({
                "tasks": tasks,
                "runs_per_s": rate,
                "p50_us": percentile(&lat, 0.5).as_secs_f64() * 1e6,
                "p99_us": percentile(&lat, 0.99).as_secs_f64() * 1e6,
                "cpu_us_per_run": cpu_us,
            })
        );
        if tasks == 2 {
            // Report the figure at one task per core.
            RATE.store(rate as u64, Ordering::Relaxed);
        }
    }
    Ok(RATE.load(Ordering::Relaxed) as f64)
}

static RATE: AtomicU64 = AtomicU64::new(0);

/// The in-process runs use neither artifacts nor child executions, and have no
/// start to store.
struct Nobody;

#[async_trait::async_trait]
impl Effects for Nobody {
    async fn before_effect(&self, _: Reach) -> Result<(), EffectRefused> {
        Ok(())
    }

    fn keep(&self) {}
}

#[async_trait::async_trait]
impl ApprovalDesk for Nobody {
    async fn open(&self, _: Approval, _: bool) -> Result<(), EffectRefused> {
        Err(EffectRefused("no approvals in this bench".into()))
    }

    async fn get(&self, _: &str) -> Result<Option<Approval>, EffectRefused> {
        Ok(None)
    }

    async fn wait(&self, _: &str, _: std::time::Duration) -> Option<Approval> {
        None
    }

    async fn decided(&self, _: &Approval) {}
}

#[async_trait::async_trait]
impl ArtifactStore for Nobody {
    async fn store(&self, _: &str, _: Option<String>, _: String, _: String, _: Vec<u8>) -> anyhow::Result<Artifact> {
        anyhow::bail!("no artifacts in this bench")
    }
}

#[async_trait::async_trait]
impl AgentCalls for Nobody {
    async fn call(&self, _: &ToolCtx, _: &str, _: Box<serde_json::value::RawValue>) -> Result<ChildOutcome, ToolError> {
        Err(ToolError::Failed("no child executions in this bench".into()))
    }
}

/// (b): a real server (2 worker threads) and a load generator on its own thread,
/// `conns` keep-alive connections each sending sync executes back to back.
fn end_to_end(config: &Config, conns: usize) -> anyhow::Result<f64> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let config = Config {
        data_dir: tmp.path().to_path_buf(),
        ..config.clone()
    };
    let (addr, app, stop_server) = server_rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = App::open(config).await?;
        let (manifest, wasm) = echo();
        app.deployer
            .deploy(DEFAULT_WORKSPACE, manifest, wasm.into())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(warden_host::server::serve(listener, Arc::clone(&app), async {
            let _ = rx.await;
        }));
        anyhow::Ok((addr, app, (tx, task)))
    })?;

    let load_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let url = format!("http://{addr}/v1/agents/echo/execute");
    let body = json!({ "input": { "name": "bench", "n": [1, 2, 3] } }).to_string();
    let (count, mut lat, elapsed, errors) = load_rt.block_on(async {
        let client = reqwest::Client::builder().pool_max_idle_per_host(conns).build()?;
        // Warm up.
        for _ in 0..200 {
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        let start = Instant::now();
        for _ in 0..conns {
            let (client, url, body, stop, errors) = (
                client.clone(),
                url.clone(),
                body.clone(),
                Arc::clone(&stop),
                Arc::clone(&errors),
            );
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = match client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    lat.push(t.elapsed());
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            }));
        }
        tokio::time::sleep(secs()).await;
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await?);
        }
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::Ok((lat.len(), lat, elapsed, errors.load(Ordering::Relaxed)))
    })?;
    lat.sort();
    let rate = count as f64 / elapsed;

    // Every run was recorded: count completed rows.
    let recorded = server_rt.block_on(async {
        let (tx, task) = stop_server;
        let _ = tx.send(());
        task.await??;
        anyhow::Ok(app.stores.executions.count(Status::Completed).await?)
    })?;
    println!(
        "end-to-end   conns={conns:<3} runs={count:<8} runs/s={rate:>9.0}  latency p50={:?} p99={:?}  errors={errors}  recorded={recorded}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    Ok(rate)
}
