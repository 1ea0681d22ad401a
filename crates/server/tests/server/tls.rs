//! The API over TLS with certificates the test makes (rcgen): the client verifies the server,
//! mutual TLS gates the agent routes, bad files are refused naming their flag, and a client
//! that never finishes its handshake is cut off.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use suanwang_core::Network;
use suanwang_server::auth::Role;
use suanwang_server::listen::{Limits, ListenOptions, serve_with, tls_config};
use suanwang_server::{ServerConfig, build, create_token};
use tokio::io::AsyncReadExt;

/// A CA, and PEM files it signed, in a fresh directory.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("suanwang-pki-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("suanwang test CA {tag}"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
        Pki { dir, ca }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `NAME.pem` and `NAME.key` for the subject alternative names `sans`.
    pub fn issue(&self, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(ToString::to_string).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let (c, k) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }
}

/// A client trusting only `ca`, presenting `identity` (cert, key) if given.
pub fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).expect("ca")).expect("pem");
    let mut b = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(10));
    if let Some((c, k)) = identity {
        let mut pem = std::fs::read(c).expect("cert");
        pem.extend(std::fs::read(k).expect("key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

struct Tls {
    url: String,
    addr: std::net::SocketAddr,
    operator: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Tls {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn start_tls(tag: &str, opts: ListenOptions) -> Tls {
    let store = super::sqlite(tag).await;
    let net = Arc::new(Network::reference().expect("reference"));
    let (router, actor) = build(net, store.clone(), ServerConfig::default()).await.expect("build");
    let operator = create_token(&store, Role::Operator, "ops").await.expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = tokio::spawn(async move {
        let _ = serve_with(listener, router, opts).await;
    });
    Tls { url: format!("https://{addr}"), addr, operator, tasks: vec![serve, actor] }
}

fn options(cfg: rustls::ServerConfig, agents_need_client_cert: bool) -> ListenOptions {
    ListenOptions {
        tls: Some(Arc::new(cfg)),
        agents_need_client_cert,
        limits: Limits::default(),
        instance_secret: None,
    }
}

#[tokio::test]
async fn https_serves_the_api_to_a_client_that_verifies_the_certificate() {
    let pki = Pki::new("https");
    let (cert, key) = pki.issue("server", &["127.0.0.1", "localhost"]);
    let s = start_tls("https", options(tls_config(&cert, &key, None).expect("tls"), false)).await;

    let ok = client(&pki.ca(), None);
    let res = ok.get(format!("{}/v1/sites", s.url)).bearer_auth(&s.operator).send().await.expect("https");
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert!(body["sites"].as_array().is_some_and(|a| !a.is_empty()), "{body}");

    // a client that trusts another CA refuses the server's certificate
    let other = Pki::new("https-other");
    let err = client(&other.ca(), None).get(format!("{}/healthz", s.url)).send().await.expect_err("untrusted");
    assert!(err.is_connect(), "{err:?}");

    // a certificate for another name is refused too
    let (cert2, key2) = pki.issue("elsewhere", &["elsewhere.example"]);
    let s2 = start_tls("https-name", options(tls_config(&cert2, &key2, None).expect("tls"), false)).await;
    assert!(ok.get(format!("{}/healthz", s2.url)).send().await.is_err(), "the name must match");

    // plain HTTP on the TLS port gets no answer
    let plain = super::http().get(format!("http://{}/healthz", s.addr)).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
}

#[tokio::test]
async fn under_mutual_tls_the_agent_routes_need_a_client_certificate_from_the_client_ca() {
    let pki = Pki::new("mtls");
    let (cert, key) = pki.issue("server", &["127.0.0.1"]);
    let clients = Pki::new("mtls-clients");
    let (agent_cert, agent_key) = clients.issue("agent-1", &["agent-1.example"]);
    let cfg = tls_config(&cert, &key, Some(&clients.ca())).expect("tls");
    let s = start_tls("mtls", options(cfg, true)).await;
    let path = format!("{}/v1/agents/nowhere/assignments?wait_ms=0", s.url);

    // without a client certificate: 401 naming the reason, though the token is an operator's
    let res = client(&pki.ca(), None).get(&path).bearer_auth(&s.operator).send().await.expect("call");
    assert_eq!(res.status().as_u16(), 401);
    let body: serde_json::Value = res.json().await.expect("json");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("client certificate")), "{body}");

    // other routes need only the token
    let res = client(&pki.ca(), None).get(format!("{}/v1/sites", s.url)).bearer_auth(&s.operator).send().await;
    assert_eq!(res.expect("call").status().as_u16(), 200);

    // with a certificate from the client CA the request reaches the handler (which answers
    // for the unknown site, not with the mTLS refusal)
    let with = client(&pki.ca(), Some((&agent_cert, &agent_key)));
    let res = with.get(&path).bearer_auth(&s.operator).send().await.expect("call");
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    assert!(
        !body["message"].as_str().is_some_and(|m| m.contains("client certificate")),
        "a verified client certificate passes the gate: {status} {body}"
    );

    // a certificate from another CA fails the handshake
    let (stray_cert, stray_key) = pki.issue("stray", &["stray.example"]);
    let stray = client(&pki.ca(), Some((&stray_cert, &stray_key)));
    assert!(stray.get(&path).bearer_auth(&s.operator).send().await.is_err(), "a client certificate from another CA");
}

#[test]
fn bad_tls_files_are_refused_naming_the_flag() {
    let pki = Pki::new("bad");
    let (cert, key) = pki.issue("server", &["127.0.0.1"]);
    let (_, other_key) = pki.issue("other", &["127.0.0.1"]);
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").expect("write");
    let missing = pki.dir.join("missing.pem");

    let msg = |r: Result<rustls::ServerConfig, suanwang_server::listen::TlsError>| {
        r.err().map(|e| e.to_string()).expect("refused")
    };
    let m = msg(tls_config(&cert, &other_key, None));
    assert!(m.contains("--tls-cert and --tls-key do not belong together"), "{m}");
    let m = msg(tls_config(&garbage, &key, None));
    assert!(m.starts_with("--tls-cert ") && m.contains("no PEM certificate"), "{m}");
    let m = msg(tls_config(&cert, &garbage, None));
    assert!(m.starts_with("--tls-key ") && m.contains("private key"), "{m}");
    let m = msg(tls_config(&cert, &missing, None));
    assert!(m.starts_with("--tls-key ") && m.contains("cannot read"), "{m}");
    let m = msg(tls_config(&missing, &key, None));
    assert!(m.starts_with("--tls-cert ") && m.contains("cannot read"), "{m}");
    let m = msg(tls_config(&cert, &key, Some(&garbage)));
    assert!(m.starts_with("--client-ca ") && m.contains("no PEM certificate"), "{m}");
    assert!(tls_config(&cert, &key, Some(&pki.ca())).is_ok());
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_cut_off() {
    let pki = Pki::new("handshake");
    let (cert, key) = pki.issue("server", &["127.0.0.1"]);
    let mut opts = options(tls_config(&cert, &key, None).expect("tls"), false);
    opts.limits.handshake_timeout = Duration::from_millis(300);
    let s = start_tls("handshake", opts).await;

    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    let t = Instant::now();
    let mut buf = [0u8; 64];
    // says nothing: the server must close the connection after the handshake timeout
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(t.elapsed() >= Duration::from_millis(250), "closed by the timeout, not at once: {:?}", t.elapsed());

    // the server still serves others
    let res = client(&pki.ca(), None).get(format!("{}/healthz", s.url)).send().await.expect("healthz");
    assert_eq!(res.status().as_u16(), 200);
}
