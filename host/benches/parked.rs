//! Parked runs: N executions of `toolbox`, each parked in a model call to a
//! loopback OpenAI-compatible provider that holds every request open without
//! answering, over HTTP/2 (one shared connection, as with hosted providers) or
//! HTTP/1.1 (a connection per call). Resident memory per parked run, then every
//! run cancelled, either in turn (16 cancels in flight while the rest stay
//! parked) or all at once: the time from each cancel request to its `cancelled`
//! record. Each case runs in a fresh process, the provider in another.
//!
//! `cargo bench -p warden-host --bench parked` (env BENCH_PARKED, default
//! "1000,10000"; BENCH_PARKED_HTTP, default "2,1"). Prints a `RESULT {json}`
//! line per case for bench/run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use warden_host::app::App;
use warden_host::auth::DEFAULT_WORKSPACE;
use warden_host::config::{Config, ProviderConfig, ProviderKind};
use warden_host::executions::{NewExecution, Target};
use warden_host::manifest::Manifest;
use warden_host::record::{Status, Trigger};

warden_host::use_mimalloc!();

/// A `<key>: <n> kB` line of a `/proc/self` file, in MiB.
fn proc_mib(file: &str, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Resident set size (VmRSS).
fn rss_mib() -> f64 {
    proc_mib("status", "VmRSS")
}

/// Proportional set size: shared pages, such as a component's initial memory
/// image mapped into every instance, count fully in each mapping's resident
/// size and are shared out here.
fn pss_mib() -> f64 {
    proc_mib("smaps_rollup", "Pss")
}

/// The provider, in a child process of its own (its sockets and memory are not
/// the host's): HTTP/1.1 and HTTP/2 (no limit on concurrent streams), takes
/// each request and never answers. Prints `port P`, then `seen N` whenever more
/// requests have arrived.
async fn silent_provider() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("port {}", listener.local_addr()?.port());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = counter.load(Ordering::Relaxed);
            if now != last {
                println!("seen {now}");
                last = now;
            }
        }
    });
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("provider: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request: hyper::Request<hyper::body::Incoming>| {
                seen.fetch_add(1, Ordering::Relaxed);
                std::future::pending::<Result<hyper::Response<http_body_util::Empty<Bytes>>, std::convert::Infallible>>(
                )
            });
            let mut server = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            server.http2().max_concurrent_streams(None);
            let _ = server
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                .await;
        });
    }
}

/// Starts the provider process; returns its port, a live count of the requests
/// it has seen, and the child (killed on drop).
fn spawn_provider() -> anyhow::Result<(u16, Arc<AtomicUsize>, Child)> {
    let mut child = Command::new(std::env::current_exe()?)
        .env("PARKED_PROVIDER", "1")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no provider stdout"))?;
    let child = Child(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("the provider said nothing"))??;
    let port: u16 = first
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the provider said {first:?}"))?;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("seen ").and_then(|n| n.parse().ok()) {
                counter.store(n, Ordering::Relaxed);
            }
        }
    });
    Ok((port, seen, child))
}

/// A child process, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a case cancels its parked runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cancel {
    /// 16 cancel requests in flight at a time, the rest of the runs parked.
    InTurn,
    /// Every run's cancel request at once.
    AllAtOnce,
}

/// Cancels in flight at a time in [`Cancel::InTurn`].
const IN_FLIGHT: usize = 16;

fn main() -> anyhow::Result<()> {
    if std::env::var_os("PARKED_PROVIDER").is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return rt.block_on(silent_provider());
    }
    if let Ok(case) = std::env::var("PARKED_CASE") {
        // "<runs>:<http 1|2>:<turn|all>", run in this process.
        let parts: Vec<&str> = case.split(':').collect();
        let [n, http, mode] = parts[..] else {
            anyhow::bail!("bad PARKED_CASE {case:?}");
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let cancel = if mode == "all" {
            Cancel::AllAtOnce
        } else {
            Cancel::InTurn
        };
        return rt.block_on(park(n.parse()?, http == "2", cancel));
    }
    let list = |var: &str, default: &str| -> Vec<usize> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    for http in list("BENCH_PARKED_HTTP", "2,1") {
        for n in list("BENCH_PARKED", "1000,10000") {
            for mode in ["turn", "all"] {
                let status = Command::new(std::env::current_exe()?)
                    .env("PARKED_CASE", format!("{n}:{http}:{mode}"))
                    .status()?;
                anyhow::ensure!(status.success(), "case {n}:{http}:{mode} failed: {status}");
            }
        }
    }
    Ok(())
}

