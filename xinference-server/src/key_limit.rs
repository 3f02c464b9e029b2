//! Concurrent requests per credential (`--max-concurrent-requests-per-key`): each API key (or
//! logged-in user) may have at most so many requests in flight; one more is a 429 with
//! `Retry-After` at once. A request without a credential (auth off) counts for its client's
//! address (the TCP peer's IP: behind a reverse proxy, all its clients share one place list);
//! public routes (`/health`, `/metrics`, ...) and the web UI's files are not limited. A
//! request counts until its answer's body is finished or dropped, so a stream counts while it
//! streams and a client that goes away frees its place.

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use xinference_core::auth::scopes::Requirement;
use xinference_core::auth::Principal;
use xinference_core::Error;

/// Seconds a refused client is told to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// In-flight requests by credential.
pub struct KeyLimiter {
    limit: usize,
    in_flight: Mutex<HashMap<String, usize>>,
}

/// A place taken by one request; freed when dropped.
pub struct Permit {
    limiter: Arc<KeyLimiter>,
    key: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut map = self.limiter.lock();
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl KeyLimiter {
    /// At most `limit` requests in flight per credential.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(KeyLimiter {
            limit: limit.max(1),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for `key`, or `None` when it has `limit` requests in flight.
    pub fn try_acquire(self: &Arc<Self>, key: &str) -> Option<Permit> {
        let mut map = self.lock();
        let n = map.entry(key.to_owned()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Permit {
            limiter: self.clone(),
            key: key.to_owned(),
        })
    }
}

/// Who a principal counts as: its API key, else its user.
fn key_of(principal: &Principal) -> String {
    match &principal.key_id {
        Some(id) => format!("key:{id}"),
        None => format!("user:{}", principal.user),
    }
}

/// A body that holds a [`Permit`] until it is finished or dropped.
struct Guarded {
    inner: Body,
    _permit: Permit,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Who a request without a credential counts as: its client's address, unless its route
/// is public (or it matched no route: the web UI's files), when it is not limited.
fn anonymous_key(request: &Request) -> Option<String> {
    let matched = request.extensions().get::<MatchedPath>()?.as_str();
    if crate::routes::requirement(request.method().as_str(), Some(matched)) == Requirement::Public {
        return None;
    }
    let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    Some(format!("client:{}", peer.ip()))
}

/// Middleware (inside the credential check, which leaves the [`Principal`]): refuses a
/// request past the limit of its credential (or, without one, of its client address) with
/// 429 and `Retry-After`, in the error shape of its route.
pub async fn limit(limiter: Arc<KeyLimiter>, request: Request, next: Next) -> Response {
    let key = match request.extensions().get::<Principal>() {
        Some(principal) => key_of(principal),
        None => match anonymous_key(&request) {
            Some(key) => key,
            None => return next.run(request).await,
        },
    };
    let Some(permit) = limiter.try_acquire(&key) else {
        let path = request.uri().path().to_owned();
        let mut response = crate::routes::shaped_error(
            &path,
            Error::overloaded(format!(
                "Too many concurrent requests for this API key or client (at most {}); retry later",
                limiter.limit
            )),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&RETRY_AFTER_SECS.to_string()).expect("digits"),
        );
        return response;
    };
    let response = next.run(request).await;
    response.map(|inner| {
        Body::new(Guarded {
            inner,
            _permit: permit,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_key_and_freed_on_drop() {
        let limiter = KeyLimiter::new(2);
        let a1 = limiter.try_acquire("a").unwrap();
        let _a2 = limiter.try_acquire("a").unwrap();
        assert!(limiter.try_acquire("a").is_none());
        let _b = limiter.try_acquire("b").unwrap();
        drop(a1);
        assert!(limiter.try_acquire("a").is_some());
        drop(_a2);
        drop(_b);
        assert!(limiter.lock().is_empty());
    }
}
