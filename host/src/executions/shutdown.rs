//! Shutting down (SIGTERM, SIGINT): new executions are refused and nothing more
//! starts; what runs may finish within the grace; then every stream and every
//! caller still waiting is told the host is closing. What still runs then ends
//! as on a crash (`host_restart` at the next start); what waits stays queued.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::Executions;

/// How often a drain looks whether anything still runs.
const IDLE_POLL: Duration = Duration::from_millis(10);

impl Executions {
    /// Refuses new executions and starts nothing more.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.scheduler.pause();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Waits until nothing runs or `grace` has passed; returns how many still run.
    pub async fn wait_idle(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let (running, _) = self.scheduler.load();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }

    /// Tells every stream and waiting caller that the host is closing.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Changes to `true` when the host closes.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}
