//! [`Commit`]: the answer to a write handed to a store.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::StoreError;

/// A write handed to a store. Await it to know the write is committed (or why
/// not); [`detach`](Commit::detach) it not to wait: the write happens either way.
#[must_use = "await the commit, or detach it not to wait for it"]
pub struct Commit(State);

enum State {
    Pending(oneshot::Receiver<Result<(), StoreError>>),
    Ready(Option<Result<(), StoreError>>),
}

impl Commit {
    /// A write the backend will answer on `ack`.
    pub fn pending(ack: oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Self(State::Pending(ack))
    }

    /// A write already decided (refused before it was queued).
    pub fn ready(result: Result<(), StoreError>) -> Self {
        Self(State::Ready(Some(result)))
    }

    /// Does not wait for the write.
    pub fn detach(self) {}
}

impl Future for Commit {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            State::Pending(ack) => Pin::new(ack)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(StoreError::Closed))),
            State::Ready(result) => Poll::Ready(result.take().unwrap_or(Err(StoreError::Closed))),
        }
    }
}
