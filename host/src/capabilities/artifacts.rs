//! `warden:agent/artifacts`: files a run stores (screenshots, reports), through
//! the run's [`RunArtifacts`](crate::runtime::RunArtifacts). A durable run
//! journals each put (its start with the artifact's id, then its outcome); a
//! replay adopts the stored artifact again.

use serde_json::{Value, json};

use crate::ports::{ArtifactError, Artifacts};
use crate::record::{Artifact, JournalKind};
use crate::runtime::bindings::warden::agent::artifacts::{Error, Host};
use crate::runtime::journal::{self, Replayed};
use crate::runtime::{RunState, Stop};

fn journaled(result: &Result<Artifact, Error>) -> String {
    match result {
        Ok(a) => json!({ "ok": {
            "id": a.id, "name": a.name, "media_type": a.media_type, "size": a.size,
            "sha256": a.sha256, "created_at": a.created_at,
        }}),
        Err(Error::InvalidName(m)) => json!({ "invalid_name": m }),
        Err(Error::LimitExceeded(m)) => json!({ "limit_exceeded": m }),
    }
    .to_string()
}

fn from_journal(execution_id: &str, data: &str) -> Result<Artifact, Error> {
    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let a = &v["ok"];
    if a.is_object() {
        let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
        return Ok(Artifact {
            id: text("id"),
            execution_id: execution_id.to_owned(),
            name: text("name"),
            media_type: text("media_type"),
            size: a["size"].as_u64().unwrap_or(0),
            sha256: text("sha256"),
            created_at: a["created_at"].as_i64().unwrap_or(0),
        });
    }
    match v["invalid_name"].as_str() {
        Some(m) => Err(Error::InvalidName(m.to_owned())),
        None => Err(Error::LimitExceeded(
            v["limit_exceeded"].as_str().unwrap_or_default().to_owned(),
        )),
    }
}

impl Host for RunState {
    async fn put(
        &mut self,
        name: String,
        media_type: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<String, Error>> {
        let fingerprint = self.journal.as_ref().map(|_| {
            journal::fingerprint(&[
                name.as_bytes(),
                media_type.as_bytes(),
                &(data.len() as u64).to_le_bytes(),
            ])
        });
        // A put is a write: its start, with the artifact's id, is journaled
        // first; one cut short by a restart stores the same artifact again
        // (the same id, the same bytes), announced once.
        let (mut id, mut seq, mut announce) = (None, None, true);
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
            match journal
                .take(JournalKind::Artifact, fingerprint, &format!("artifact {name:?}"))
                .map_err(wasmtime::Error::new)?
            {
                Some(Replayed::Done(recorded)) => {
                    let result = from_journal(&self.grants.ctx.execution_id, &recorded);
                    return Ok(result.map(|artifact| {
                        let id = artifact.id.clone();
                        self.grants.artifacts.adopt(artifact);
                        id
                    }));
                }
                Some(Replayed::Started { data, seq: started }) => {
                    let start: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    id = start["id"].as_str().map(str::to_owned);
                    seq = Some(started);
                    announce = false;
                }
                None => {
                    let fresh = crate::ids::artifact();
                    let data = json!({ "id": fresh }).to_string();
                    seq = Some(
                        journal
                            .start(JournalKind::Artifact, fingerprint, data, false)
                            .await
                            .map_err(wasmtime::Error::new)?,
                    );
                    id = Some(fresh);
                }
            }
        }
        let result = match self.grants.artifacts.put_as(id, announce, name, media_type, data).await {
            Ok(artifact) => Ok(artifact),
            Err(ArtifactError::InvalidName(m)) => Err(Error::InvalidName(m)),
            Err(ArtifactError::LimitExceeded(m)) => Err(Error::LimitExceeded(m)),
            Err(ArtifactError::Refused(refused)) => return Err(Stop::unrecorded(refused)),
        };
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
            journal
                .record(JournalKind::Artifact, fingerprint, seq, journaled(&result))
                .map_err(wasmtime::Error::new)?;
        }
        Ok(result.map(|a| a.id))
    }
}
