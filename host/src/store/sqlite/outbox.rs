//! The webhook store on SQLite: subscriptions and the deliveries owed to
//! them (the outbox), for the writer ([`super::apply`] calls in here) and for
//! reads.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::value::RawValue;

use super::SqliteStore;
use crate::record::{Delivery, DeliveryStatus, Subscription};
use crate::store::{StoreError, WebhookStore};

pub(super) fn subscribe(tx: &Transaction<'_>, s: &Subscription) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO webhook_subscriptions (id, workspace, url, events, description, secret, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        s.id,
        s.workspace,
        s.url,
        serde_json::to_string(&s.events)?,
        s.description,
        s.secret,
        s.created_at
    ])?;
    Ok(())
}

pub(super) fn sweep(tx: &Transaction<'_>, before: i64) -> anyhow::Result<()> {
    tx.prepare_cached("DELETE FROM webhook_deliveries WHERE status != 'pending' AND created_at < ?1")?
        .execute([before])?;
    Ok(())
}

pub(super) fn unsubscribe(tx: &Transaction<'_>, id: &str) -> anyhow::Result<()> {
    tx.prepare_cached("DELETE FROM webhook_deliveries WHERE subscription_id = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM webhook_subscriptions WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Adds or replaces deliveries (only of subscriptions that still exist).
pub(super) fn deliver(tx: &Transaction<'_>, deliveries: &[Delivery]) -> anyhow::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO webhook_deliveries
            (id, subscription_id, event, payload, status, attempts, next_attempt_at, created_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM webhook_subscriptions WHERE id = ?2)",
    )?;
    for d in deliveries {
        stmt.execute(params![
            d.id,
            d.subscription_id,
            d.event,
            d.payload.get(),
            d.status.as_str(),
            serde_json::to_string(&d.attempts)?,
            d.next_attempt_at,
            d.created_at
        ])?;
    }
    Ok(())
}

fn subscription_from_row(r: &Row<'_>) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        id: r.get(0)?,
        workspace: r.get(1)?,
        url: r.get(2)?,
        events: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
        description: r.get(4)?,
        secret: r.get(5)?,
        created_at: r.get(6)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str = "id, workspace, url, events, description, secret, created_at";
const DELIVERY_COLUMNS: &str = "id, subscription_id, event, payload, status, attempts, next_attempt_at, created_at";

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let payload: String = r.get(3)?;
    Ok(Delivery {
        id: r.get(0)?,
        subscription_id: r.get(1)?,
        event: r.get(2)?,
        payload: RawValue::from_string(payload).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from),
        status: DeliveryStatus::parse(&r.get::<_, String>(4)?).unwrap_or(DeliveryStatus::Failed),
        attempts: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
        next_attempt_at: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn deliveries(
    conn: &Connection,
    subscription_id: &str,
    after: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<Delivery>, bool)> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = ?1 AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    );
    let mut rows: Vec<Delivery> = conn
        .prepare_cached(&sql)?
        .query_map(params![subscription_id, after, i64::from(limit) + 1], delivery_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_owned();
        self.query(move |c| {
            let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = ?1");
            Ok(c.prepare_cached(&sql)?
                .query_row([&id], subscription_from_row)
                .optional()?)
        })
        .await
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.query(|c| {
            let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY id");
            Ok(c.prepare_cached(&sql)?
                .query_map([], subscription_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn delivery(&self, subscription_id: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        let (subscription_id, id) = (subscription_id.to_owned(), id.to_owned());
        self.query(move |c| {
            let sql =
                format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = ?1 AND id = ?2");
            Ok(c.prepare_cached(&sql)?
                .query_row([&subscription_id, &id], delivery_from_row)
                .optional()?)
        })
        .await
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        self.query(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
            );
            Ok(c.prepare_cached(&sql)?
                .query_map(params![now, limit], delivery_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.query(|c| {
            Ok(
                c.prepare_cached("SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'")?
                    .query_row([], |r| r.get(0))?,
            )
        })
        .await
    }

    async fn deliveries(
        &self,
        subscription_id: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<Delivery>, bool), StoreError> {
        let id = subscription_id.to_owned();
        self.query(move |c| deliveries(c, &id, after.as_deref(), limit)).await
    }
}
