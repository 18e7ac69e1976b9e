//! Wake-up hints between hosts: `LISTEN`/`NOTIFY` on one channel, on a
//! connection of its own (reconnected when lost). A host notifies only when
//! others have something to do at once: it accepted an execution it has no
//! room for, or it ended one another host accepted (and follows); every host
//! listening wakes its claims. Hints are only hints: polling finds whatever
//! one lost, a poll later.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The channel of every hint.
pub const CHANNEL: &str = "warden_queue";

/// How long a lost listening connection waits to connect again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Listens until aborted: each notification wakes `wake`.
pub async fn listen(config: tokio_postgres::Config, tls: MakeRustlsConnect, wake: Arc<Notify>) {
    loop {
        match listen_once(&config, &tls, &wake).await {
            Ok(()) => tracing::warn!("the connection listening for other hosts' hints closed"),
            Err(e) => tracing::warn!(error = %e, "could not listen for other hosts' hints"),
        }
        // Whatever was hinted meanwhile, polls find.
        tokio::time::sleep(RECONNECT).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    wake: &Arc<Notify>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let wake = Arc::clone(wake);
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let ended = driver.await;
    drop(client);
    match ended {
        Ok(result) => result,
        // The driver task was aborted or panicked: as a closed connection.
        Err(_) => Ok(()),
    }
}
