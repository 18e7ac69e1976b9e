//! Host implementations of the `warden:agent` imports, one module per WIT
//! interface. Each works on the per-execution [`RunState`](crate::runtime::RunState)
//! and must never block or panic.

mod approval;
mod artifacts;
mod http;
mod llm;
mod log;
mod memory;
mod step;
mod tools;

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::{JoinError, JoinHandle};

use crate::runtime::RunState;
use crate::runtime::bindings::warden::agent::types;

impl types::Host for RunState {}

/// Runs a long host call (a model or a tool) as its own task and waits for it.
/// A guest waiting in a host call is a suspended fiber whose stack stays
/// resident, so nothing deep or large may happen on it: the call's future is
/// built and polled on the worker threads (`make` runs there), and the fiber
/// moves only the small closure into a task; moving the call's own future (a
/// model call's is ~10 KiB: request, retries, HTTP) through `tokio::spawn` on
/// the fiber touched three more stack pages per parked run. Dropping the wait
/// (cancel, timeout) aborts the task.
pub(crate) fn off_fiber<M, F>(make: M) -> OffFiber<F::Output>
where
    M: FnOnce() -> F + Send + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    OffFiber(tokio::spawn(async move { Box::pin(make()).await }))
}

pub(crate) struct OffFiber<T>(JoinHandle<T>);

impl<T> Future for OffFiber<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for OffFiber<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
