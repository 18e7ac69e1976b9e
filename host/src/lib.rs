//! Warden host: runs untrusted AI agents as sandboxed WebAssembly components.
//!
//! The parts, from the top: [`api`] (HTTP) on the [`app`] (wiring), which builds
//! [`executions`] (the one way in, the one lifecycle, runs, cancel, retries,
//! recovery), [`deploy`] and [`auth`]; below them [`scheduler`] (queue and slots,
//! mechanism only), [`registry`] (deployed agents in memory), [`runtime`] (the
//! wasmtime sandbox) with [`capabilities`] (the WIT imports), which reach the
//! world only through [`ports`] ([`tools`], models in [`llm`], artifacts); at the
//! bottom [`store`] (traits; SQLite and blobs), [`events`], [`record`] (the
//! data), [`manifest`] and [`config`]. Arrows point down only.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod app;
pub mod auth;
pub mod bundled;
mod capabilities;
pub mod client;
pub mod config;
pub mod deploy;
pub mod digest;
pub mod events;
pub mod executions;
pub mod files;
pub mod ids;
pub mod json_text;
pub mod llm;
pub mod manifest;
pub mod mcp;
pub mod memory;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod ports;
pub mod record;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod schedules;
pub mod server;
pub mod store;
pub mod time;
pub mod tools;
pub mod trace;
pub mod ui;
pub mod webhooks;

/// Makes mimalloc the program's global allocator, tuned as measured here: the
/// `warden` binary and the benches call it; a program using this library as a
/// crate keeps its own choice. Thousands of runs allocate and free small objects
/// on two threads at once; glibc's arenas spent an eighth of a mass cancellation
/// in `malloc` and kept freed memory around.
///
/// It also has mimalloc commit arena memory as it is used rather than up front
/// (with eager commit a host starts 60 MiB bigger and a parked run costs ~10% more
/// resident memory, for no measured speed). mimalloc sizes its first arena at the
/// first allocation, so that option is set by a program constructor, before any.
#[macro_export]
macro_rules! use_mimalloc {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::MiMalloc = $crate::allocator::MiMalloc;

        #[cfg(target_os = "linux")]
        #[used]
        #[unsafe(link_section = ".init_array")]
        static TUNE_ALLOCATOR: extern "C" fn() = {
            extern "C" fn tune() {
                $crate::allocator::tune();
            }
            tune
        };
    };
}

#[doc(hidden)]
pub mod allocator {
    //! What [`use_mimalloc!`](crate::use_mimalloc) expands to.

    pub use mimalloc::MiMalloc;

    /// `mi_option_arena_eager_commit` in mimalloc's `mi_option_e`.
    const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    /// `mi_option_purge_delay` in mimalloc's `mi_option_e` (milliseconds).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

    /// Turns off eager arena commits; runs before the first allocation.
    pub fn tune() {
        // SAFETY: sets one of mimalloc's global options before anything is
        // allocated; any value is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }

    /// Gives freed memory back to the system at once instead of after a
    /// delay: for a process that allocates and frees for seconds on end and
    /// never idles (the component compiler, whose peak drops from about 510 to
    /// 370 MiB for a Python component, 8% slower).
    pub fn purge_at_once() {
        // SAFETY: sets one of mimalloc's global options; any value is valid
        // at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }

    /// Returns memory freed after a burst of big allocations (loading or
    /// compiling components: tens of MiB for a Python one) to the system now.
    /// Without it mimalloc keeps it committed until the allocating thread
    /// allocates again: about 145 MiB for each Python deploy, for good. A no-op
    /// for a program with another global allocator.
    pub fn give_back() {
        // SAFETY: `mi_collect` has no preconditions.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}
