//! The sandbox: one wasmtime `Engine`, the linker (WASI p2, `wasi:http` and the
//! `warden:agent` imports, linked once), an `AgentPre` per agent version, and a fresh `Store` per
//! execution with its memory limit, fuel budget and wall-clock deadline.
//!
//! [`Runtime::run`] never fails: whatever the guest does, it returns an outcome
//! with a typed error code. It does not touch the database or the compiler.

mod artifacts;
mod capture;
pub mod compiler;
pub mod component;
pub mod engine;
pub mod http;
pub mod imports;
pub mod journal;
mod state;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::value::RawValue;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, Trap};

pub use self::artifacts::RunArtifacts;
pub use self::capture::{Recording, RunRecord};
use self::component::{ComponentCache, ComponentError, Origin};
use self::engine::Ticker;
pub use self::state::{Grants, LlmTotals, MemoryGrant, RunState, Streamed};
use crate::config::{CaptureLimits, Config};
use crate::manifest::Limits;
use crate::record::{ErrorSource, ExecError, ToolCallRecord};

pub mod bindings {
    //! Host bindings generated from `wit/`.
    wasmtime::component::bindgen!({
        world: "agent",
        path: "../wit",
        imports: {
            "warden:agent/llm.chat": async | trappable,
            "warden:agent/tools.available": async | trappable,
            "warden:agent/tools.call": async | trappable,
            "warden:agent/artifacts.put": async | trappable,
            "warden:agent/approval.request": async | trappable,
            "warden:agent/conversation.history": async | trappable,
            "warden:agent/memory.get": async | trappable,
            "warden:agent/memory.set": async | trappable,
            "warden:agent/memory.delete": async | trappable,
            "warden:agent/memory.keys": async | trappable,
            "warden:agent/http.send": async | trappable,
        },
        exports: { default: async },
    });
}

pub use bindings::AgentPre;

/// The code of a [`Stop`] that unloads a run waiting for a decision.
const SUSPENDED: &str = "suspended";

/// Longest agent error code kept as given; others become `agent_error`.
const MAX_AGENT_CODE_LEN: usize = 64;
/// Longest agent error message kept; the rest is cut, with a note of its size.
const MAX_AGENT_MESSAGE_BYTES: usize = 16 << 10;

pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    cache: ComponentCache,
    capture: CaptureLimits,
    ticker: Ticker,
}

/// A host import's decision to end the run with a code (`budget_exceeded`, ...).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Stop {
    pub code: &'static str,
    pub message: String,
}

impl Stop {
    pub fn budget(budget: u64, used: u64) -> Self {
        Self {
            code: "budget_exceeded",
            message: format!("the run used {used} tokens of its budget of {budget}"),
        }
    }

    /// The run waits for a decision unloaded: its store is dropped, and the
    /// decision resumes it by replay.
    pub fn suspended() -> Self {
        Self {
            code: SUSPENDED,
            message: "the run waits for an approval, unloaded".into(),
        }
    }

    /// A journal entry that cannot be read back.
    pub fn damaged_journal(what: &str, e: &serde_json::Error) -> Self {
        Self {
            code: "replay_divergence",
            message: format!("the journal's {what} cannot be read back: {e}"),
        }
    }

    /// The run's start could not be stored: it must not act beyond its sandbox.
    pub fn unrecorded(refused: crate::ports::EffectRefused) -> wasmtime::Error {
        wasmtime::Error::new(Self {
            code: "storage_unavailable",
            message: refused.to_string(),
        })
    }
}

/// How one run ended, with what it recorded.
pub struct RunOutcome {
    pub llm: LlmTotals,
    pub tool_calls: Vec<ToolCallRecord>,
    pub artifacts: Vec<crate::record::Artifact>,
    pub result: Result<Box<RawValue>, ExecError>,
    /// Stopped because `cancel` resolved.
    pub cancelled: bool,
    /// Unloaded while waiting for a decision: not ended.
    pub suspended: bool,
    /// The guest last got a refusal of an approval request (the code it ends
    /// `rejected` with if it gives up on it).
    pub refusal: Option<&'static str>,
    pub fuel_used: u64,
    pub peak_memory_bytes: u64,
    pub recording: Recording,
    /// What its model calls streamed, and the model and estimated usage of a
    /// call cut short.
    pub streamed: (Option<String>, Option<(String, crate::record::Usage)>),
}

