//! Blobs as files: content-addressed bytes under `<data>/blobs/sha256/<hash>`,
//! written once, atomically, and read back only if they still have their hash.
//! Shared by the backends that keep blobs on a disk.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BlobError, BlobStore};
use crate::digest::sha256_hex;
use crate::files::{sweep_temporary, write_atomically};

#[derive(Debug, Clone)]
pub struct FileBlobs {
    dir: PathBuf,
}

impl FileBlobs {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let swept = sweep_temporary(&dir);
        if swept > 0 {
            tracing::info!(files = swept, dir = %dir.display(), "removed temporary files of writes that never finished");
        }
        Ok(Self { dir })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }
}

impl BlobStore for FileBlobs {
    fn put(&self, hash: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    fn get(&self, hash: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(hash);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing,
            _ => BlobError::Unreadable(format!("{}: {e}", path.display())),
        })?;
        if sha256_hex(&bytes) != hash {
            return Err(BlobError::Damaged);
        }
        Ok(bytes)
    }

    fn remove(&self, hash: &str) {
        if let Err(e) = std::fs::remove_file(self.path(hash))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(hash, error = %e, "could not delete an unreferenced blob");
        }
    }
}
