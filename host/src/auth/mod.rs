//! Who is calling. Every `/v1` and `/admin/keys` request carries an API key
//! (`Authorization: Bearer wdn_…`) that belongs to one workspace; [`Auth`] checks
//! it (digest compare, revocation, per-key rate limit) against the key store and
//! names the [`Caller`]. A host with no active key runs open, as the `default`
//! workspace's admin, and only on a loopback address; the first key created ends
//! that. The HTTP side (the middleware, error bodies) is the API's.

pub mod keys;
pub mod stream_token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use self::keys::NewKey;
use self::stream_token::{Grant, StreamTokens};
use crate::config::AuthConfig;
use crate::record::{ApiKey, Role};
use crate::store::{KeyStore, StoreError};
use crate::time;

/// The workspace of an open host, and of everything made before workspaces existed.
pub const DEFAULT_WORKSPACE: &str = "default";

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace: String,
    pub role: Role,
    /// `None` on an open host.
    pub key_id: Option<String>,
    /// The key's name (what approval requests name their approvers by).
    pub key_name: Option<String>,
}

impl Caller {
    fn open() -> Self {
        Self {
            workspace: DEFAULT_WORKSPACE.to_owned(),
            role: Role::Admin,
            key_id: None,
            key_name: None,
        }
    }
}

struct Cached {
    key: ApiKey,
    digest: String,
    fetched: Instant,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Why a request was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key, or not a valid one.
    #[error("{0}")]
    Unauthorized(String),
    /// The key is over its rate limit; come back after `retry_after_secs`.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Auth {
    config: AuthConfig,
    keys: Arc<dyn KeyStore>,
    open: AtomicBool,
    /// When an open host last looked for keys made elsewhere (`warden keys`).
    open_checked: Mutex<Instant>,
    /// Keys seen recently, by id; refreshed from the store after `key_cache_ms`.
    cache: Mutex<HashMap<String, Arc<Cached>>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    streams: StreamTokens,
}

impl Auth {
    /// Checks keys against `keys`; open while `keys` has no active key.
    pub async fn new(config: AuthConfig, keys: Arc<dyn KeyStore>) -> anyhow::Result<Self> {
        let streams = StreamTokens::new().map_err(anyhow::Error::msg)?;
        let any_active_key = keys.any_active().await?;
        Ok(Self {
            config,
            keys,
            open: AtomicBool::new(!any_active_key),
            open_checked: Mutex::new(Instant::now()),
            cache: Mutex::default(),
            buckets: Mutex::default(),
            streams,
        })
    }

    /// Whether requests without a key are let in (no key exists).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// A key now exists: from here on every request needs one.
    pub fn close(&self) {
        if self.open.swap(false, Ordering::Relaxed) {
            tracing::info!("an API key was created: requests now need a key");
        }
    }

    /// Makes a key of `workspace` and stores it; the host is open no more.
    pub async fn create_key(&self, workspace: &str, name: &str, role: Role) -> Result<NewKey, CreateKeyError> {
        let new = keys::generate(workspace, name, role).map_err(CreateKeyError::Invalid)?;
        self.keys.insert(new.key.clone(), new.secret_sha256.clone()).await?;
        self.close();
        Ok(new)
    }

    /// Revokes a key of `workspace` at once; the key as it is now, if it is one
    /// of the workspace's.
    pub async fn revoke_key(&self, workspace: &str, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let revoked = self.keys.revoke(id, Some(workspace), time::now_ms()).await?;
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        Ok(revoked)
    }

    /// The keys of a workspace.
    pub async fn list_keys(&self, workspace: &str) -> Result<Vec<ApiKey>, StoreError> {
        self.keys.list(Some(workspace)).await
    }

