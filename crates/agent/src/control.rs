//! The agent's view of the control plane (issue 11 item 5): the five calls of the agent
//! protocol behind one trait, with the HTTP implementation the agent uses and an in-memory
//! fake for tests. Bodies are the wire types of `suanwang_api::agent`, never untyped JSON.

use std::future::Future;
use std::time::Duration;

use suanwang_api::ErrorBody;
use suanwang_api::agent::{AssignmentsAnswer, RegisterAnswer, RegisterRequest, Report};

/// Why a call to the control plane did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CpError {
    /// It answered with an error status and its JSON error body.
    #[error("{status} {}{}", error.message, if error.detail.is_empty() { String::new() } else { format!(": {}", error.detail) })]
    Refused { status: u16, error: ErrorBody },
    /// It could not be reached, or the answer was cut off.
    #[error("{0}")]
    Transport(String),
    /// It answered 2xx with a body that is not what the protocol says.
    #[error("the control plane's answer is not what the protocol says: {0}")]
    Protocol(String),
}

impl CpError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            CpError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The refusal's `code` (`implausible_report`, `stale_report`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            CpError::Refused { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    /// A refusal the same request would get again (4xx but 408 and 429): retrying cannot help.
    pub fn is_final(&self) -> bool {
        self.status().is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
    }
}

/// A refusal made from a status and whatever body came with it (a JSON error body, or not).
pub fn refusal(status: u16, body: &[u8]) -> CpError {
    let error = serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| ErrorBody {
        code: format!("http_{status}"),
        message: String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string(),
        detail: String::new(),
        hint: String::new(),
        field: None,
    });
    CpError::Refused { status, error }
}

/// The control plane as an agent of one site sees it.
pub trait ControlPlane: Send + Sync + 'static {
    /// `POST /v1/agents/register`.
    fn register(&self, req: &RegisterRequest) -> impl Future<Output = Result<RegisterAnswer, CpError>> + Send;
    /// `GET /v1/agents/{site}/assignments?wait_ms=…&known=…`: answers as soon as the
    /// assignments differ from version `known`, else after `wait`. It is also the heartbeat.
    fn assignments(
        &self,
        wait: Duration,
        known: Option<&str>,
    ) -> impl Future<Output = Result<AssignmentsAnswer, CpError>> + Send;
    /// `POST /v1/agents/{site}/reports`.
    fn report(&self, report: &Report) -> impl Future<Output = Result<(), CpError>> + Send;
    /// `PUT /v1/agents/{site}/checkpoints/{id}?attempt=N` (a gzipped tar).
    fn put_checkpoint(&self, id: u64, attempt: u32, data: Vec<u8>) -> impl Future<Output = Result<(), CpError>> + Send;
    /// `GET /v1/agents/{site}/checkpoints/{id}`: `None` when the job has none.
    fn get_checkpoint(&self, id: u64) -> impl Future<Output = Result<Option<Vec<u8>>, CpError>> + Send;
}

/// The control plane over HTTP(S), as `suanwang agent` talks to it.
#[derive(Debug, Clone)]
pub struct HttpControlPlane {
    http: reqwest::Client,
    /// The control plane's instances (`http(s)://host:port`, without a trailing slash): any
    /// of them answers (followers forward to the leader, issue 17).
    servers: Vec<String>,
    /// The instance in use; the next one after it fails to answer.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: String,
    site: String,
}

impl HttpControlPlane {
    /// `http` must be built by the caller (TLS roots, client certificate, timeouts). `server`
    /// is one URL or several separated by commas.
    pub fn new(http: reqwest::Client, server: &str, token: &str, site: &str) -> HttpControlPlane {
        let servers: Vec<String> =
            server.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
        HttpControlPlane {
            http,
            servers: if servers.is_empty() { vec![String::new()] } else { servers },
            current: std::sync::Arc::default(),
            token: token.to_string(),
            site: site.to_string(),
        }
    }

    /// The address of the instance in use.
    pub fn server(&self) -> &str {
        &self.servers[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.servers.len()]
    }

    /// The instance in use did not answer (or had no leader): the next one is tried from now on.
    fn fail_over(&self, why: &str) {
        if self.servers.len() > 1 {
            let was = self.server().to_string();
            self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(from = %was, to = %self.server(), %why, "moving to the next control-plane instance");
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), CpError> {
        let res = match req.bearer_auth(&self.token).send().await {
            Ok(r) => r,
            Err(e) => {
                let why = transport(&e);
                self.fail_over(&why);
                return Err(CpError::Transport(why));
            }
        };
        // a follower that forwarded this names the leader: go there directly while it answers
        if let Some(leader) = res.headers().get(suanwang_api::LEADER_HEADER).and_then(|v| v.to_str().ok())
            && let Some(i) = self.servers.iter().position(|s| s == leader.trim_end_matches('/'))
        {
            self.current.store(i, std::sync::atomic::Ordering::Relaxed);
        }
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|e| CpError::Transport(transport(&e)))?;
        if status == 503 {
            self.fail_over("503 Service Unavailable");
        }
        Ok((status, body.to_vec()))
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, CpError> {
        let (status, body) = self.send(req).await?;
        if !(200..300).contains(&status) {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| CpError::Protocol(e.to_string()))
    }
}

/// A reqwest error with its causes (reqwest's own message hides the interesting part).
fn transport(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl ControlPlane for HttpControlPlane {
    async fn register(&self, req: &RegisterRequest) -> Result<RegisterAnswer, CpError> {
        self.json(self.http.post(format!("{}/v1/agents/register", self.server())).json(req)).await
    }

    async fn assignments(&self, wait: Duration, known: Option<&str>) -> Result<AssignmentsAnswer, CpError> {
        use std::fmt::Write as _;
        let mut url = format!("{}/v1/agents/{}/assignments?wait_ms={}", self.server(), self.site, wait.as_millis());
        if let Some(k) = known {
            // a version is hex digits and a dash; anything else is escaped
            url.push_str("&known=");
            for b in k.bytes() {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                    url.push(char::from(b));
                } else {
                    let _ = write!(url, "%{b:02X}");
                }
            }
        }
        self.json(self.http.get(url)).await
    }

    async fn report(&self, report: &Report) -> Result<(), CpError> {
        let url = format!("{}/v1/agents/{}/reports", self.server(), self.site);
        let (status, body) = self.send(self.http.post(url).json(report)).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(refusal(status, &body)) }
    }

    async fn put_checkpoint(&self, id: u64, attempt: u32, data: Vec<u8>) -> Result<(), CpError> {
        let url = format!("{}/v1/agents/{}/checkpoints/{id}?attempt={attempt}", self.server(), self.site);
        let (status, body) = self.send(self.http.put(url).body(data)).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(refusal(status, &body)) }
    }

    async fn get_checkpoint(&self, id: u64) -> Result<Option<Vec<u8>>, CpError> {
        let url = format!("{}/v1/agents/{}/checkpoints/{id}", self.server(), self.site);
        let (status, body) = self.send(self.http.get(url)).await?;
        match status {
            404 => Ok(None),
            200..=299 => Ok(Some(body)),
            _ => Err(refusal(status, &body)),
        }
    }
}
