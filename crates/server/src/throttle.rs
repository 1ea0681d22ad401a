//! The failed-authentication throttle (R7): a token bucket per client address (IPv4, or the
//! /64 of an IPv6 address) and per claimed principal (the verified client certificate under
//! mutual TLS, else the bearer token presented). Each 401 takes one token from the buckets of
//! its request; while a bucket is empty, requests under `/v1/` that carry it answer 429 with
//! `Retry-After` before they reach a handler — so a flood of bad tokens costs no token-store
//! lookup — unless their bearer token is one the server already knows (a valid client behind
//! the same address as the flood is served as usual). A 429 is held for up to
//! [`AuthLimit::delay`], so a flooding loop gets about one answer per connection per second.
//! `/healthz`, `/metrics` and
//! `/openapi.json` need no token and are never throttled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Inner;
use crate::auth::hash_token;
use crate::error::ApiError;
use crate::listen::Peer;

/// How many failed authentications a client may have: `burst` at once, then `per_minute`.
/// `burst == 0` turns the throttle off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthLimit {
    pub burst: u32,
    pub per_minute: u32,
    /// A 429 is answered after this (at most until the client may try again): a client that
    /// floods in a loop then sends about one request per connection per `delay`, and answering
    /// it costs the server next to nothing (the connection cap per address bounds the loops).
    pub delay: Duration,
}

impl Default for AuthLimit {
    fn default() -> Self {
        AuthLimit { burst: 20, per_minute: 60, delay: Duration::from_secs(1) }
    }
}

/// Buckets tracked at most; past this, full ones are forgotten, and if none is, new clients
/// go untracked (memory stays bounded under a flood from very many addresses).
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    Principal(String),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct Throttle {
    limit: AuthLimit,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

impl Throttle {
    pub fn new(limit: AuthLimit) -> Throttle {
        Throttle { limit, buckets: Mutex::new(HashMap::new()) }
    }

    fn rate(&self) -> f64 {
        f64::from(self.limit.per_minute.max(1)) / 60.0
    }

    fn level(&self, b: Bucket, now: Instant) -> f64 {
        (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.rate()).min(f64::from(self.limit.burst))
    }

    /// How long until every bucket of `keys` allows another attempt; `None`: allowed now.
    fn blocked(&self, keys: &[Key], now: Instant) -> Option<Duration> {
        if self.limit.burst == 0 {
            return None;
        }
        let buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.iter()
            .filter_map(|k| buckets.get(k))
            .map(|b| self.level(*b, now))
            .filter(|level| *level < 1.0)
            .map(|level| Duration::from_secs_f64((1.0 - level) / self.rate()))
            .max()
    }

    fn failed(&self, keys: &[Key], now: Instant) {
        if self.limit.burst == 0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let full = f64::from(self.limit.burst);
        for k in keys {
            if !buckets.contains_key(k) && buckets.len() >= MAX_TRACKED {
                buckets.retain(|_, b| self.level(*b, now) < full);
                if buckets.len() >= MAX_TRACKED {
                    continue;
                }
            }
            let b = buckets.entry(k.clone()).or_insert(Bucket { tokens: full, at: now });
            *b = Bucket { tokens: (self.level(*b, now) - 1.0).max(0.0), at: now };
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::auth::bearer_token(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// One address key per client: an IPv4 address, or the /64 network of an IPv6 one (a host
/// usually has a whole /64 to pick addresses from).
pub(crate) fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

fn keys(req: &Request) -> Vec<Key> {
    let peer = req.extensions().get::<Peer>();
    let mut keys = Vec::with_capacity(2);
    if let Some(p) = peer {
        keys.push(Key::Addr(addr_key(p.addr.ip())));
    }
    match (peer.and_then(|p| p.client_cert.as_ref()), bearer(req.headers())) {
        (Some(cert), _) => keys.push(Key::Principal(format!("cert:{cert}"))),
        (None, Some(token)) => keys.push(Key::Principal(format!("token:{}", hash_token(token)))),
        (None, None) => {}
    }
    keys
}

/// The router layer: answers 429 for a throttled client, counts every 401 against its keys.
pub async fn guard(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let keys = keys(&req);
    if let Some(wait) = inner.throttle.blocked(&keys, Instant::now()) {
        let known = bearer(req.headers()).is_some_and(|t| {
            inner
                .tokens
                .read()
                .is_ok_and(|known| known.get(&hash_token(t)).is_some_and(|(_, exp)| crate::routes::unexpired(*exp)))
        });
        if !known {
            inner.metrics.auth_throttled.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait.min(inner.throttle.limit.delay)).await;
            return too_many(wait);
        }
    }
    // early warning counts failures per source and per principal (R7): a 403's principal is
    // the one its token names (known: it just authenticated)
    let presented = bearer(req.headers()).map(hash_token);
    let res = next.run(req).await;
    match res.status() {
        StatusCode::UNAUTHORIZED => {
            inner.throttle.failed(&keys, Instant::now());
            for k in &keys {
                inner.recent_auth_failures.add(match k {
                    Key::Addr(ip) => ip.to_string(),
                    // never the token: the first 8 hex digits of its hash tell floods apart
                    Key::Principal(p) => p.split_once(':').map_or_else(
                        || p.clone(),
                        |(kind, id)| format!("{kind}:{}", if kind == "token" { id.get(..8).unwrap_or(id) } else { id }),
                    ),
                });
            }
        }
        StatusCode::FORBIDDEN => {
            let principal = presented
                .and_then(|h| inner.tokens.read().ok().and_then(|known| known.get(&h).map(|(p, _)| p.name.clone())));
            if let Some(p) = principal {
                inner.recent_forbidden.add(p);
            }
        }
        _ => {}
    }
    res
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        "too many failed authentications from this address or with this credential",
    )
    .hint(format!("retry after {secs} s with a valid token"))
    .into_response();
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_after_the_burst_and_refills_at_the_rate() {
        let t = Throttle::new(AuthLimit { burst: 3, per_minute: 60, delay: Duration::ZERO });
        let k = [Key::Addr("10.0.0.1".parse().expect("ip"))];
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.blocked(&k, t0), None);
            t.failed(&k, t0);
        }
        let wait = t.blocked(&k, t0).expect("blocked after the burst");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(t.blocked(&k, t0 + Duration::from_secs(1)), None, "one token back after a second");
        let other = [Key::Addr("10.0.0.2".parse().expect("ip"))];
        assert_eq!(t.blocked(&other, t0), None, "another address is not blocked");
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket_and_mapped_v4_is_v4() {
        let a = addr_key("2001:db8:1:2::1".parse().expect("ip"));
        let b = addr_key("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let c = addr_key("2001:db8:1:3::1".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(addr_key("::ffff:10.1.2.3".parse().expect("ip")), "10.1.2.3".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn burst_zero_turns_it_off() {
        let t = Throttle::new(AuthLimit { burst: 0, per_minute: 60, delay: Duration::ZERO });
        let k = [Key::Principal("token:x".into())];
        let t0 = Instant::now();
        for _ in 0..100 {
            t.failed(&k, t0);
        }
        assert_eq!(t.blocked(&k, t0), None);
    }
}