async fn park(n: usize, http2: bool, cancel: Cancel) -> anyhow::Result<()> {
    let (port, seen, _provider) = spawn_provider()?;
    let tmp = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: tmp.path().to_path_buf(),
        deploy_examples: false,
        max_concurrent_executions: n as u32 + 16,
        max_queued_executions: n * 2,
        ..Config::default()
    };
    config.llm.timeout_ms = 600_000;
    config.llm.providers = vec![ProviderConfig {
        name: "silent".into(),
        kind: ProviderKind::Openai,
        base_url: format!("http://127.0.0.1:{port}/v1"),
        api_key_env: None,
        models: vec!["slow".into()],
        stream: false,
        max_tokens_param: None,
        http2,
    }];
    let app = App::open(config).await?;
    let path = warden_host::bundled::agent_path("toolbox").ok_or_else(|| anyhow::anyhow!("toolbox not built"))?;
    let manifest = Manifest::from_json(&format!(
        r#"{{"name":"toolbox","models":["slow"],"max_concurrency":{n},"limits":{{"timeout_ms":600000}}}}"#
    ))
    .map_err(|e| anyhow::anyhow!(e))?;
    app.deployer
        .deploy(DEFAULT_WORKSPACE, manifest, Bytes::from(std::fs::read(path)?))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let entry = app
        .registry
        .get(DEFAULT_WORKSPACE, "toolbox")
        .ok_or_else(|| anyhow::anyhow!("no toolbox"))?;
    let version = entry.latest().ok_or_else(|| anyhow::anyhow!("no version"))?.clone();

    let before = rss_mib();
    let started = Instant::now();
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        let new = NewExecution::new(
            Target::Version(version.meta.id.clone()),
            RawValue::from_string(r#"{"model":"slow"}"#.into())?.into(),
            Trigger::Api,
        );
        let accepted = app.executions.submit(new).await?;
        runs.push((accepted.execution.id, accepted.done));
    }
    while seen.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "only {} of {n} runs reached the model",
            seen.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parking = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // BENCH_PAUSE_MS: time to attach a profiler to the cancellation.
    if let Some(ms) = std::env::var("BENCH_PAUSE_MS").ok().and_then(|v| v.parse().ok()) {
        println!("parked {n}; cancelling in {ms} ms (pid {})", std::process::id());
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let parked = rss_mib();
    let pss = pss_mib();
    if std::env::var_os("BENCH_SMAPS").is_some() {
        print_biggest_mappings();
    }

    let all = Instant::now();
    // When the last guest has stopped and given back its slot (its record may
    // still be on its way to the database).
    let stopped = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            while app.executions.load().0 > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            all.elapsed()
        })
    };
    let runs = Arc::new(std::sync::Mutex::new(runs));
    let workers = match cancel {
        Cancel::InTurn => IN_FLIGHT,
        Cancel::AllAtOnce => n,
    };
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let app = Arc::clone(&app);
        let runs = Arc::clone(&runs);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let next = runs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some((id, mut done)) = next else { break };
                let start = Instant::now();
                app.executions.cancel(&id).await?;
                let ended = done.wait_for(Option::is_some).await?.clone();
                anyhow::ensure!(
                    ended.is_some_and(|e| e.status == Status::Cancelled),
                    "{id} did not end cancelled"
                );
                lat.push(start.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await??);
    }
    let cancel_all = all.elapsed();
    let stopped = stopped.await?;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    let kib = (parked - before) * 1024.0 / n as f64;
    let http = if http2 { "HTTP/2" } else { "HTTP/1.1" };
    let how = match cancel {
        Cancel::InTurn => format!("cancelled {IN_FLIGHT} at a time"),
        Cancel::AllAtOnce => "all cancelled at once".to_owned(),
    };
    println!(
        "parked {n:>6} over {http}: parked in {parking:?}; resident {before:.0} -> {parked:.0} MiB \
         ({kib:.1} KiB per run, proportional {pss:.0} MiB); {how}: every guest stopped in {stopped:?}, \
         every record committed in {cancel_all:?}, each p50 {:.1} ms p99 {:.1} ms",
        pct(0.5),
        pct(0.99)
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "runs": n,
            "http": http,
            "cancel": if cancel == Cancel::InTurn { "in_turn" } else { "all_at_once" },
            "rss_before_mib": before,
            "rss_parked_mib": parked,
            "pss_parked_mib": pss,
            "kib_per_run": kib,
            "park_ms": parking.as_secs_f64() * 1000.0,
            "cancel_all_ms": cancel_all.as_secs_f64() * 1000.0,
            "all_stopped_ms": stopped.as_secs_f64() * 1000.0,
            "cancel_p50_ms": pct(0.5),
            "cancel_p99_ms": pct(0.99),
        })
    );
    app.close().await;
    Ok(())
}

/// The twelve mappings with the most resident memory (BENCH_SMAPS=1).
fn print_biggest_mappings() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        if line.contains('-') && !line.starts_with(|c: char| c.is_ascii_uppercase()) {
            current = line.to_owned();
        } else if let Some(kb) = line.strip_prefix("Rss:") {
            let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            maps.push((kb, current.clone()));
        }
    }
    maps.sort();
    for (kb, m) in maps.iter().rev().take(12) {
        println!("{kb:>9} kB {m}");
    }
}
