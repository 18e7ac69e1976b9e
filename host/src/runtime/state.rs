//! The per-execution state a `Store` owns: the WASI context (no env, no preopens,
//! no sockets, stdio captured), the resource table, the memory limiter and the run
//! record. Built fresh for every execution; never shared between runs.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::capture::RunRecord;
use crate::execution::LogStream;

/// Instances, tables and memories one store may create.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 100_000;

pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub record: RunRecord,
}

impl RunState {
    pub fn new(memory_limit: usize, record: RunRecord) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(record.stdio(LogStream::Stdout))
            .stderr(record.stdio(LogStream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            record,
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the store's total linear memory and remembers whether the cap was hit,
/// which is how a guest's out-of-memory abort is told apart from other traps.
pub struct MemoryLimiter {
    limit: usize,
    total: usize,
    pub peak: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            total: 0,
            peak: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        if self.total.saturating_add(grow) > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.total += grow;
        self.peak = self.peak.max(self.total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
