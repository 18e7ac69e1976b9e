//! Prometheus metrics: the recorder (one per process, installed by the first
//! host that starts with metrics on), the names and labels of what the host
//! counts, and the text a scrape gets. Call sites say what happened (an
//! execution ended, a model answered, a batch committed); this module makes
//! series of it. With no recorder installed every call is a no-op.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::record::{ErrorSource, Execution};

/// The recorder's handle, once installed (`None`: another recorder was).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets of the duration histograms, in seconds (1 ms to 5 min).
const SECONDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets of the writer's batch sizes (writes per commit).
const BATCH: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Buckets of fuel and memory (orders of magnitude).
const MAGNITUDE: [f64; 8] = [1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
/// How often histograms are folded (their samples would otherwise pile up
/// between scrapes).
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the recorder (the first call in a process does; later ones find
/// it) and keeps it folding its samples.
pub fn install() {
    let handle = HANDLE.get_or_init(|| {
        let built = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_writes".into()), &BATCH))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_fuel".into()), &MAGNITUDE))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &MAGNITUDE));
        let recorder = match built {
            Ok(builder) => builder.build_recorder(),
            Err(e) => {
                tracing::warn!(error = %e, "metrics are off: the recorder could not be built");
                return None;
            }
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("metrics are off: another recorder is installed in this process");
            return None;
        }
        let upkeep = handle.clone();
        // A thread of its own: it outlives any one runtime and needs none.
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics: no upkeep thread (histograms fold at each scrape only)");
        }
        Some(handle)
    });
    let _ = handle;
}

/// What a scrape gets (empty while no recorder is installed).
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// The host's load, set at each scrape.
pub fn load(queued: usize, running: usize, slots: u32, agents: usize) {
    gauge!("warden_executions_queued").set(queued as f64);
    gauge!("warden_executions_running").set(running as f64);
    gauge!("warden_execution_slots").set(f64::from(slots));
    gauge!("warden_agents").set(agents as f64);
}

