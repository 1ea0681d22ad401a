//! `suanwang up|serve --tls-cert --tls-key [--client-ca]` over HTTPS with certificates the
//! test makes (rcgen): client commands verify the server (`--ca`), the local agent registers
//! over mutual TLS, an agent without a client certificate is refused, bad flags fail at start
//! naming the flag.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::suanwang;

/// A CA, and PEM files it signed, in `dir`.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    name: String,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).expect("mkdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("suanwang test {name}"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).expect("write");
        Pki { dir: dir.to_path_buf(), ca, name: name.into() }
    }

    fn ca(&self) -> String {
        self.dir.join(format!("{}.pem", self.name)).display().to_string()
    }

    /// (`NAME.pem`, `NAME.key`) for the subject alternative names `sans`.
    fn issue(&self, name: &str, sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans.iter().map(ToString::to_string).collect::<Vec<_>>()).expect("p");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let (c, k) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c.display().to_string(), k.display().to_string())
    }
}

struct Up(Child, PathBuf);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("suanwang-cli-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_https_clients_verify_it_and_agents_need_a_client_certificate() {
    let dir = temp("up");
    let pki = Pki::new(&dir, "server-ca");
    let (cert, key) = pki.issue("server", &["127.0.0.1"]);
    let agents = Pki::new(&dir, "agent-ca");
    let (agent_cert, agent_key) = agents.issue("local-agent", &["local.example"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("https://{listen}");
    let data = dir.join("data").display().to_string();
    let ca = pki.ca();
    let agent_ca = agents.ca();
    // the local agent trusts --ca and presents --client-cert, like any client
    let child = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["up", "--data", &data, "--listen", &listen, "--tls-cert", &cert, "--tls-key", &key])
        .args(["--credit-limit-fen", "unlimited"])
        .args(["--client-ca", &agent_ca, "--ca", &ca, "--client-cert", &agent_cert, "--client-key", &agent_key])
        .env_remove("SUANWANG_SERVER")
        .env_remove("SUANWANG_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("up starts");
    let _up = Up(child, dir.clone());

    let _ = rustls::crypto::ring::default_provider().install_default();
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem")])
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while https.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "suanwang up --tls-cert did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("data/credentials.json")).expect("credentials"))
            .expect("json");
    let operator = creds["operator"].as_str().expect("operator").to_string();

    // client commands verify the server with --ca; the local agent registered over mTLS
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = suanwang(&["sites", "--json", "--server", &url, "--token", &operator, "--ca", &ca]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        if v["sites"].as_array().is_some_and(|s| s.iter().any(|x| x["id"] == "local")) {
            break;
        }
        assert!(Instant::now() < deadline, "the local agent never registered over mutual TLS: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // without --ca the system's roots do not know the test CA: refused, not served
    let out = suanwang(&["sites", "--server", &url, "--token", &operator]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("calling"), "{}", stderr(&out));

    // an agent without a client certificate is refused at registration, naming why
    let agent_data = dir.join("agent-nocert").display().to_string();
    let out = suanwang(&[
        "agent",
        "--server",
        &url,
        "--token",
        &operator,
        "--ca",
        &ca,
        "--site",
        "nocert",
        "--data",
        &agent_data,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("client certificate"), "{}", stderr(&out));
}

#[test]
fn bad_tls_flags_fail_at_start_naming_the_flag() {
    let dir = temp("flags");
    let pki = Pki::new(&dir, "ca");
    let (cert, key) = pki.issue("server", &["127.0.0.1"]);
    let (_, other_key) = pki.issue("other", &["127.0.0.1"]);
    let garbage = dir.join("garbage.pem").display().to_string();
    std::fs::write(&garbage, "not PEM at all\n").expect("write");
    let data = dir.join("data").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let up = |extra: &[&str]| {
        let mut args = vec!["up", "--data", &data, "--listen", &listen, "--no-local-agent"];
        args.extend_from_slice(extra);
        let out = suanwang(&args);
        assert!(!out.status.success(), "{extra:?} must be refused");
        stderr(&out)
    };
    let e = up(&["--tls-cert", &cert]);
    assert!(e.contains("--tls-key"), "{e}");
    let e = up(&["--tls-cert", &cert, "--tls-key", &other_key]);
    assert!(e.contains("--tls-cert and --tls-key do not belong together"), "{e}");
    let e = up(&["--tls-cert", &garbage, "--tls-key", &key]);
    assert!(e.contains(&format!("--tls-cert {garbage}: no PEM certificate")), "{e}");
    let e = up(&["--tls-cert", &cert, "--tls-key", &garbage]);
    assert!(e.contains(&format!("--tls-key {garbage}:")), "{e}");
    let e = up(&["--tls-cert", &cert, "--tls-key", &key, "--client-ca", &garbage]);
    assert!(e.contains(&format!("--client-ca {garbage}:")), "{e}");
    let e = up(&["--max-connections", "0"]);
    assert!(e.contains("--max-connections must be at least 1"), "{e}");
    let e = up(&["--max-connections-per-addr", "0"]);
    assert!(e.contains("--max-connections-per-addr must be at least 1"), "{e}");
    let e = up(&["--header-timeout", "0"]);
    assert!(e.contains("--header-timeout must be at least 1 second"), "{e}");

    // clients: a bad --ca, a certificate without its key
    let client = |extra: &[&str]| {
        let mut args = vec!["jobs", "--server", "https://127.0.0.1:1", "--token", "t"];
        args.extend_from_slice(extra);
        let out = suanwang(&args);
        assert!(!out.status.success(), "{extra:?} must be refused");
        stderr(&out)
    };
    let e = client(&["--ca", &garbage]);
    assert!(e.contains(&format!("--ca {garbage}:")), "{e}");
    let e = client(&["--client-cert", &cert]);
    assert!(e.contains("--client-cert needs --client-key"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
