//! Extractors whose rejections are [`ApiError`]s, so a bad body or query string
//! gets the same typed error shape as everything else.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `axum::Json`, rejecting with [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// A filter from a query that must be one of `all` (`name` says which).
pub fn one_of<T>(
    name: &str,
    text: Option<String>,
    parse: fn(&str) -> Option<T>,
    all: &[&str],
) -> Result<Option<T>, ApiError> {
    text.map(|t| {
        parse(&t).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name}: {t:?} is not one of {}", all.join(", ")),
            )
        })
    })
    .transpose()
}

/// A page size from a query: `default` when absent, else it must be 1 to `max`.
pub fn page_limit<T>(limit: Option<T>, default: T, max: T) -> Result<T, ApiError>
where
    T: PartialOrd + From<u8> + std::fmt::Display + Copy,
{
    match limit {
        None => Ok(default),
        Some(n) if n >= T::from(1) && n <= max => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit: {n} is not 1 to {max}"),
        )),
    }
}

/// Deserializes an optional whole number that may be written `44` or `44.0`
/// (JSON Schema's `integer` allows both).
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = n
        .as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        })
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number")))?;
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{n} is out of range")))
}

/// An event-sequence cursor from the query (`?after=N`, default 0). The API
/// documents it as a non-negative int64, so it is read as one and a negative
/// one is refused.
pub fn cursor(name: &str, value: Option<i64>) -> Result<u64, ApiError> {
    u64::try_from(value.unwrap_or(0))
        .map_err(|_| ApiError::bad_request("invalid_query", format!("`{name}` must be 0 or more")))
}

/// `axum::extract::Query`, rejecting with [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
        Ok(Self(value))
    }
}
