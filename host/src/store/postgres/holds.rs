//! Holds across hosts: a session advisory lock on a connection of the holds'
//! own pool (so that a hold never takes a connection the reads made under it
//! need), keyed by what it holds still. A conversation's turns are held before
//! a host reads the turns under way (on that connection) and released once
//! its turn is committed, so two hosts never both find a conversation idle
//! and start a turn each; a memory scope is held while a host reads its bytes
//! and commits a write, so two hosts never both find room under its cap; a
//! schedule is held while a host changes it (an edit, the leader firing it),
//! so that neither change undoes the other. A
//! lock is tried, not waited for: a host whose try fails gives the connection
//! back and tries again shortly, so waiting holds no connection. A hold
//! dropped unreleased (its request gone) closes its connection instead: the
//! server frees a session's locks with it.

use std::time::Duration;

use async_trait::async_trait;

use super::sql::Reader;
use super::{PgStore, read_error};
use crate::store::{Hold, StoreError, TurnHold};

/// The first key of every turn hold (the second is the conversation's hash).
const TURNS: i32 = 0x7475_726e;
/// The first key of every memory hold (the second is the scope's hash).
const MEMORY: i32 = 0x6d65_6d6f;
/// The first key of every schedule hold (the second is the schedule's hash).
const SCHEDULES: i32 = 0x7363_6864;

/// How long a host waits before it tries a held key again (another host
/// holds it for as long as a commit takes).
const TRY_AGAIN: Duration = Duration::from_millis(5);
/// How long a host tries before it gives up (a hold lasts a commit; one held
/// this long belongs to a host that is stuck, or gone with its connection not
/// yet closed).
const GIVE_UP: Duration = Duration::from_secs(30);

struct PgHold {
    /// `None` once released (or given back untaken).
    reader: Option<Reader>,
    key: i32,
    /// The conversation, the memory scope, or the schedule.
    name: String,
}

pub async fn hold_turns(store: &PgStore, conversation: &str) -> Result<Box<dyn TurnHold>, StoreError> {
    let what = format!("conversation {conversation}'s turns");
    Ok(Box::new(hold(store, TURNS, conversation, &what).await?))
}

pub async fn hold_memory(store: &PgStore, scope: &str) -> Result<Box<dyn Hold>, StoreError> {
    let what = format!("memory {scope}");
    Ok(Box::new(hold(store, MEMORY, scope, &what).await?))
}

pub async fn hold_schedule(store: &PgStore, id: &str) -> Result<Box<dyn Hold>, StoreError> {
    let what = format!("schedule {id}");
    Ok(Box::new(hold(store, SCHEDULES, id, &what).await?))
}

async fn hold(store: &PgStore, key: i32, name: &str, what: &str) -> Result<PgHold, StoreError> {
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    loop {
        // Guarded from the start: dropped while it tries, it closes its connection.
        let mut hold = PgHold {
            reader: Some(store.holder().await?),
            key,
            name: name.to_owned(),
        };
        let taken = match &hold.reader {
            Some(reader) => reader
                .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&key, &name])
                .await
                .and_then(|row| Ok(row.try_get::<_, bool>(0)?))
                .map_err(read_error)?,
            None => false,
        };
        if taken {
            return Ok(hold);
        }
        // Not taken: the connection holds nothing, back to the pool.
        drop(hold.reader.take());
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "{what} has been held by another host for over {} s",
                GIVE_UP.as_secs()
            )));
        }
        tokio::time::sleep(TRY_AGAIN).await;
    }
}

impl PgHold {
    async fn unlock(&mut self) {
        let Some(reader) = &self.reader else { return };
        let unlocked = reader
            .query("SELECT pg_advisory_unlock($1, hashtext($2))", &[&self.key, &self.name])
            .await;
        match unlocked {
            // Back to the pool, free of the lock.
            Ok(_) => drop(self.reader.take()),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "could not release a hold; closing the connection"
            ),
        }
    }
}

#[async_trait]
impl TurnHold for PgHold {
    async fn turns_under_way(&self) -> Result<Vec<(String, String)>, StoreError> {
        let Some(reader) = &self.reader else {
            return Err(StoreError::Read("the conversation's turns are not held".into()));
        };
        super::conversations::turns_under_way(reader, &self.name)
            .await
            .map_err(read_error)
    }

    async fn release(mut self: Box<Self>) {
        self.unlock().await;
    }
}

#[async_trait]
impl Hold for PgHold {
    async fn release(mut self: Box<Self>) {
        self.unlock().await;
    }
}

impl Drop for PgHold {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            // Closing the connection frees the lock.
            drop(deadpool_postgres::Object::take(reader.0));
        }
    }
}