/// The series one agent's runs end in, looked up once: a run's end updates
/// them through these handles instead of finding each by its labels again.
struct AgentSeries {
    wait: Histogram,
    fuel: Histogram,
    memory: Histogram,
    cost: Counter,
    /// By status.
    duration: Vec<(&'static str, Histogram)>,
    /// By status, trigger and error code.
    ended: Vec<(&'static str, &'static str, String, Counter)>,
}

impl AgentSeries {
    fn new(agent: &str) -> Self {
        Self {
            wait: histogram!("warden_execution_queue_wait_seconds", "agent" => agent.to_owned()),
            fuel: histogram!("warden_execution_fuel", "agent" => agent.to_owned()),
            memory: histogram!("warden_execution_peak_memory_bytes", "agent" => agent.to_owned()),
            cost: counter!("warden_execution_cost_usd_micros_total", "agent" => agent.to_owned()),
            duration: Vec::new(),
            ended: Vec::new(),
        }
    }
}

static AGENTS: LazyLock<Mutex<HashMap<String, AgentSeries>>> = LazyLock::new(Mutex::default);

/// Whether a recorder counts anything (none is installed with metrics off).
fn counting() -> bool {
    matches!(HANDLE.get(), Some(Some(_)))
}

/// An execution's end, as the lifecycle stores it.
pub fn execution_ended(agent: &str, e: &Execution) {
    if !counting() {
        return;
    }
    let status = e.status.as_str();
    let trigger = e.trigger.as_str();
    // The host's codes are a known few; an agent's own are its to choose, so
    // they count as one (a series per code an agent makes up would be unbounded).
    let code = match &e.error {
        None => "",
        Some(err) if err.source == ErrorSource::Host => err.code.as_str(),
        Some(_) => "agent",
    };
    let mut agents = AGENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if !agents.contains_key(agent) {
        agents.insert(agent.to_owned(), AgentSeries::new(agent));
    }
    let Some(series) = agents.get_mut(agent) else { return };
    match series
        .ended
        .iter()
        .find(|(s, t, c, _)| *s == status && *t == trigger && c == code)
    {
        Some((.., ended)) => ended.increment(1),
        None => {
            let ended = counter!("warden_executions_total", "agent" => agent.to_owned(), "status" => status,
                "trigger" => trigger, "error_code" => code.to_owned());
            ended.increment(1);
            series.ended.push((status, trigger, code.to_owned(), ended));
        }
    }
    if let Some(started) = e.started_at {
        series.wait.record((started - e.created_at).max(0) as f64 / 1000.0);
        if let Some(done) = e.completed_at {
            let run = (done - started).max(0) as f64 / 1000.0;
            match series.duration.iter().find(|(s, _)| *s == status) {
                Some((_, h)) => h.record(run),
                None => {
                    let h = histogram!("warden_execution_duration_seconds", "agent" => agent.to_owned(),
                        "status" => status);
                    h.record(run);
                    series.duration.push((status, h));
                }
            }
        }
    }
    if let Some(fuel) = e.fuel_used {
        series.fuel.record(fuel as f64);
    }
    if let Some(bytes) = e.peak_memory_bytes {
        series.memory.record(bytes as f64);
    }
    if e.cost_usd > 0.0 {
        series.cost.increment((e.cost_usd * 1e6).round() as u64);
    }
}

/// One model call made live (not replayed).
pub struct ModelCall<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub ok: bool,
    pub duration: Duration,
    pub first_token: Option<Duration>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Attempts past the first (the provider's transient failures).
    pub retries: u32,
}

pub fn model_call(c: &ModelCall<'_>) {
    let (provider, model) = (c.provider.to_owned(), c.model.to_owned());
    let outcome = if c.ok { "ok" } else { "error" };
    counter!("warden_model_calls_total", "provider" => provider.clone(), "model" => model.clone(), "outcome" => outcome)
        .increment(1);
    histogram!("warden_model_call_duration_seconds", "provider" => provider.clone(), "model" => model.clone())
        .record(c.duration.as_secs_f64());
    if let Some(first) = c.first_token {
        histogram!("warden_model_first_token_seconds", "provider" => provider.clone(), "model" => model.clone())
            .record(first.as_secs_f64());
    }
    if c.retries > 0 {
        counter!("warden_model_retries_total", "provider" => provider.clone(), "model" => model.clone())
            .increment(u64::from(c.retries));
    }
    counter!("warden_model_tokens_total", "provider" => provider.clone(), "model" => model.clone(), "kind" => "prompt")
        .increment(c.prompt_tokens);
    counter!("warden_model_tokens_total", "provider" => provider, "model" => model, "kind" => "completion")
        .increment(c.completion_tokens);
}

/// One tool call made live (not replayed). A built-in tool by its name, an
/// MCP server's tools as `mcp.<server>`, anything else a guest asked for as
/// `other` (guests choose the names they call: series must stay few).
pub fn tool_call(tool: &str, ok: bool, duration_ms: u64) {
    let outcome = if ok { "ok" } else { "error" };
    let tool = tool_label(tool);
    counter!("warden_tool_calls_total", "tool" => tool.to_owned(), "outcome" => outcome).increment(1);
    histogram!("warden_tool_call_duration_seconds", "tool" => tool.to_owned()).record(duration_ms as f64 / 1000.0);
}

fn tool_label(tool: &str) -> &str {
    if crate::manifest::TOOLS.contains(&tool) {
        return tool;
    }
    match tool.strip_prefix("mcp.").and_then(|rest| rest.split_once('.')) {
        Some((server, _)) if server.len() <= 64 => &tool[..4 + server.len()],
        _ => "other",
    }
}

/// A component made ready to run: `compiled`, or loaded from the compiled
/// cache (`disk`) or from memory.
pub fn component_ready(source: &'static str, took: Duration) {
    counter!("warden_components_total", "source" => source).increment(1);
    histogram!("warden_component_ready_seconds", "source" => source).record(took.as_secs_f64());
}

/// One commit of the store's writer.
pub fn store_commit(writes: usize, took: Duration) {
    histogram!("warden_store_commit_batch_writes").record(writes as f64);
    histogram!("warden_store_commit_seconds").record(took.as_secs_f64());
}

/// A live stream (SSE) open, counted until it is dropped.
pub struct Subscribed(());

impl Subscribed {
    /// Counts a stream from now until the value is dropped.
    pub fn open() -> Self {
        gauge!("warden_stream_subscribers").increment(1.0);
        Self(())
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        gauge!("warden_stream_subscribers").decrement(1.0);
    }
}

/// One route's series: its durations, and its counts by method and status.
struct RouteSeries {
    duration: Histogram,
    counts: Vec<(&'static str, u16, Counter)>,
}

static ROUTES: LazyLock<Mutex<HashMap<String, RouteSeries>>> = LazyLock::new(Mutex::default);

/// One HTTP request answered, by its route (the pattern, not the path).
pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    if !counting() {
        return;
    }
    let method = match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let mut routes = ROUTES.lock().unwrap_or_else(PoisonError::into_inner);
    if !routes.contains_key(route) {
        let duration = histogram!("warden_http_request_duration_seconds", "route" => route.to_owned());
        routes.insert(
            route.to_owned(),
            RouteSeries {
                duration,
                counts: Vec::new(),
            },
        );
    }
    let Some(series) = routes.get_mut(route) else { return };
    series.duration.record(took.as_secs_f64());
    match series.counts.iter().find(|(m, s, _)| *m == method && *s == status) {
        Some((.., counter)) => counter.increment(1),
        None => {
            let counter = counter!("warden_http_requests_total", "method" => method, "route" => route.to_owned(),
                "status" => status.to_string());
            counter.increment(1);
            series.counts.push((method, status, counter));
        }
    }
}

/// Ended executions whose spans went to the OTLP collector (`sent`), failed
/// to (`failed`), or were dropped with its queue full (`dropped`).
pub fn otlp_spans(outcome: &'static str, executions: usize) {
    counter!("warden_otlp_executions_total", "outcome" => outcome).increment(executions as u64);
}
