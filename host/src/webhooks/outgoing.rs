//! Webhooks, outgoing: a workspace's subscriptions (a URL, the events it
//! wants, a secret) and the delivery of each event to each one. Deliveries
//! are stored with what they announce (an execution's end, an approval
//! request), then sent by one loop, signed per Standard Webhooks, to the
//! address the egress rules allow; a failed attempt is retried on a capped
//! schedule, every attempt recorded. Sending never holds up an execution, and
//! what is stored survives a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};

use super::signature;
use crate::config::{ToolsConfig, WebhooksConfig};
use crate::ports::Outbox;
use crate::record::{Attempt, Delivery, DeliveryStatus, Subscription, WEBHOOK_EVENTS};
use crate::store::{Backend, StoreError, Stores, WebhookStore};
use crate::{ids, time};

/// Deliveries read per pass, and sent at once.
const BATCH: u32 = 64;
const CONCURRENCY: usize = 16;
/// Longest the loop sleeps without looking.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Attempts kept on a delivery (the newest).
const MAX_ATTEMPTS_KEPT: usize = 20;
/// Most of a receiver's error body kept.
const MAX_ERROR: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub struct Outgoing {
    store: Arc<dyn WebhookStore>,
    /// Whether this host leads (only the leading host sends deliveries).
    backend: Arc<dyn Backend>,
    config: WebhooksConfig,
    /// The subscriptions, by workspace (read at start, kept as they change).
    by_workspace: RwLock<HashMap<String, Vec<Subscription>>>,
    wake: Notify,
    /// Finished deliveries are kept this long (the executions' retention).
    keep_ms: i64,
    /// When old deliveries were last swept.
    swept_at: AtomicI64,
}

/// How often old deliveries are swept.
const SWEEP_EVERY_MS: i64 = 10 * 60 * 1000;

