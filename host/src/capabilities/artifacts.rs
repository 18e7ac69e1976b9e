//! `warden:agent/artifacts`: files a run stores (screenshots, reports), through
//! the run's [`RunArtifacts`](crate::runtime::RunArtifacts).

use crate::ports::{ArtifactError, Artifacts};
use crate::runtime::bindings::warden::agent::artifacts::{Error, Host};
use crate::runtime::{RunState, Stop};

impl Host for RunState {
    async fn put(
        &mut self,
        name: String,
        media_type: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<String, Error>> {
        Ok(match self.grants.artifacts.put(name, media_type, data).await {
            Ok(artifact) => Ok(artifact.id),
            Err(ArtifactError::InvalidName(m)) => Err(Error::InvalidName(m)),
            Err(ArtifactError::LimitExceeded(m)) => Err(Error::LimitExceeded(m)),
            Err(ArtifactError::Refused(refused)) => return Err(Stop::unrecorded(refused)),
        })
    }
}