impl Runtime {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let engine = engine::build(config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::Agent::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)?;
        let cache = ComponentCache::open(&engine, &config.data_dir, compiler::Compiler::new(&config.deploy))?;
        let ticker = Ticker::start(&engine)?;
        Ok(Self {
            engine,
            linker,
            cache,
            capture: config.capture,
            ticker,
        })
    }

    /// Components compiled and loaded from the disk cache since start.
    /// Compiles running and waiting for their turn now.
    pub fn compiles(&self) -> compiler::Counts {
        self.cache.compiles()
    }

    pub fn cache_counts(&self) -> (u64, u64) {
        (
            self.cache.compiled.load(Ordering::Relaxed),
            self.cache.deserialized.load(Ordering::Relaxed),
        )
    }

    /// The compatibility class of this host's engine (what a compiled
    /// artifact's recorded digest is kept under).
    pub fn engine_key(&self) -> String {
        component::engine_key(&self.engine)
    }

    /// Compiles (or loads from the cache, when its artifact has the `verified`
    /// digest) the component with this hash, and checks it implements the world.
    /// Returns the digest of a compiled artifact written now, to be recorded.
    /// Blocking: call from `spawn_blocking`.
    pub fn prepare(
        &self,
        hash: &str,
        verified: Option<&str>,
        load: impl FnOnce() -> Result<Vec<u8>, ComponentError>,
    ) -> Result<(AgentPre<RunState>, Origin, Option<String>), ComponentError> {
        let began = std::time::Instant::now();
        let mut pre = None;
        let loaded = self.cache.get(hash, verified, load, |component| {
            let instance_pre = self
                .linker
                .instantiate_pre(component)
                .map_err(|e| ComponentError::WrongWorld(format!("{e:#}")))?;
            pre = Some(AgentPre::new(instance_pre).map_err(|e| ComponentError::WrongWorld(format!("{e:#}")))?);
            Ok(())
        })?;
        let pre = pre.ok_or_else(|| ComponentError::Internal("component check did not run".into()))?;
        let source = match loaded.origin {
            Origin::Memory => "memory",
            Origin::Disk => "disk",
            Origin::Compiled => "compiled",
        };
        crate::metrics::component_ready(source, began.elapsed());
        Ok((pre, loaded.origin, loaded.written))
    }

    /// Runs one execution in a fresh store. When `cancel` resolves first, the guest
    /// is stopped (at its next epoch tick if it is running wasm, at once if it is
    /// parked in a host call) and the outcome is `cancelled`.
    pub async fn run(
        &self,
        pre: &AgentPre<RunState>,
        input: &str,
        limits: Limits,
        grants: Grants,
        cancel: impl Future<Output = ()>,
    ) -> RunOutcome {
        // The epoch advances while this run lasts.
        let _running = self.ticker.running();
        let record = RunRecord::new(self.capture, Some(Arc::clone(&grants.events)));
        record.announced(grants.announced.0, grants.announced.1);
        let mut store = Store::new(
            &self.engine,
            RunState::new(limits.memory_bytes(), record.clone(), grants),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let pauses = Arc::clone(&store.data().grants.pauses);
        let mut cancelled = false;
        let result = match store.set_fuel(limits.fuel) {
            Ok(()) => {
                let call = async {
                    let agent = pre.instantiate_async(&mut store).await?;
                    agent.call_run(&mut store, input).await
                };
                let ended = tokio::select! {
                    biased;
                    () = cancel => None,
                    ended = within(limits.timeout(), &pauses, call) => Some(ended),
                };
                match ended {
                    None => {
                        cancelled = true;
                        Err(ExecError::host("cancelled", "the execution was cancelled on request"))
                    }
                    Some(Err(_)) => Err(ExecError::host(
                        "timeout",
                        format!("the agent ran past its timeout of {} ms", limits.timeout_ms),
                    )),
                    Some(Ok(Err(e))) => Err(Self::classify(&e, &store, &record, limits)),
                    Some(Ok(Ok(Err(agent_error)))) => Err(agent_failure(agent_error)),
                    Some(Ok(Ok(Ok(output)))) => self.check_output(output),
                }
            }
            Err(e) => Err(ExecError::host(
                "internal",
                format!("could not set the fuel budget: {e}"),
            )),
        };
        let suspended = store.data().suspending
            && matches!(&result, Err(e) if e.code == SUSPENDED && e.source == ErrorSource::Host);
        // A journal or storage failure a `wasi:http` request met ends the run
        // (the guest was only told of an error); it came first, before what
        // the guest did after it (such as ending before its journal did).
        let result = match (store.data().http_grant.stopped(), &result) {
            (Some(stop), Ok(_))
            | (
                Some(stop),
                Err(ExecError {
                    source: ErrorSource::Agent,
                    ..
                }),
            ) => Err(ExecError::host(stop.code, stop.message)),
            _ => result,
        };
        // A replay that went astray where it could not say so (a clock
        // reading), or ended before its journal did, fails as diverged.
        let result = match (&store.data().journal, &result) {
            (Some(journal), Ok(_))
            | (
                Some(journal),
                Err(ExecError {
                    source: ErrorSource::Agent,
                    ..
                }),
            ) => match journal.failure(true) {
                Some(stop) => Err(ExecError::host(stop.code, stop.message)),
                None => result,
            },
            _ => result,
        };
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let peak_memory_bytes = store.data().limiter.peak as u64;
        let mut state = store.into_data();
        state.tool_calls.extend(state.http_grant.take_calls());
        RunOutcome {
            streamed: state.grants.streamed.take(),
            suspended,
            refusal: state.refusal,
            llm: state.llm,
            tool_calls: state.tool_calls,
            artifacts: state.grants.artifacts.list(),
            result,
            cancelled,
            fuel_used,
            peak_memory_bytes,
            recording: record.finish(),
        }
    }

    fn classify(e: &wasmtime::Error, store: &Store<RunState>, record: &RunRecord, limits: Limits) -> ExecError {
        if let Some(stop) = e.downcast_ref::<Stop>() {
            return ExecError::host(stop.code, stop.message.clone());
        }
        if store.data().limiter.hit {
            return ExecError::host(
                "memory_limit",
                format!(
                    "the agent tried to use more than its memory limit of {} MiB",
                    limits.memory_mb
                ),
            );
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => ExecError::host(
                "fuel_exhausted",
                format!("the agent used up its fuel budget of {} units", limits.fuel),
            ),
            Some(Trap::StackOverflow) => ExecError::host("trap", "the agent overflowed its stack"),
            Some(trap) => {
                let mut message = format!("the agent trapped: {trap}");
                if let Some(line) = record.last_stderr() {
                    message.push_str(&format!(" (its last stderr line: {line})"));
                }
                ExecError::host("trap", message)
            }
            // A string the guest handed over that is not UTF-8: the contract's
            // `string` could not be lifted.
            None if e.chain().any(|c| c.is::<std::str::Utf8Error>()) => ExecError::host(
                "invalid_output",
                format!("the agent returned text that is not UTF-8: {e:#}"),
            ),
            None => ExecError::host("trap", format!("the agent failed: {e:#}")),
        }
    }

    fn check_output(&self, output: String) -> Result<Box<RawValue>, ExecError> {
        if output.len() > self.capture.max_output_bytes {
            return Err(ExecError::host(
                "invalid_output",
                format!(
                    "the output is {} bytes, over the limit of {} bytes",
                    output.len(),
                    self.capture.max_output_bytes
                ),
            ));
        }
        crate::json_text::raw(output).map_err(|e| {
            ExecError::host(
                "invalid_output",
                format!("the output is not JSON the host accepts: {e}"),
            )
        })
    }
}

