//! Who is calling. Every `/v1` and `/admin/keys` request carries an API key
//! (`Authorization: Bearer wdn_…`) that belongs to one workspace; the middleware
//! checks it (digest compare, revocation, per-key rate limit) and hands handlers a
//! [`Caller`]. A host with no active key runs open, as the `default` workspace's
//! admin, and only on a loopback address; the first key created ends that.

pub mod keys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use self::keys::{ApiKey, Role};
use crate::api::ApiError;
use crate::app::App;
use crate::config::AuthConfig;

/// The workspace of an open host, and of everything made before workspaces existed.
pub const DEFAULT_WORKSPACE: &str = "default";

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace: String,
    pub role: Role,
    /// `None` on an open host.
    pub key_id: Option<String>,
}

impl Caller {
    fn open() -> Self {
        Self {
            workspace: DEFAULT_WORKSPACE.to_owned(),
            role: Role::Admin,
            key_id: None,
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

pub struct Auth {
    config: AuthConfig,
    open: AtomicBool,
    /// When an open host last looked for keys made elsewhere (`warden keys`).
    open_checked: Mutex<Instant>,
    /// Keys seen recently, by id; refreshed from the store after `key_cache_ms`.
    cache: Mutex<HashMap<String, Arc<Cached>>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Auth {
    pub fn new(config: AuthConfig, any_active_key: bool) -> Self {
        Self {
            config,
            open: AtomicBool::new(!any_active_key),
            open_checked: Mutex::new(Instant::now()),
            cache: Mutex::default(),
            buckets: Mutex::default(),
        }
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

    /// Forgets a cached key at once (it was revoked here).
    pub fn forget(&self, key_id: &str) {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).remove(key_id);
    }

    async fn authenticate(&self, app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            if self.is_open() && !self.keys_appeared(app).await? {
                return Ok(Caller::open());
            }
            return Err(ApiError::Unauthorized(
                "send an API key: `Authorization: Bearer wdn_…` (create one with `warden keys create`)".into(),
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <api key>`".into()))?;
        let (id, secret) =
            keys::parse_token(token).ok_or_else(|| ApiError::Unauthorized("that is not a Warden API key".into()))?;
        let cached = self.lookup(app, &id).await?;
        let valid = cached
            .as_ref()
            .is_some_and(|c| keys::same_digest(&keys::digest(secret), &c.digest));
        let cached = match cached {
            Some(c) if valid => c,
            _ => return Err(ApiError::Unauthorized("unknown API key".into())),
        };
        if cached.key.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("this API key was revoked".into()));
        }
        self.take_token(&id)?;
        Ok(Caller {
            workspace: cached.key.workspace.clone(),
            role: cached.key.role,
            key_id: Some(id),
        })
    }

    /// On an open host, whether a key was created in the data dir since (checked
    /// at most every `key_cache_ms`); if so the host closes.
    async fn keys_appeared(&self, app: &App) -> Result<bool, ApiError> {
        {
            let mut checked = self.open_checked.lock().unwrap_or_else(PoisonError::into_inner);
            if checked.elapsed() < Duration::from_millis(self.config.key_cache_ms) {
                return Ok(false);
            }
            *checked = Instant::now();
        }
        let any = app.store.read(|conn| Ok(keys::any_active(conn)?)).await?;
        if any {
            self.close();
        }
        Ok(any)
    }

    async fn lookup(&self, app: &App, id: &str) -> Result<Option<Arc<Cached>>, ApiError> {
        let ttl = Duration::from_millis(self.config.key_cache_ms);
        if let Some(c) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(id)
            && c.fetched.elapsed() < ttl
        {
            return Ok(Some(Arc::clone(c)));
        }
        let lookup = id.to_owned();
        let found = app.store.read(move |conn| Ok(keys::find(conn, &lookup)?)).await?;
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
    fn take_token(&self, id: &str) -> Result<(), ApiError> {
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
            Err(ApiError::RateLimited {
                message: format!("this API key is over its limit of {rate} requests per second"),
                retry_after_secs: wait,
            })
        }
    }
}

/// Middleware: authenticates the request and puts its [`Caller`] in the extensions.
pub async fn middleware(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    match app.auth.authenticate(&app, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}
