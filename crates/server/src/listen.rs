//! The listener (R7): plain HTTP or HTTPS (rustls with the ring provider), optional client
//! certificates for the agent routes (mutual TLS), and the limits that keep a slow or hostile
//! client from exhausting the server: a cap on open connections (in all and per address), a TLS handshake timeout, a
//! request-header read timeout (which also closes idle keep-alive connections) and a deadline
//! for reading a request body.
//!
//! Each accepted connection gets its own task (the handshake runs there, never in the accept
//! loop); its errors are logged at debug and end only that connection. The peer's address and,
//! under mutual TLS, the verified client certificate travel in every request's extensions as
//! [`Peer`], where the failed-authentication throttle (`throttle`) reads them.
//!
//! HTTP/1.1 only: the `suanwang` clients speak it, and it keeps the timeouts simple (an HTTP/2
//! connection multiplexes streams the header timeout does not see).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::IntoResponse;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::ServerError;
use crate::error::ApiError;

/// Limits on connections; see the module documentation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections served at once from one address (an IPv6 /64); further ones are closed at
    /// once, so one client cannot take every slot.
    pub max_connections_per_addr: usize,
    /// The whole request head must arrive within this (counted from when the server starts
    /// waiting for it, so an idle keep-alive connection is closed after this too).
    pub header_timeout: Duration,
    /// A request body must be read completely within this of its head.
    pub body_timeout: Duration,
    /// A TLS handshake must complete within this of the connection being accepted.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_addr: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_mins(1),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// How to serve: TLS or not, whether agent routes need a client certificate, the limits.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// HTTPS with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The agent routes (`/v1/agents/…`) answer 401 to a connection without a verified client
    /// certificate (set with a `tls` made by [`tls_config`] with a client CA).
    pub agents_need_client_cert: bool,
    pub limits: Limits,
    /// The secret the instances of one database share (issue 17): a request that carries it
    /// (forwarded by a follower) is taken to come from the client the follower names —
    /// its address and verified certificate — instead of from the follower.
    pub instance_secret: Option<Arc<str>>,
}

/// A forwarded request's headers (see [`ListenOptions::instance_secret`]): removed from every
/// request, and believed only with the secret.
pub const FORWARD_SECRET: &str = "x-suanwang-instance-secret";
pub const FORWARD_PEER: &str = "x-suanwang-peer";
pub const FORWARD_PEER_CERT: &str = "x-suanwang-peer-cert";

/// The client a request is from: `peer`, or the one a follower names with the instances'
/// `secret`. The forwarding headers are removed either way, so nobody else can name a client.
pub fn forwarded_peer(headers: &mut axum::http::HeaderMap, peer: Peer, secret: Option<&str>) -> Peer {
    let given = headers.remove(FORWARD_SECRET);
    let addr = headers.remove(FORWARD_PEER);
    let cert = headers.remove(FORWARD_PEER_CERT);
    let trusted = match (given, secret) {
        (Some(g), Some(s)) => constant_time_eq(g.as_bytes(), s.as_bytes()),
        _ => false,
    };
    let Some(addr) = addr.filter(|_| trusted).and_then(|a| a.to_str().ok()?.parse::<SocketAddr>().ok()) else {
        return peer;
    };
    let client_cert = cert.and_then(|c| c.to_str().ok().map(str::to_string));
    Peer { addr, client_cert }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The other end of a connection, in each request's extensions.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// SHA-256 (hex) of the client certificate the TLS handshake verified, if any.
    pub client_cert: Option<String>,
}