impl Outgoing {
    /// Reads the subscriptions again (other hosts on a shared store make and
    /// delete them too).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let mut by_workspace: HashMap<String, Vec<Subscription>> = HashMap::new();
        for s in self.store.subscriptions().await? {
            by_workspace.entry(s.workspace.clone()).or_default().push(s);
        }
        *self.write() = by_workspace;
        Ok(())
    }

    /// The subscriptions as stored.
    pub async fn open(stores: &Stores, config: WebhooksConfig, retention_secs: u64) -> anyhow::Result<Arc<Self>> {
        let mut by_workspace: HashMap<String, Vec<Subscription>> = HashMap::new();
        for s in stores.webhooks.subscriptions().await? {
            by_workspace.entry(s.workspace.clone()).or_default().push(s);
        }
        Ok(Arc::new(Self {
            store: Arc::clone(&stores.webhooks),
            backend: Arc::clone(&stores.backend),
            config,
            by_workspace: RwLock::new(by_workspace),
            wake: Notify::new(),
            keep_ms: match retention_secs {
                0 => i64::MAX,
                s => i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX),
            },
            swept_at: AtomicI64::new(0),
        }))
    }

    /// Whether old deliveries are due to be swept (and from now, not again
    /// for a while).
    fn sweep_due(&self) -> bool {
        let now = time::now_ms();
        if self.keep_ms == i64::MAX || now - self.swept_at.load(Ordering::Relaxed) < SWEEP_EVERY_MS {
            return false;
        }
        self.swept_at.store(now, Ordering::Relaxed);
        true
    }

    /// Starts sending what is owed, until the host closes.
    pub fn start(self: &Arc<Self>, closing: watch::Receiver<bool>) {
        tokio::spawn(run(Arc::downgrade(self), closing));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vec<Subscription>>> {
        self.by_workspace
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<Subscription>>> {
        self.by_workspace
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes a URL of `workspace` to events; the subscription carries its
    /// secret (shown this once).
    pub async fn subscribe(
        &self,
        workspace: &str,
        url: &str,
        events: Vec<String>,
        description: String,
    ) -> Result<Subscription, SubscriptionError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| SubscriptionError::Invalid(format!("url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(SubscriptionError::Invalid(
                "url: an http or https URL with a host".into(),
            ));
        }
        if events.is_empty() || events.iter().any(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
            return Err(SubscriptionError::Invalid(format!(
                "events: one or more of {}",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        if description.chars().count() > 1024 {
            return Err(SubscriptionError::Invalid(
                "description: at most 1024 characters".into(),
            ));
        }
        let subscription = Subscription {
            id: ids::subscription(),
            workspace: workspace.to_owned(),
            url: url.to_owned(),
            events,
            description,
            secret: signature::new_secret()?,
            created_at: time::now_ms(),
        };
        self.store.subscribe(subscription.clone()).await?;
        self.write()
            .entry(workspace.to_owned())
            .or_default()
            .push(subscription.clone());
        Ok(subscription)
    }

    /// A subscription of `workspace`.
    pub fn get(&self, workspace: &str, id: &str) -> Result<Subscription, SubscriptionError> {
        self.read()
            .get(workspace)
            .and_then(|subs| subs.iter().find(|s| s.id == id).cloned())
            .ok_or_else(|| SubscriptionError::NotFound(id.to_owned()))
    }

    pub fn list(&self, workspace: &str) -> Vec<Subscription> {
        self.read().get(workspace).cloned().unwrap_or_default()
    }

    /// Deletes a subscription with its deliveries.
    pub async fn unsubscribe(&self, workspace: &str, id: &str) -> Result<(), SubscriptionError> {
        self.get(workspace, id)?;
        self.store.unsubscribe(id).await?;
        if let Some(subs) = self.write().get_mut(workspace) {
            subs.retain(|s| s.id != id);
        }
        Ok(())
    }

    /// A subscription's deliveries, newest first.
    pub async fn deliveries(
        &self,
        workspace: &str,
        id: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<Delivery>, bool), SubscriptionError> {
        self.get(workspace, id)?;
        Ok(self.store.deliveries(id, after, limit).await?)
    }

    /// Sends a delivery again now (pending, its attempts kept).
    pub async fn redeliver(&self, workspace: &str, id: &str, delivery: &str) -> Result<Delivery, SubscriptionError> {
        self.get(workspace, id)?;
        let mut d = self
            .store
            .delivery(id, delivery)
            .await?
            .ok_or_else(|| SubscriptionError::NotFound(delivery.to_owned()))?;
        d.status = DeliveryStatus::Pending;
        d.next_attempt_at = Some(time::now_ms());
        self.store.deliver(vec![d.clone()]).await?;
        self.wake.notify_one();
        Ok(d)
    }

    /// One attempt: signed, to the checked address, within the timeout.
    async fn attempt(&self, subscription: &Subscription, d: &Delivery) -> Attempt {
        let started = Instant::now();
        let at = time::now_ms();
        let result = self.send(subscription, d, at / 1000).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((status, _)) if (200..300).contains(&status) => Attempt {
                at,
                status_code: Some(status),
                error: None,
                duration_ms,
            },
            Ok((status, body)) => Attempt {
                at,
                status_code: Some(status),
                error: Some(format!("the receiver answered {status}: {body}")),
                duration_ms,
            },
            Err(e) => Attempt {
                at,
                status_code: None,
                error: Some(e),
                duration_ms,
            },
        }
    }

    async fn send(&self, s: &Subscription, d: &Delivery, timestamp: i64) -> Result<(u16, String), String> {
        let url = reqwest::Url::parse(&s.url).map_err(|e| e.to_string())?;
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let rules = ToolsConfig {
            allow_private_addresses: self.config.allow_private_addresses,
            http_timeout_ms: self.config.timeout_ms,
            ..ToolsConfig::default()
        };
        let addr = crate::tools::egress::resolve_checked(&rules, &host, port)
            .await
            .map_err(|e| e.to_string())?;
        let body = d.payload.get().to_owned();
        let signature = signature::sign(&s.secret, &d.id, timestamp, body.as_bytes())
            .ok_or_else(|| "the subscription's secret is damaged".to_owned())?;
        // To the checked address only: no redirect, no proxy, no second lookup.
        let client = reqwest::Client::builder()
            .resolve(&host, addr)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        // The start of its answer, for the record; the rest is not read.
        let mut response = response;
        let mut head = Vec::new();
        while head.len() < MAX_ERROR {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR - head.len())]),
                _ => break,
            }
        }
        Ok((status, String::from_utf8_lossy(&head).into_owned()))
    }

    /// One delivery due: attempted, and its outcome stored (false: it could
    /// not be).
    async fn handle(&self, mut d: Delivery) -> bool {
        let known = self
            .read()
            .values()
            .flatten()
            .find(|s| s.id == d.subscription_id)
            .cloned();
        // One another host made since the subscriptions were last read.
        let subscription = match known {
            Some(s) => s,
            None => match self.store.subscription(&d.subscription_id).await {
                Ok(Some(s)) => s,
                Ok(None) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read a delivery's subscription");
                    return false;
                }
            },
        };
        let attempt = self.attempt(&subscription, &d).await;
        let delivered = attempt.error.is_none();
        d.attempts.push(attempt);
        if d.attempts.len() > MAX_ATTEMPTS_KEPT {
            d.attempts.remove(0);
        }
        let failures = d.attempts.iter().rev().take_while(|a| a.error.is_some()).count();
        // At most as many retries as attempts are kept, so that they end.
        let retry = self
            .config
            .retry_schedule_secs
            .iter()
            .take(MAX_ATTEMPTS_KEPT - 1)
            .nth(failures.saturating_sub(1));
        if delivered {
            d.status = DeliveryStatus::Delivered;
            d.next_attempt_at = None;
        } else if let Some(wait) = retry {
            let wait_ms = i64::try_from(wait.saturating_mul(1000)).unwrap_or(i64::MAX);
            d.next_attempt_at = Some(time::now_ms().saturating_add(wait_ms));
        } else {
            d.status = DeliveryStatus::Failed;
            d.next_attempt_at = None;
        }
        if let Err(e) = self.store.deliver(vec![d]).await {
            tracing::warn!(error = %e, "could not record a webhook delivery attempt");
            return false;
        }
        true
    }
}

