//! Serving: `serve(listener, app, shutdown)` runs the API on a bound listener
//! until `shutdown` resolves, then drains (new executions refused with 503, what
//! runs finishing within the grace, streams ended), stops, and commits
//! everything. Tests start it in-process on `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api;
use crate::app::App;

pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = api::router(Arc::clone(&app));
    let draining = Arc::clone(&app);
    let drained = async move {
        shutdown.await;
        draining.drain().await;
    };
    axum::serve(listener, router).with_graceful_shutdown(drained).await?;
    app.close().await;
    Ok(())
}