/// Time a run spent waiting for decisions, which its timeout does not count:
/// what it waited, and since when it waits now.
#[derive(Default)]
pub struct Pauses(std::sync::Mutex<(std::time::Duration, Option<std::time::Instant>)>);

impl Pauses {
    fn lock(&self) -> std::sync::MutexGuard<'_, (std::time::Duration, Option<std::time::Instant>)> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A wait starts; ends when the returned guard is dropped.
    pub fn begin(&self) -> PauseGuard<'_> {
        self.lock().1 = Some(std::time::Instant::now());
        PauseGuard(self)
    }

    /// Waited so far, the wait under way included.
    pub fn total(&self) -> std::time::Duration {
        let (done, since) = *self.lock();
        done + since.map_or(std::time::Duration::ZERO, |s| s.elapsed())
    }

    fn waiting(&self) -> bool {
        self.lock().1.is_some()
    }
}

/// Ends a wait (whether it ended or was dropped).
pub struct PauseGuard<'a>(&'a Pauses);

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if let Some(since) = state.1.take() {
            state.0 += since.elapsed();
        }
    }
}

/// Runs `call` within `limit`, not counting the time the run spent waiting for
/// decisions (`pauses`); `Err` when it ran out.
pub async fn within<F: Future>(limit: std::time::Duration, pauses: &Pauses, call: F) -> Result<F::Output, ()> {
    let started = tokio::time::Instant::now();
    tokio::pin!(call);
    loop {
        let deadline = started + limit + pauses.total();
        tokio::select! {
            out = &mut call => return Ok(out),
            () = tokio::time::sleep_until(deadline) => {
                if !pauses.waiting() && started + limit + pauses.total() <= tokio::time::Instant::now() {
                    return Err(());
                }
            }
        }
    }
}

/// An agent's error message, at most [`MAX_AGENT_MESSAGE_BYTES`] of it.
fn cap_message(mut message: String) -> String {
    let len = message.len();
    if len > MAX_AGENT_MESSAGE_BYTES {
        let mut end = MAX_AGENT_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(&format!(
            " [message cut: {len} bytes, over the limit of {MAX_AGENT_MESSAGE_BYTES}]"
        ));
    }
    message
}

fn agent_failure(e: bindings::warden::agent::types::AgentError) -> ExecError {
    let valid = !e.code.is_empty()
        && e.code.len() <= MAX_AGENT_CODE_LEN
        && e.code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ExecError {
        code: if valid { e.code } else { "agent_error".to_owned() },
        message: cap_message(e.message),
        source: crate::record::ErrorSource::Agent,
    }
}
