//! OTLP export configuration: where each ended execution's span tree is sent
//! (an OpenTelemetry collector's OTLP/HTTP endpoint), with which headers and
//! service name, and how much may wait to be sent. The export itself is the
//! cargo feature `otlp`; a host built without it refuses an `[otlp]` endpoint
//! rather than ignore it.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`): spans go
    /// to its `/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` would say. A URL
    /// already ending in `/v1/traces` is used as it is. Unset: no export.
    pub endpoint: Option<String>,
    /// Headers sent with every export (an API key of a hosted backend).
    pub headers: HashMap<String, String>,
    /// The resource's `service.name`.
    pub service_name: String,
    /// One export request, start to end.
    pub timeout_ms: u64,
    /// Most executions sent in one request.
    pub batch_executions: usize,
    /// How long an end waits for others to go in the same request.
    pub linger_ms: u64,
    /// Most ended executions waiting to be sent; past it, an end's spans are
    /// dropped (and counted), so a slow collector never slows runs.
    pub max_queued_executions: usize,
    /// Most bytes they may hold (their steps, input and output), likewise.
    pub max_queued_bytes: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            headers: HashMap::new(),
            service_name: "warden".into(),
            timeout_ms: 10_000,
            batch_executions: 512,
            linger_ms: 500,
            max_queued_executions: 8_192,
            max_queued_bytes: 64 << 20,
        }
    }
}

impl OtlpConfig {
    /// Where spans are posted: the endpoint's `/v1/traces`.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.endpoint.as_deref()?.trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        })
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        anyhow::ensure!(
            cfg!(feature = "otlp"),
            "otlp.endpoint is set, but this warden was built without OTLP export: \
             build it with `cargo build --release --features otlp`"
        );
        let url = reqwest::Url::parse(endpoint).map_err(|e| anyhow::anyhow!("otlp.endpoint {endpoint:?}: {e}"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "otlp.endpoint {endpoint:?}: must be an http or https URL"
        );
        anyhow::ensure!(
            (1..=600_000).contains(&self.timeout_ms)
                && (1..=100_000).contains(&self.batch_executions)
                && (1..=1_000_000).contains(&self.max_queued_executions)
                && self.max_queued_bytes >= 1
                && self.linger_ms <= 60_000,
            "otlp: timeout_ms is 1 to 600000, batch_executions 1 to 100000, max_queued_executions 1 to \
             1000000, max_queued_bytes at least 1, linger_ms at most 60000"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_go_to_the_endpoints_v1_traces() {
        let at = |endpoint: &str| {
            OtlpConfig {
                endpoint: Some(endpoint.into()),
                ..OtlpConfig::default()
            }
            .traces_url()
        };
        assert_eq!(at("http://c:4318").as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(at("http://c:4318/").as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(
            at("http://c/otlp/v1/traces").as_deref(),
            Some("http://c/otlp/v1/traces")
        );
        assert_eq!(OtlpConfig::default().traces_url(), None);
        let bad = OtlpConfig {
            endpoint: Some("ftp://c".into()),
            ..OtlpConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
