//! Incoming webhooks: a URL that runs an agent with the body it is sent,
//! signed per Standard Webhooks with the hook's secret. Pure data.

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
