//! `warden:agent/artifacts`: files a run stores (screenshots, reports). Names are
//! checked (no paths, no control characters), count and bytes are capped per run,
//! the bytes go to the content-addressed blob store off the async workers, the row
//! is written at once, and an `artifact` event announces it.

use crate::execution::Artifact;
use crate::runtime::RunState;
use crate::runtime::bindings::warden::agent::artifacts::{Error, Host};
use crate::store::blobs::sha256_hex;
use crate::store::writer::Write;
use crate::{ids, time};

const MAX_NAME_BYTES: usize = 128;
const MAX_MEDIA_TYPE_BYTES: usize = 100;

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

impl Host for RunState {
    async fn put(&mut self, name: String, media_type: String, data: Vec<u8>) -> Result<String, Error> {
        self.store_artifact(name, media_type, data).await.map(|a| a.id)
    }
}

impl RunState {
    /// Stores an artifact of this run (the `put` import and the `browser` tool).
    pub async fn store_artifact(&mut self, name: String, media_type: String, data: Vec<u8>) -> Result<Artifact, Error> {
        check_name(&name).map_err(Error::InvalidName)?;
        check_media_type(&media_type).map_err(Error::InvalidName)?;
        let caps = self.grants.artifacts.caps;
        if self.artifacts.len() >= caps.max_artifacts {
            return Err(Error::LimitExceeded(format!(
                "this run already stored {} artifacts, its cap",
                caps.max_artifacts
            )));
        }
        let used: u64 = self.artifacts.iter().map(|a| a.size).sum();
        if used + data.len() as u64 > caps.max_artifact_bytes as u64 {
            return Err(Error::LimitExceeded(format!(
                "{} more bytes would pass this run's cap of {} artifact bytes",
                data.len(),
                caps.max_artifact_bytes
            )));
        }
        let size = data.len() as u64;
        let blobs = self.grants.artifacts.blobs.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let hash = sha256_hex(&data);
            blobs.put(&hash, &data).map(|()| hash)
        })
        .await;
        let sha256 = match stored {
            Ok(Ok(hash)) => hash,
            Ok(Err(e)) => {
                return Err(Error::LimitExceeded(format!(
                    "the host could not store the artifact: {e:#}"
                )));
            }
            Err(e) => {
                return Err(Error::LimitExceeded(format!(
                    "the host could not store the artifact: {e}"
                )));
            }
        };
        let artifact = Artifact {
            id: ids::artifact(),
            execution_id: self.grants.ctx.execution_id.clone(),
            name,
            media_type,
            size,
            sha256,
            created_at: time::now_ms(),
        };
        self.grants
            .artifacts
            .writer
            .send(Write::Artifact(Box::new(artifact.clone())));
        self.grants.events.emit("artifact", &artifact);
        self.artifacts.push(artifact.clone());
        Ok(artifact)
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