/// A TLS setting that cannot be used; the message names the `suanwang serve|up` flag.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("--tls-key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("--client-ca {path}: {reason}")]
    ClientCa { path: String, reason: String },
    #[error("--tls-cert and --tls-key do not belong together: {0}")]
    Mismatch(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates in a PEM file: `Err(reason)` when unreadable or it has none.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// The server's TLS configuration from PEM files: the certificate chain (leaf first), its
/// private key (PKCS#8, PKCS#1 or SEC1), and optionally the CA that client certificates must
/// chain to. A connection without a client certificate is still accepted (only the agent
/// routes need one: [`ListenOptions::agents_need_client_cert`]).
pub fn tls_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<rustls::ServerConfig, TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let certs = read_certs(cert).map_err(|reason| TlsError::Cert { path: shown(cert), reason })?;
    let key_pem =
        std::fs::read(key).map_err(|e| TlsError::Key { path: shown(key), reason: format!("cannot read it: {e}") })?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: shown(key),
        reason: format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}"),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsError::Cert { path: shown(cert), reason: e.to_string() })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_err = |reason: String| TlsError::ClientCa { path: shown(ca), reason };
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca).map_err(ca_err)? {
                roots.add(c).map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| ca_err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // with_single_cert checks that the key is the certificate's (rustls: InconsistentKeys)
    let mut cfg = builder.with_single_cert(certs, private).map_err(|e| match e {
        rustls::Error::InconsistentKeys(k) => TlsError::Mismatch(format!("the key is not the certificate's ({k:?})")),
        other => TlsError::Key { path: shown(key), reason: other.to_string() },
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves `router` on `listener` with `opts` until the process ends (an accept error is
/// logged and retried: running out of file descriptors must not stop the server).
pub async fn serve_with(listener: TcpListener, router: axum::Router, opts: ListenOptions) -> Result<(), ServerError> {
    let slots = Arc::new(Semaphore::new(opts.limits.max_connections.max(1)));
    let conn = Arc::new(Conn {
        router,
        tls: opts.tls.map(tokio_rustls::TlsAcceptor::from),
        agents_need_client_cert: opts.agents_need_client_cert,
        limits: opts.limits,
        instance_secret: opts.instance_secret,
    });
    let per_addr = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    loop {
        // at the cap, stop accepting: new connections wait in the kernel's queue
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return Ok(()) };
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(counted) = PerAddr::enter(&per_addr, addr, conn.limits.max_connections_per_addr) else {
            tracing::debug!(peer = %addr, "too many connections from this address: closed");
            drop(tcp);
            continue;
        };
        let conn = Arc::clone(&conn);
        tokio::spawn(async move {
            conn.handle(tcp, addr).await;
            drop(counted);
            drop(permit);
        });
    }
}

type Counts = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One open connection counted against its address until dropped.
struct PerAddr {
    counts: Counts,
    key: std::net::IpAddr,
}

impl PerAddr {
    fn enter(counts: &Counts, addr: SocketAddr, max: usize) -> Option<PerAddr> {
        let key = crate::throttle::addr_key(addr.ip());
        let mut map = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key).or_insert(0);
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(PerAddr { counts: Arc::clone(counts), key })
    }
}

impl Drop for PerAddr {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

struct Conn {
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    agents_need_client_cert: bool,
    limits: Limits,
    instance_secret: Option<Arc<str>>,
}

impl Conn {
    async fn handle(&self, tcp: TcpStream, addr: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = &self.tls else {
            self.http(TokioIo::new(tcp), Peer { addr, client_cert: None }).await;
            return;
        };
        match tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp)).await {
            Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
            Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
            Ok(Ok(stream)) => {
                let client_cert =
                    stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| fingerprint(c.as_ref()));
                self.http(TokioIo::new(stream), Peer { addr, client_cert }).await;
            }
        }
    }

    async fn http<I>(&self, io: I, peer: Peer)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let addr = peer.addr;
        let router = self.router.clone();
        let body_timeout = self.limits.body_timeout;
        let need_cert = self.agents_need_client_cert;
        let secret = self.instance_secret.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let peer = forwarded_peer(req.headers_mut(), peer.clone(), secret.as_deref());
            async move {
                if need_cert && peer.client_cert.is_none() && req.uri().path().starts_with("/v1/agents/") {
                    return Ok::<_, Infallible>(
                        ApiError::unauthorized("the agent routes need a client certificate (mutual TLS)")
                            .hint("start the agent with --client-cert FILE --client-key FILE signed by the server's --client-ca")
                            .into_response(),
                    );
                }
                let mut req = req.map(|b| Deadline::new(b, body_timeout));
                req.extensions_mut().insert(peer);
                tower_service::Service::call(&mut router, req).await
            }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(self.limits.header_timeout);
        if let Err(e) = http.serve_connection(io, service).await {
            tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
        }
    }
}

/// SHA-256 of a certificate's DER, in hex.
fn fingerprint(der: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(der).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A request body that fails once `limit` has passed since the request's head arrived.
struct Deadline {
    inner: Incoming,
    limit: Duration,
    /// Started on the first poll (GETs, whose bodies nobody polls, set no timer).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    until: tokio::time::Instant,
}

impl Deadline {
    fn new(inner: Incoming, limit: Duration) -> Deadline {
        Deadline { inner, limit, sleep: None, until: tokio::time::Instant::now() + limit }
    }
}

/// The error a [`Deadline`] body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

impl Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let until = this.until;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn forwarded(secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(FORWARD_SECRET, HeaderValue::from_str(secret).expect("ascii"));
        h.insert(FORWARD_PEER, HeaderValue::from_static("203.0.113.7:5123"));
        h.insert(FORWARD_PEER_CERT, HeaderValue::from_static("ab12"));
        h
    }

    #[test]
    fn only_an_instance_with_the_secret_names_the_client_and_the_headers_never_reach_the_routes() {
        let follower = Peer { addr: "127.0.0.1:40000".parse().expect("addr"), client_cert: None };
        // with the instances' secret: the client the follower names
        let mut h = forwarded("s3cret");
        let p = forwarded_peer(&mut h, follower.clone(), Some("s3cret"));
        assert_eq!(p.addr.to_string(), "203.0.113.7:5123");
        assert_eq!(p.client_cert.as_deref(), Some("ab12"));
        assert!(h.is_empty(), "removed: {h:?}");
        // a wrong secret, no secret configured, or a bad address: the connection's own peer
        for (given, configured) in [("guess", Some("s3cret")), ("s3cret", None), ("s3cre", Some("s3cret"))] {
            let mut h = forwarded(given);
            let p = forwarded_peer(&mut h, follower.clone(), configured);
            assert_eq!((p.addr, p.client_cert), (follower.addr, None), "{given} / {configured:?}");
            assert!(h.is_empty(), "removed even when not believed: {h:?}");
        }
        let mut h = forwarded("s3cret");
        h.insert(FORWARD_PEER, HeaderValue::from_static("not an address"));
        assert_eq!(forwarded_peer(&mut h, follower.clone(), Some("s3cret")).addr, follower.addr);
    }
}
