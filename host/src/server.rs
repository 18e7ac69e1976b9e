//! Serving: `serve(listener, app, shutdown)` runs the API on a bound listener
//! until `shutdown` resolves, then drains (new executions refused with 503, what
//! runs finishing within the grace, streams ended), stops, and commits
//! everything. Tests start it in-process on `127.0.0.1:0`.
//!
//! Clients cannot starve it: the open-file limit is raised to its hard limit
//! at start, at most `http.max_connections` connections are served at once
//! (more wait in the listen queue), an HTTP/1 request's headers must arrive
//! within `http.header_timeout_ms` (idle keep-alive connections are closed after
//! it too), and a request's whole body within `http.body_timeout_ms`. A client
//! that stops taking what it is sent (a stream subscriber that never reads) holds
//! at most its connection's 64 KiB buffer, and is dropped once it has taken
//! nothing for `http.write_stall_ms`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use http_body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use crate::api;
use crate::app::App;
use crate::config::HttpLimits;

/// Bytes one HTTP/1 connection buffers, each way.
const WRITE_BUFFER: usize = 64 << 10;

pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    raise_open_file_limit();
    let limits = app.config.http;
    let body_timeout = Duration::from_millis(limits.body_timeout_ms);
    let router = api::router(Arc::clone(&app)).layer(axum::middleware::map_request(move |req: Request| async move {
        // A request without a body (most GETs) has nothing to wait for.
        req.map(|body| {
            if http_body::Body::is_end_stream(&body) {
                body
            } else {
                Body::new(Deadline::new(body, body_timeout))
            }
        })
    }));
    let builder = builder(&limits);
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    let write_stall = Duration::from_millis(limits.write_stall_ms);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Set once the host stops serving: a connection that has sent nothing yet
    // is closed then, not waited for.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let draining = Arc::clone(&app);
    let drained = async move {
        shutdown.await;
        draining.drain().await;
    };
    tokio::pin!(drained);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit?,
            () = &mut drained => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it
                    // was accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut drained => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            // Telling HTTP/1 from HTTP/2 waits for the first bytes, before
            // any header timeout runs: a client that sends none is closed.
            let mut first = [0u8; 1];
            let peeked = tokio::select! {
                peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => peeked,
                _ = stopped.wait_for(|s| *s) => return,
            };
            if !matches!(peeked, Ok(Ok(1..))) {
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(Stall::new(stream, write_stall)), service)
                .into_owned();
            let _ = watcher.watch(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    graceful.shutdown().await;
    app.close().await;
    Ok(())
}

/// HTTP/1 and HTTP/2 (negotiated per connection), with the header timeout.
fn builder(limits: &HttpLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        // What one connection buffers before it waits for its client to read
        // (hyper's default is ~400 KiB): a subscriber that never reads costs
        // this, not more.
        .max_buf_size(WRITE_BUFFER);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Raises the soft limit on open files to the hard limit: every connection,
/// run and database file takes a descriptor.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= limit.rlim_max {
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::debug!(
            open_files = limit.rlim_cur,
            "raised the open-file limit to its hard limit"
        );
    }
}

/// A connection whose writes fail once the client has taken nothing for
/// `limit` (each write that goes through starts the clock again).
struct Stall<T> {
    io: T,
    limit: Duration,
    since: Option<Pin<Box<Sleep>>>,
}

impl<T> Stall<T> {
    fn new(io: T, limit: Duration) -> Self {
        Self { io, limit, since: None }
    }

    /// What a write's poll means: through (the clock stops), or pending (the
    /// clock runs; past the limit, an error that closes the connection).
    fn judge<R>(&mut self, polled: Poll<std::io::Result<R>>, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.since = None;
            return polled;
        }
        let limit = self.limit;
        let since = self.since.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match since.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing for {} ms", limit.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stall<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stall<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.judge(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.judge(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.judge(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that must arrive whole before its deadline; past it, reading
/// fails (and the request with it) and the connection's slot is freed.
struct Deadline {
    body: Body,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl Deadline {
    fn new(body: Body, timeout: Duration) -> Self {
        Self {
            body,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            timeout,
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} ms")]
struct BodyTimeout(u128);

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(self.timeout.as_millis()).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_client_that_takes_nothing_is_dropped_after_the_stall_limit() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut conn = Stall::new(near, Duration::from_millis(100));
        let started = std::time::Instant::now();
        // The first KiB fits; then nothing is taken, and the write fails.
        let error = conn.write_all(&[7; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
        // A client that keeps taking, however slowly, is not dropped.
        let (near, mut far2) = tokio::io::duplex(1024);
        let mut conn = Stall::new(near, Duration::from_millis(100));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 512];
            let mut total = 0;
            while total < 8192 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                total += tokio::io::AsyncReadExt::read(&mut far2, &mut buf).await.unwrap();
            }
        });
        conn.write_all(&[7; 8192]).await.unwrap();
        reader.await.unwrap();
        drop(far.shutdown().await);
    }
}
