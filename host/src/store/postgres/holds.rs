//! A conversation's turns held still across hosts: a session advisory lock
//! on a pooled connection of its own, keyed by the conversation, taken
//! before a host reads the turns under way and released once its turn is
//! committed, so two hosts never both find a conversation idle and start a
//! turn each. A hold dropped unreleased closes its connection instead (the
//! server frees a session's locks with it).

use async_trait::async_trait;

use super::sql::Reader;
use super::{PgStore, read_error};
use crate::store::{StoreError, TurnHold};

/// The first key of every turn hold (the second is the conversation's hash).
const TURNS: i32 = 0x7475_726e;

struct PgTurnHold {
    /// `None` once released.
    reader: Option<Reader>,
    conversation: String,
}

pub async fn hold_turns(store: &PgStore, conversation: &str) -> Result<Box<dyn TurnHold>, StoreError> {
    let reader = store.reader().await?;
    reader
        .query("SELECT pg_advisory_lock($1, hashtext($2))", &[&TURNS, &conversation])
        .await
        .map_err(read_error)?;
    Ok(Box::new(PgTurnHold {
        reader: Some(reader),
        conversation: conversation.to_owned(),
    }))
}

#[async_trait]
impl TurnHold for PgTurnHold {
    async fn release(mut self: Box<Self>) {
        let Some(reader) = self.reader.take() else { return };
        let unlocked = reader
            .query(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&TURNS, &self.conversation],
            )
            .await;
        match unlocked {
            // Back to the pool, free of the lock.
            Ok(_) => drop(reader),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not release a conversation's turns; closing the connection");
                drop(deadpool_postgres::Object::take(reader.0));
            }
        }
    }
}

impl Drop for PgTurnHold {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            // Closing the connection frees the lock.
            drop(deadpool_postgres::Object::take(reader.0));
        }
    }
}
