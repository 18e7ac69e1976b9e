//! The webhook store on Postgres: subscriptions and the deliveries owed to
//! them (the outbox), for the writer (the batch applier calls in here) and
//! for reads.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::sql::{Reader, Row, Tx};
use super::{PgStore, read_error};
use crate::record::{Delivery, DeliveryStatus, Subscription};
use crate::store::{StoreError, WebhookStore};

pub(super) fn subscribe(tx: &mut Tx<'_>, s: &Subscription) -> anyhow::Result<()> {
    let events = serde_json::to_string(&s.events)?;
    tx.execute(
        "INSERT INTO webhook_subscriptions (id, workspace, url, events, description, secret, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET workspace = EXCLUDED.workspace, url = EXCLUDED.url,
            events = EXCLUDED.events, description = EXCLUDED.description, secret = EXCLUDED.secret,
            created_at = EXCLUDED.created_at",
        &[
            &s.id,
            &s.workspace,
            &s.url,
            &events,
            &s.description,
            &s.secret,
            &s.created_at,
        ],
    )?;
    Ok(())
}

pub(super) fn sweep(tx: &mut Tx<'_>, before: i64) -> anyhow::Result<()> {
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE status != 'pending' AND created_at < $1",
        &[&before],
    )?;
    Ok(())
}

pub(super) fn unsubscribe(tx: &mut Tx<'_>, id: &str) -> anyhow::Result<()> {
    tx.execute("DELETE FROM webhook_deliveries WHERE subscription_id = $1", &[&id])?;
    tx.execute("DELETE FROM webhook_subscriptions WHERE id = $1", &[&id])?;
    Ok(())
}

/// Adds or replaces deliveries (only of subscriptions that still exist).
pub(super) fn deliver(tx: &mut Tx<'_>, deliveries: &[Delivery]) -> anyhow::Result<()> {
    for d in deliveries {
        let attempts = serde_json::to_string(&d.attempts)?;
        tx.execute(
            "INSERT INTO webhook_deliveries
                (id, subscription_id, event, payload, status, attempts, next_attempt_at, created_at)
             SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::TEXT, $5::TEXT, $6::TEXT, $7::BIGINT, $8::BIGINT
             WHERE EXISTS (SELECT 1 FROM webhook_subscriptions WHERE id = $2::TEXT)
             ON CONFLICT (subscription_id, id) DO UPDATE SET event = EXCLUDED.event, payload = EXCLUDED.payload,
                status = EXCLUDED.status, attempts = EXCLUDED.attempts, next_attempt_at = EXCLUDED.next_attempt_at,
                created_at = EXCLUDED.created_at",
            &[
                &d.id,
                &d.subscription_id,
                &d.event,
                &d.payload.get(),
                &d.status.as_str(),
                &attempts,
                &d.next_attempt_at,
                &d.created_at,
            ],
        )?;
    }
    Ok(())
}

fn subscription_from_row(r: &Row) -> anyhow::Result<Subscription> {
    Ok(Subscription {
        id: r.try_get(0)?,
        workspace: r.try_get(1)?,
        url: r.try_get(2)?,
        events: serde_json::from_str(&r.try_get::<_, String>(3)?).unwrap_or_default(),
        description: r.try_get(4)?,
        secret: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str = "id, workspace, url, events, description, secret, created_at";
const DELIVERY_COLUMNS: &str = "id, subscription_id, event, payload, status, attempts, next_attempt_at, created_at";

fn delivery_from_row(r: &Row) -> anyhow::Result<Delivery> {
    let payload: String = r.try_get(3)?;
    Ok(Delivery {
        id: r.try_get(0)?,
        subscription_id: r.try_get(1)?,
        event: r.try_get(2)?,
        payload: RawValue::from_string(payload).map_or_else(|_| Arc::from(RawValue::NULL.to_owned()), Arc::from),
        status: DeliveryStatus::parse(&r.try_get::<_, String>(4)?).unwrap_or(DeliveryStatus::Failed),
        attempts: serde_json::from_str(&r.try_get::<_, String>(5)?).unwrap_or_default(),
        next_attempt_at: r.try_get(6)?,
        created_at: r.try_get(7)?,
    })
}

pub(super) async fn subscription(c: &Reader, id: &str) -> anyhow::Result<Option<Subscription>> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1");
    let row = c.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(subscription_from_row).transpose()
}

pub(super) async fn subscriptions(c: &Reader) -> anyhow::Result<Vec<Subscription>> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY id");
    let rows = c.query(&sql, &[]).await?;
    rows.iter().map(subscription_from_row).collect()
}

pub(super) async fn delivery(c: &Reader, subscription_id: &str, id: &str) -> anyhow::Result<Option<Delivery>> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = $1 AND id = $2");
    let row = c.query_opt(&sql, &[&subscription_id, &id]).await?;
    row.as_ref().map(delivery_from_row).transpose()
}

pub(super) async fn due(c: &Reader, now: i64, limit: u32) -> anyhow::Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2"
    );
    let rows = c.query(&sql, &[&now, &i64::from(limit)]).await?;
    rows.iter().map(delivery_from_row).collect()
}

pub(super) async fn next_due(c: &Reader) -> anyhow::Result<Option<i64>> {
    let row = c
        .query_one(
            "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

pub(super) async fn deliveries(
    c: &Reader,
    subscription_id: &str,
    after: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<Delivery>, bool)> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE subscription_id = $1 AND ($2::TEXT IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    );
    let rows = c
        .query(&sql, &[&subscription_id, &after, &(i64::from(limit) + 1)])
        .await?;
    let mut found = rows.iter().map(delivery_from_row).collect::<anyhow::Result<Vec<_>>>()?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    Ok((found, more))
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let c = self.reader().await?;
        subscription(&c, id).await.map_err(read_error)
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let c = self.reader().await?;
        subscriptions(&c).await.map_err(read_error)
    }

    async fn delivery(&self, subscription_id: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        let c = self.reader().await?;
        delivery(&c, subscription_id, id).await.map_err(read_error)
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let c = self.reader().await?;
        due(&c, now, limit).await.map_err(read_error)
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let c = self.reader().await?;
        next_due(&c).await.map_err(read_error)
    }

    async fn deliveries(
        &self,
        subscription_id: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<Delivery>, bool), StoreError> {
        let c = self.reader().await?;
        deliveries(&c, subscription_id, after.as_deref(), limit)
            .await
            .map_err(read_error)
    }
}
