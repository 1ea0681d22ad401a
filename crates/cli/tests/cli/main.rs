//! End-to-end tests of the `suanwang` binary: one test binary, modules by command.

mod agents;
mod alerts;
mod client;
mod console;
mod durability;
mod evidence;
mod failover;
mod job;
mod market;
mod money;
mod network;
mod plan;
mod tls;

use std::process::{Command, Output};

/// Runs `suanwang ARGS` with a clean environment for our variables.
pub fn suanwang(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(args)
        .env_remove("SUANWANG_NETWORK_DATA")
        .env_remove("SUANWANG_SERVER")
        .env_remove("SUANWANG_TOKEN")
        .output()
        .expect("the binary runs")
}

/// Runs `suanwang ARGS` with these environment variables set (and no others of ours).
pub fn suanwang_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suanwang"));
    c.args(args).env_remove("SUANWANG_NETWORK_DATA").env_remove("SUANWANG_SERVER").env_remove("SUANWANG_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the binary runs")
}

/// A client for the tests: reqwest is built with rustls but without a default crypto provider
/// (the workspace uses ring alone), so the process installs ring before the first client.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // below the server's 10 s idle close: a pooled connection is never reused as it closes
    reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(5)).build().expect("client")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

pub fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}
