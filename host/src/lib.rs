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