impl Outbox for Outgoing {
    fn deliveries(&self, workspace: &str, event: &str, data: &dyn Fn() -> String) -> Vec<Delivery> {
        let subscriptions = self.read();
        let Some(subs) = subscriptions.get(workspace) else {
            return Vec::new();
        };
        let wanted: Vec<&Subscription> = subs.iter().filter(|s| s.events.iter().any(|e| e == event)).collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let now = time::now_ms();
        let payload = format!(
            r#"{{"type":"{event}","timestamp":"{}","data":{}}}"#,
            time::to_rfc3339(now),
            data()
        );
        let Ok(payload) = RawValue::from_string(payload) else {
            return Vec::new();
        };
        let payload: Arc<RawValue> = payload.into();
        wanted
            .into_iter()
            .map(|s| Delivery {
                id: ids::message(),
                subscription_id: s.id.clone(),
                event: event.to_owned(),
                payload: Arc::clone(&payload),
                status: DeliveryStatus::Pending,
                attempts: Vec::new(),
                next_attempt_at: Some(now),
                created_at: now,
            })
            .collect()
    }

    fn stored(&self) {
        self.wake.notify_one();
    }
}

async fn run(outgoing: Weak<Outgoing>, mut closing: watch::Receiver<bool>) {
    loop {
        let Some(this) = outgoing.upgrade() else { return };
        if *closing.borrow() {
            return;
        }
        // On a store several hosts share, only the leading host sends.
        if !this.backend.leads() {
            drop(this);
            tokio::select! {
                () = tokio::time::sleep(MAX_SLEEP) => {}
                _ = closing.changed() => {}
            }
            continue;
        }
        let due = this.store.due(time::now_ms(), BATCH).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the webhook deliveries due");
            Vec::new()
        });
        let full = due.len() == BATCH as usize;
        let unrecorded = AtomicUsize::new(0);
        futures_util::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |d| {
                let (this, unrecorded) = (Arc::clone(&this), &unrecorded);
                async move {
                    if !this.handle(d).await {
                        unrecorded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await;
        // Attempts that could not be recorded are due again: not at once.
        let failing = unrecorded.load(Ordering::Relaxed) > 0;
        if full && !failing {
            continue;
        }
        if this.sweep_due() {
            let before = time::now_ms().saturating_sub(this.keep_ms);
            if let Err(e) = this.store.sweep(before).await {
                tracing::warn!(error = %e, "could not sweep old webhook deliveries");
            }
        }
        let next = this.store.next_due().await.ok().flatten();
        let wait = match (failing, next) {
            (true, _) | (_, None) => MAX_SLEEP,
            (false, Some(t)) => Duration::from_millis(t.saturating_sub(time::now_ms()).max(0) as u64).min(MAX_SLEEP),
        };
        let woken = this.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = woken => {}
            _ = closing.changed() => {}
        }
    }
}
