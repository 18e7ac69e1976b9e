//! Webhooks: incoming hooks (a URL that runs an agent with the body it is
//! sent, signed per Standard Webhooks with the hook's secret) and outgoing
//! subscriptions with their deliveries. Pure data.

use serde::Serialize;

use crate::time;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hook {
    pub id: String,
    #[serde(skip)]
    pub workspace: String,
    pub agent_id: String,
    pub description: String,
    /// Where senders POST (relative to the host's address).
    pub url: String,
    /// The signing secret (`whsec_…`): shown once, when the hook is made.
    #[serde(skip)]
    pub secret: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

impl Hook {
    pub fn url_of(id: &str) -> String {
        format!("/v1/hooks/{id}")
    }
}

/// The events an outgoing webhook may subscribe to.
pub const WEBHOOK_EVENTS: [&str; 5] = [
    "execution.completed",
    "execution.failed",
    "execution.cancelled",
    "execution.rejected",
    "approval.requested",
];

/// An outgoing webhook: a URL of the workspace's that is sent its chosen
/// events, signed per Standard Webhooks with its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: String,
    #[serde(skip)]
    pub workspace: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    /// Shown once, when it is made.
    #[serde(skip)]
    pub secret: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet: its next attempt is due at `next_attempt_at`.
    Pending,
    Delivered,
    /// Every attempt failed; redeliver it by hand.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One attempt to deliver a message.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    #[serde(serialize_with = "time::serialize", deserialize_with = "time::deserialize")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A message owed to a subscription, and how its delivery went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Also its `webhook-id`: the same on every attempt.
    pub id: String,
    pub subscription_id: String,
    pub event: String,
    /// The message: `{type, timestamp, data}`.
    #[schema(value_type = Object)]
    pub payload: std::sync::Arc<serde_json::value::RawValue>,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<i64>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}
