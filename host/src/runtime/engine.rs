//! The one wasmtime `Engine` and its epoch ticker.
//!
//! Engine settings: pooling allocator sized from the config, fuel metering, epoch
//! interruption (a ticker thread advances the epoch every [`TICK`] while a guest
//! runs, and sleeps while none does; running guests yield to tokio at each
//! tick, so wall-clock limits and cancellation take effect within a tick).
//! Nothing else builds an Engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::Config as HostConfig;

/// How often the epoch advances.
pub const TICK: Duration = Duration::from_millis(1);

/// Core instances, tables and memories a component may hold (a Rust wasip2
/// component uses a handful of each).
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;

/// Bytes of a memory (and of a table) reset in place rather than decommitted when
/// a slot is freed. (32 MiB, to keep a Python guest's 13 MiB image resident,
/// measured no faster: its runs fault on the image's pages either way.)
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 1 << 20;

pub fn build(config: &HostConfig) -> anyhow::Result<Engine> {
    let slots = config.max_concurrent_executions;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT / 4))
        .total_memories(slots.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(slots.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(slots)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size((config.limits.max_memory_mb as usize) << 20)
        .decommit_batch_size(64)
        // Reset a finished run's dirty pages in place (found with PAGEMAP_SCAN on
        // Linux 6.7+) instead of dropping them: the next run of the slot takes no
        // page faults and, above all, no cross-core TLB shootdowns, which were
        // most of the cost of a run with two cores busy.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE);

    let mut wasm = code_settings();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(anyhow::Error::from)
}

/// The settings that shape compiled code: the host's engine and the compiler's
/// child process both start from these, so what one compiles the other loads.
fn code_settings() -> Config {
    let mut wasm = Config::new();
    wasm.consume_fuel(true)
        .epoch_interruption(true)
        // WASI p2 needs no component-model concurrency; leaving it on costs speed.
        .concurrency_support(false);
    wasm
}

/// An engine that only compiles (the compiler's child process): the host's
/// code settings, no instance pool.
pub fn compiler() -> anyhow::Result<Engine> {
    Engine::new(&code_settings()).map_err(anyhow::Error::from)
}

/// Advances the engine's epoch every [`TICK`] while a guest runs, until
/// dropped; with no guest running it sleeps (an idle host wakes for nothing).
pub struct Ticker {
    stop: Arc<AtomicBool>,
    /// Runs under way (see [`Ticker::running`]).
    active: Arc<AtomicUsize>,
    thread: std::thread::Thread,
}

/// Longest the ticker sleeps with no guest running before it looks again.
const IDLE_PARK: Duration = Duration::from_millis(500);

impl Ticker {
    pub fn start(engine: &Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let weak = engine.weak();
        let (flag, runs) = (Arc::clone(&stop), Arc::clone(&active));
        let handle = std::thread::Builder::new().name("warden-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if runs.load(Ordering::Acquire) == 0 {
                    // Woken by the next run's start.
                    std::thread::park_timeout(IDLE_PARK);
                    continue;
                }
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(Self {
            stop,
            active,
            thread: handle.thread().clone(),
        })
    }

    /// A guest runs until the guard drops: the epoch advances meanwhile.
    pub fn running(&self) -> Running {
        if self.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running(Arc::clone(&self.active))
    }
}

/// A run under way, for the ticker.
pub struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}
