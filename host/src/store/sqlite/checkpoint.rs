//! WAL checkpoints off the write path. SQLite's automatic checkpoint runs inside
//! the commit that crosses its threshold, so now and then one commit of the
//! writer (and every execution waiting on it) stalls while pages are copied and
//! synced. The writer's connection turns that off. This thread checkpoints
//! instead, `PASSIVE` (it never waits for, nor blocks, the writer or readers),
//! every [`EVERY`], and publishes how long the WAL is. Under constant writes a
//! passive checkpoint never reaches the WAL's end, so the file would only grow:
//! past [`MAX_WAL_FRAMES`] the writer checkpoints once itself, between batches,
//! copying only the little the last pass left, and the WAL starts over.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is copied back into the database.
const EVERY: Duration = Duration::from_millis(25);
/// Pages (4 KiB) the WAL may hold before the writer restarts it.
pub const MAX_WAL_FRAMES: i64 = 32 * 1024;

/// Stops the thread when dropped.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Pages in the WAL at the last pass.
    pub wal_frames: Arc<AtomicI64>,
}

impl Checkpointer {
    pub fn start(db_path: PathBuf) -> anyhow::Result<Self> {
        let conn = Connection::open(&db_path)?;
        conn.busy_timeout(Duration::from_secs(1))?;
        let stop = Arc::new(AtomicBool::new(false));
        let wal_frames = Arc::new(AtomicI64::new(0));
        let (flag, frames) = (Arc::clone(&stop), Arc::clone(&wal_frames));
        std::thread::Builder::new()
            .name("warden-sqlite-checkpoint".into())
            .spawn(move || {
                // A failing disk fails every pass: say so once per streak.
                let mut failing = false;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EVERY);
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                        Ok(n) => {
                            frames.store(n, Ordering::Relaxed);
                            if std::mem::take(&mut failing) {
                                tracing::info!("WAL checkpoints work again");
                            }
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut failing, true) {
                                tracing::warn!(error = %e, "WAL checkpoint failed (again until said otherwise)");
                            }
                        }
                    }
                }
            })?;
        Ok(Self { stop, wal_frames })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Called by the writer between batches: restarts a WAL that grew too long.
pub fn restart_if_long(conn: &Connection, wal_frames: &AtomicI64) {
    if wal_frames.load(Ordering::Relaxed) <= MAX_WAL_FRAMES {
        return;
    }
    wal_frames.store(0, Ordering::Relaxed);
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
}
