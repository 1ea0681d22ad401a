//! `suanwang dataset register|show|list|replicate|trace` (issue 14, R6): the registry of
//! datasets under unified identifiers, their copies and their lineage in the evidence log.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;
use suanwang_api as api;

use crate::money_cmd::{get, post};
use crate::remote::Client;

/// What `dataset register` sends.
#[derive(Debug)]
pub struct RegisterArgs<'a> {
    pub name: &'a str,
    pub file: Option<&'a Path>,
    pub size_gb: Option<f64>,
    pub sha256: Option<&'a str>,
    pub classification: &'a str,
    pub licence: &'a str,
    pub location: &'a str,
    pub owner: Option<&'a str>,
    pub json: bool,
}

/// SHA-256 and size (GB) of a local file, read in 1 MiB blocks.
fn digest(path: &Path) -> Result<(String, f64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    let hex = h.finalize().iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok((hex, n as f64 / 1e9))
}

fn show_record(r: &api::DatasetRecord) {
    println!("{}  {}  (owner {}, {})", r.id, r.name, r.owner, r.licence);
    let class =
        serde_json::to_value(r.classification).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let region = r.region.as_ref().map_or_else(String::new, |g| format!(", may not leave {g}"));
    println!("  {:.3} GB, sha256 {}, {class}{region}", r.size_gb, r.sha256);
    for x in &r.replicas {
        println!(
            "  replica at {:<16} since {}  {}{}",
            x.site,
            crate::remote::rfc3339(x.since_ms),
            x.by,
            if x.sha256_verified { ", hash verified" } else { "" }
        );
    }
}

/// A record as JSON, or for people.
fn print_record(r: &api::DatasetRecord, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        show_record(r);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn register(c: &Client, a: &RegisterArgs<'_>) -> Result<ExitCode> {
    let (sha, size) = match (a.file, a.sha256, a.size_gb) {
        (Some(f), None, None) => digest(f)?,
        (None, Some(h), Some(s)) => (h.to_string(), s),
        (Some(_), _, _) => bail!("--file computes the SHA-256 and size: give it without --sha256 and --size-gb"),
        _ => bail!("give --file PATH (SHA-256 and size computed here), or --sha256 HEX and --size-gb GB"),
    };
    let mut body = json!({"name": a.name, "size_gb": size, "sha256": sha, "classification": a.classification,
        "licence": a.licence, "location": a.location});
    if let Some(o) = a.owner {
        body["owner"] = json!(o);
    }
    let r: api::DatasetRecord = match post(c, "/v1/datasets", &body).await? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_record(&r, a.json)
}

pub async fn show(c: &Client, id: &str, json_out: bool) -> Result<ExitCode> {
    let r: api::DatasetRecord = match get(c, &format!("/v1/datasets/{id}")).await? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        show_record(&r);
        for v in &r.values {
            println!("  {:<15} {}", v.kind, v.value);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(c: &Client, owner: Option<&str>, json_out: bool) -> Result<ExitCode> {
    let mut all = vec![];
    let mut after = String::new();
    loop {
        let owner_q = owner.map_or_else(String::new, |o| format!("&owner={o}"));
        let path = format!("/v1/datasets?limit=1000&after={}{owner_q}", after.replace('/', "%2F"));
        let page: api::DatasetList = match get(c, &path).await? {
            Ok(p) => p,
            Err(code) => return Ok(code),
        };
        all.extend(page.datasets);
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"datasets": all}))?);
    } else if all.is_empty() {
        println!("no datasets");
    } else {
        for r in &all {
            println!(
                "{:<32} {:<24} {:>12.3} GB  {} replica(s)  owner {}",
                r.id,
                r.name,
                r.size_gb,
                r.replicas.len(),
                r.owner
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn replicate(c: &Client, id: &str, site: &str, sha256: &str, json_out: bool) -> Result<ExitCode> {
    let body = api::ReplicaRequest { site: site.to_string(), sha256: sha256.to_string() };
    let r: api::DatasetRecord = match post(c, &format!("/v1/datasets/{id}/replicas"), &body).await? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    print_record(&r, json_out)
}

/// `dataset trace ID`: every record about the dataset, proved against the signed checkpoint.
pub async fn trace(c: &Client, id: &str, json_out: bool) -> Result<ExitCode> {
    let b: api::EvidenceBundle = match get(c, &format!("/v1/datasets/{id}/lineage")).await? {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(ExitCode::SUCCESS);
    }
    crate::evidence_cmd::print_bundle(&format!("dataset {id}"), &b)
}