    /// Who sends this `Authorization` header (`None`: it sent none).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let Some(value) = authorization else {
            if self.is_open() && !self.keys_appeared().await? {
                return Ok(Caller::open());
            }
            return Err(AuthError::Unauthorized(
                "send an API key: `Authorization: Bearer wdn_…` (create one with `warden keys create`)".into(),
            ));
        };
        let token = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| AuthError::Unauthorized("the Authorization header must be `Bearer <api key>`".into()))?;
        let (id, secret) =
            keys::parse_token(token).ok_or_else(|| AuthError::Unauthorized("that is not a Warden API key".into()))?;
        let cached = self.lookup(&id).await?;
        let valid = cached
            .as_ref()
            .is_some_and(|c| keys::same_digest(&keys::digest(secret), &c.digest));
        let cached = match cached {
            Some(c) if valid => c,
            _ => return Err(AuthError::Unauthorized("unknown API key".into())),
        };
        if cached.key.revoked_at.is_some() {
            return Err(AuthError::Unauthorized("this API key was revoked".into()));
        }
        self.admit(id, &cached)
    }

    /// The caller a valid key speaks for, as the key is now, once its rate
    /// limit lets the request in.
    fn admit(&self, id: String, cached: &Cached) -> Result<Caller, AuthError> {
        self.take_token(&id)?;
        Ok(Caller {
            workspace: cached.key.workspace.clone(),
            role: cached.key.role,
            key_id: Some(id),
            key_name: Some(cached.key.name.clone()),
        })
    }

    /// A stream token that lets whoever holds it read `execution_id`'s stream
    /// as `caller` (see [`stream_token`]), and when it expires (Unix ms).
    pub fn stream_token(&self, caller: &Caller, execution_id: &str) -> (String, i64) {
        let expires = time::now_ms() + stream_token::TTL_MS;
        let grant = Grant {
            workspace: caller.workspace.clone(),
            key_id: caller.key_id.clone(),
            role: caller.role,
        };
        (self.streams.issue(&grant, execution_id, expires), expires)
    }

    /// Who a stream token reading `execution_id` speaks for: the key it was
    /// made with must still be valid, and its rate limit applies.
    pub async fn authenticate_stream(&self, token: &str, execution_id: &str) -> Result<Caller, AuthError> {
        let grant = self
            .streams
            .verify(token, execution_id, time::now_ms())
            .map_err(|why| AuthError::Unauthorized(why.into()))?;
        let Some(id) = grant.key_id else {
            // Made while the host was open: good only while it still is.
            if !self.is_open() {
                return Err(AuthError::Unauthorized(
                    "this stream token was made before the host had keys; ask for another".into(),
                ));
            }
            return Ok(Caller::open());
        };
        let cached = self
            .lookup(&id)
            .await?
            .ok_or_else(|| AuthError::Unauthorized("the key this stream token was made with is gone".into()))?;
        if cached.key.revoked_at.is_some() {
            return Err(AuthError::Unauthorized(
                "the key this stream token was made with was revoked".into(),
            ));
        }
        if cached.key.workspace != grant.workspace {
            return Err(AuthError::Unauthorized("that is not a valid stream token".into()));
        }
        self.admit(id, &cached)
    }

    /// On an open host, whether a key was created in the data dir since (checked
    /// at most every `key_cache_ms`); if so the host closes.
    async fn keys_appeared(&self) -> Result<bool, StoreError> {
        {
            let mut checked = self.open_checked.lock().unwrap_or_else(PoisonError::into_inner);
            if checked.elapsed() < Duration::from_millis(self.config.key_cache_ms) {
                return Ok(false);
            }
            *checked = Instant::now();
        }
        let any = self.keys.any_active().await?;
        if any {
            self.close();
        }
        Ok(any)
    }

    async fn lookup(&self, id: &str) -> Result<Option<Arc<Cached>>, StoreError> {
        let ttl = Duration::from_millis(self.config.key_cache_ms);
        if let Some(c) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(id)
            && c.fetched.elapsed() < ttl
        {
            return Ok(Some(Arc::clone(c)));
        }
        let found = self.keys.find(id).await?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(match found {
            Some((key, digest)) => {
                let c = Arc::new(Cached {
                    key,
                    digest,
                    fetched: Instant::now(),
                });
                cache.insert(id.to_owned(), Arc::clone(&c));
                Some(c)
            }
            None => {
                cache.remove(id);
                None
            }
        })
    }

    /// The per-key token bucket: `rate_limit_per_sec` refill, `rate_limit_burst` deep.
    fn take_token(&self, id: &str) -> Result<(), AuthError> {
        let (rate, burst) = (self.config.rate_limit_per_sec, self.config.rate_limit_burst as f64);
        if rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(id.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
            Err(AuthError::RateLimited {
                message: format!("this API key is over its limit of {rate} requests per second"),
                retry_after_secs: wait,
            })
        }
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    /// A bad workspace or name.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
