//! Host implementations of the `warden:agent` imports, one module per WIT
//! interface. Each works on the per-execution [`RunState`](crate::runtime::RunState)
//! and must never block or panic.

mod artifacts;
mod llm;
mod log;
mod step;
mod tools;

use crate::runtime::RunState;
use crate::runtime::bindings::warden::agent::types;

impl types::Host for RunState {}
