//! One run's artifacts (the `artifacts` import and tools such as `browser`):
//! names are checked (no paths, no control characters), count and bytes are
//! capped per run, the bytes go to the [`ArtifactStore`], and an `artifact` event
//! announces each.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::config::CaptureLimits;
use crate::events::{EventData, EventLog};
use crate::ports::{ArtifactError, ArtifactStore, Artifacts, Effects, Reach};
use crate::record::Artifact;

const MAX_NAME_BYTES: usize = 128;
const MAX_MEDIA_TYPE_BYTES: usize = 100;

pub struct RunArtifacts {
    execution_id: String,
    caps: CaptureLimits,
    store: Arc<dyn ArtifactStore>,
    events: Arc<EventLog>,
    effects: Arc<dyn Effects>,
    state: Mutex<Stored>,
}

#[derive(Default)]
struct Stored {
    artifacts: Vec<Artifact>,
    /// Count and bytes taken by puts under way or done.
    reserved: (usize, u64),
}

impl RunArtifacts {
    pub fn new(
        execution_id: &str,
        caps: CaptureLimits,
        store: Arc<dyn ArtifactStore>,
        events: Arc<EventLog>,
        effects: Arc<dyn Effects>,
    ) -> Self {
        Self {
            execution_id: execution_id.to_owned(),
            caps,
            store,
            events,
            effects,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Stored> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The artifacts stored so far, in order.
    pub fn list(&self) -> Vec<Artifact> {
        self.lock().artifacts.clone()
    }

    /// Takes room for one more artifact of `size` bytes, or says which cap is spent.
    fn reserve(&self, size: u64) -> Result<(), ArtifactError> {
        let mut state = self.lock();
        let (count, bytes) = state.reserved;
        if count >= self.caps.max_artifacts {
            return Err(ArtifactError::LimitExceeded(format!(
                "this run already stored {count} artifacts, its cap"
            )));
        }
        if bytes + size > self.caps.max_artifact_bytes as u64 {
            return Err(ArtifactError::LimitExceeded(format!(
                "{size} more bytes would pass this run's cap of {} artifact bytes",
                self.caps.max_artifact_bytes
            )));
        }
        state.reserved = (count + 1, bytes + size);
        Ok(())
    }

    /// An artifact a replayed call stored in the run's earlier life: counted
    /// as the run's again, not stored or announced twice.
    pub fn adopt(&self, artifact: Artifact) {
        let mut state = self.lock();
        let (count, bytes) = state.reserved;
        state.reserved = (count + 1, bytes + artifact.size);
        state.artifacts.push(artifact);
    }

    fn unreserve(&self, size: u64) {
        let mut state = self.lock();
        let (count, bytes) = state.reserved;
        state.reserved = (count.saturating_sub(1), bytes.saturating_sub(size));
    }
}

#[async_trait]
impl Artifacts for RunArtifacts {
    fn stored(&self) -> usize {
        self.lock().artifacts.len()
    }

    async fn put_as(
        &self,
        id: Option<String>,
        announce: bool,
        name: String,
        media_type: String,
        data: Vec<u8>,
    ) -> Result<Artifact, ArtifactError> {
        check_name(&name).map_err(ArtifactError::InvalidName)?;
        check_media_type(&media_type).map_err(ArtifactError::InvalidName)?;
        let size = data.len() as u64;
        // The blob is written first, but nothing refers to it until its record,
        // which the store commits after the run's start.
        self.effects.before_effect(Reach::Store).await?;
        self.reserve(size)?;
        let artifact = match self.store.store(&self.execution_id, id, name, media_type, data).await {
            Ok(artifact) => artifact,
            Err(e) => {
                self.unreserve(size);
                return Err(ArtifactError::LimitExceeded(format!(
                    "the host could not store the artifact: {e:#}"
                )));
            }
        };
        if announce {
            self.events.emit(EventData::Artifact(&artifact));
        }
        self.lock().artifacts.push(artifact.clone());
        Ok(artifact)
    }
}

/// A plain file name: no separators, no `..`, no leading dot, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("artifact names are 1 to {MAX_NAME_BYTES} bytes"));
    }
    if name.starts_with('.') || name.contains("..") {
        return Err(format!("artifact name {name:?} may not start with '.' or contain '..'"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c == ':' || c.is_control())
    {
        return Err(format!(
            "artifact name {name:?} may not contain '/', '\\\\', ':' or control characters"
        ));
    }
    Ok(())
}

fn check_media_type(media_type: &str) -> Result<(), String> {
    let ok = media_type.len() <= MAX_MEDIA_TYPE_BYTES
        && media_type.split_once('/').is_some_and(|(a, b)| {
            let token = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
            };
            token(a) && token(b.split(';').next().unwrap_or("").trim())
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{media_type:?} is not a media type like image/png"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_media_types() {
        for ok in ["shot.png", "report v2.pdf", "a-b_c.json"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            "a\\\\b",
            ".hidden",
            "x..y",
            "c:\\\\x",
            "tab\\tname",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_media_type("image/png").is_ok());
        assert!(check_media_type("text/plain; charset=utf-8").is_ok());
        assert!(check_media_type("png").is_err());
        assert!(check_media_type("image/").is_err());
    }
}
