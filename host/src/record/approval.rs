//! Approval requests: a run asks a person to approve something, and waits
//! (unloaded, for as long as it takes) for the decision. Pure data.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    /// Nobody decided before the request's timeout.
    Expired,
    /// Its execution ended (cancelled, timed out) before a decision.
    Cancelled,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 5] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Rejected,
        ApprovalStatus::Expired,
        ApprovalStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One approval request and, once made, its decision.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub id: String,
    pub workspace: String,
    pub agent_id: String,
    pub execution_id: String,
    pub title: String,
    /// JSON the agent attached (what is to be approved).
    #[schema(value_type = serde_json::Value)]
    pub detail: Arc<RawValue>,
    /// Names of the keys that may decide (empty: any admin or approver key of
    /// the workspace).
    pub approvers: Vec<String>,
    pub status: ApprovalStatus,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<i64>,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<i64>,
    /// The id and the name of the key that decided.
    pub decided_by: Option<String>,
    pub decided_by_name: Option<String>,
    /// The approver's comment (approve) or reason (reject).
    pub comment: Option<String>,
    /// JSON the approver handed to the agent with an approval.
    #[schema(value_type = Option<serde_json::Value>)]
    pub data: Option<Arc<RawValue>>,
}

/// A decision on a pending request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub status: ApprovalStatus,
    pub at: i64,
    pub by: Option<String>,
    pub by_name: Option<String>,
    pub comment: Option<String>,
    pub data: Option<Arc<RawValue>>,
}
