//! End-to-end tests: one binary, a module per area. Each test starts a real server
//! on 127.0.0.1:0 with its own data dir and deploys real components.

mod artifacts;
mod auth;
mod bad_input;
mod cli;
mod events;
mod execute;
mod hostile;
mod listing;
mod llm;
mod openapi;
mod recovery;
mod restart;
mod run_log;
mod sandbox;
mod scheduling;
mod store;
mod tools;

// The allocator the `warden` binary runs with.
warden_host::use_mimalloc!();
