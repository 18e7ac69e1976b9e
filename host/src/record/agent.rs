//! Deployed agents and their versions, as stored and as the API shows them.

use serde::Serialize;

use crate::manifest::{Limits, Manifest};
use crate::time;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: String,
    /// The workspace that owns the agent; names are unique within it.
    pub workspace: String,
    pub name: String,
    pub description: String,
    pub latest_version: u32,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentVersion {
    pub id: String,
    pub agent_id: String,
    pub version: u32,
    /// The manifest's own version label, if it gave one.
    pub label: Option<String>,
    pub manifest: Manifest,
    /// What executions of this version run with (manifest clamped by the host).
    pub limits: Limits,
    /// SHA-256 of the component bytes, hex.
    pub component_hash: String,
    pub component_size: u64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}
