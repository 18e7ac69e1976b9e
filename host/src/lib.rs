//! Warden host: runs untrusted AI agents as sandboxed WebAssembly components.
//!
//! The parts: [`config`] (settings), [`api`] (HTTP), [`scheduler`] (accepting and
//! running executions), [`runtime`] (wasmtime sandbox), [`capabilities`] (WIT
//! imports), [`store`] (SQLite + blobs), [`registry`] (deployed agents in memory),
//! [`app`] (wiring), [`server`] (serving), [`client`] (the CLI's HTTP client).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod agent;
pub mod api;
pub mod app;
pub mod auth;
pub mod bundled;
mod capabilities;
pub mod client;
pub mod config;
pub mod events;
pub mod execution;
pub mod idempotency;
pub mod ids;
pub mod llm;
pub mod manifest;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod time;
pub mod tools;

/// mimalloc instead of the system allocator: thousands of runs allocate and free
/// small objects on two threads at once; glibc's arenas spent an eighth of a
/// mass cancellation in `malloc` and kept freed memory around.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc 2's `mi_option_e`.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Has mimalloc commit arena memory as it is used rather than up front (with
/// eager commit a host starts 60 MiB bigger and a parked run costs ~10% more
/// resident memory, for no measured speed). mimalloc sizes its first arena at
/// the first allocation, so this runs as a program constructor, before any.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn tune() {
        // SAFETY: sets one of mimalloc's global options before anything is
        // allocated; any value is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    tune
};
