//! The evidence log over real HTTP, on SQLite and PostgreSQL (issue 14, R6/R7): every
//! submission's records are entries of a Merkle log whose checkpoints the server signs; the
//! whole log replays from its tiles to the checkpoint's root; a tenant proves its own job's
//! records offline and cannot open another's; consistency holds between checkpoints and
//! across a restart; a witness cosigns; bad queries are 4xx naming the field.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use suanwang_evidence::entry::{Entry, audit};
use suanwang_evidence::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use suanwang_evidence::note::{COSIGNATURE_V1, Checkpoint, Note, Signer, Verifier};
use suanwang_evidence::tile::TilePath;
use suanwang_server::ServerConfig;
use suanwang_server::auth::Role;
use suanwang_server::create_token;
use suanwang_store::AnyStore;

use crate::{call, http, postgres, spec, sqlite, start_with};

fn hash(s: &str) -> Hash {
    B64.decode(s).ok().and_then(|v| v.try_into().ok()).unwrap_or_else(|| panic!("{s} is not a base64 hash"))
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().expect("hashes").iter().map(|h| hash(h.as_str().expect("str"))).collect()
}

async fn text(url: &str, path: &str, token: &str) -> (u16, Vec<u8>) {
    let res = http().get(format!("{url}{path}")).bearer_auth(token).send().await.expect("get");
    let st = res.status().as_u16();
    (st, res.bytes().await.expect("body").to_vec())
}

/// The newest checkpoint, opened with the log's key.
async fn checkpoint(url: &str, token: &str, key: &Verifier) -> (Checkpoint, String) {
    let (st, body) = text(url, "/v1/evidence/checkpoint", token).await;
    assert_eq!(st, 200);
    let note = String::from_utf8(body).expect("utf-8");
    let (c, _) = Checkpoint::open(&note, key, &[], 0).expect("the checkpoint verifies with the log's key");
    (c, note)
}

/// Every tile the audit asks for, fetched over HTTP first (the audit itself is synchronous).
async fn audit_over_http(url: &str, token: &str, c: &Checkpoint) {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    // ask the audit what it needs, fetch it, again, until it has everything
    loop {
        let mut missing = None;
        let r = audit(
            c.size,
            &c.root,
            &[],
            |p: TilePath| match files.get(&p.to_path()) {
                Some(b) => Ok(b.clone()),
                None => {
                    missing = Some(p.to_path());
                    Err(suanwang_evidence::EvidenceError::Proof("fetching".into()))
                }
            },
            |_| {},
        );
        match (r, missing) {
            (Ok(done), None) => {
                assert_eq!(done.size, c.size);
                return;
            }
            (_, Some(path)) => {
                let (st, body) = text(url, &format!("/v1/evidence/{path}"), token).await;
                assert_eq!(st, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
                files.insert(path, body);
            }
            (Err(e), None) => panic!("the audit failed: {e}"),
        }
    }
}

/// The openings of the log's `token_created` entries below `size`, read as the operator.
async fn token_records(url: &str, op: &str, size: u64) -> Vec<(u64, Value)> {
    let mut out = vec![];
    for i in 0..size {
        let (st, e) = call(url, "GET", &format!("/v1/evidence/entries/{i}"), Some(op), None, None).await;
        assert_eq!(st, 200, "entry {i}: {e}");
        let entry: Value = serde_json::from_str(e["entry"].as_str().expect("entry")).expect("entry json");
        if entry["kind"] == "token_created" {
            let record = e["opening"]["record"].as_str().expect("the operator opens every record");
            out.push((i, serde_json::from_str(record).expect("record json")));
        }
    }
    out
}

/// Waits until the log holds `n` token creations; returns them by principal.
async fn logged_tokens(url: &str, op: &str, key: &Verifier, n: usize) -> (Vec<(u64, Value)>, HashMap<String, Value>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (c, _) = checkpoint(url, op, key).await;
        let found = token_records(url, op, c.size).await;
        if found.len() >= n || std::time::Instant::now() > deadline {
            let by: HashMap<String, Value> = found
                .iter()
                .map(|(_, r)| (r["body"]["principal"].as_str().expect("principal").to_string(), r["body"].clone()))
                .collect();
            return (found, by);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn evidence_flow(store: AnyStore) {
    let witness = Signer::from_seed("witness.example/w1", COSIGNATURE_V1, [42; 32]).expect("witness");
    let cfg = ServerConfig { witnesses: vec![witness.verifier().encode()], ..ServerConfig::default() };
    let server = start_with(store.clone(), cfg.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let other = create_token(&store, Role::Tenant, "other").await.expect("token");
    let mut acme_jobs = vec![];
    for i in 0..300 {
        let (st, j) =
            call(&server.url, "POST", "/v1/jobs", Some(&acme), Some(spec("acme", &format!("e{i}"))), None).await;
        assert_eq!(st, 201, "{j}");
        acme_jobs.push(j["id"].as_u64().expect("id"));
    }
    let (st, _) = call(&server.url, "POST", "/v1/jobs", Some(&other), Some(spec("other", "theirs")), None).await;
    assert_eq!(st, 201);
    let (st, keys) = call(&server.url, "GET", "/v1/evidence/key", Some(&acme), None, None).await;
    assert_eq!(st, 200, "{keys}");
    let key = Verifier::parse(keys["key"].as_str().expect("key")).expect("the served key parses");
    assert_eq!(keys["witnesses"][0], witness.verifier().encode());
    let (c1, note1) = checkpoint(&server.url, &acme, &key).await;
    assert!(c1.size >= 301, "one entry per submission at least: {}", c1.size);
    // the whole log replays from its tiles to the signed root
    audit_over_http(&server.url, &op, &c1).await;

    // a tenant proves its own job's records offline from the bundle alone
    let job = acme_jobs[7];
    let (st, bundle) = call(&server.url, "GET", &format!("/v1/jobs/{job}/evidence"), Some(&acme), None, None).await;
    assert_eq!(st, 200, "{bundle}");
    let bkey = Verifier::parse(bundle["key"].as_str().expect("key")).expect("key");
    let (bc, _) =
        Checkpoint::open(bundle["checkpoint"].as_str().expect("note"), &bkey, &[], 0).expect("bundle checkpoint");
    let entries = bundle["entries"].as_array().expect("entries");
    assert!(!entries.is_empty(), "job {job} has records");
    for item in entries {
        let bytes = item["entry"].as_str().expect("entry").as_bytes();
        let parsed = Entry::parse(bytes).expect("a canonical entry");
        let opened = &item["opening"];
        let salt: [u8; 32] = suanwang_evidence::entry::unhex(opened["salt"].as_str().expect("salt"))
            .and_then(|v| v.try_into().ok())
            .expect("32-byte salt");
        let record = opened["record"].as_str().expect("record");
        parsed.opens(&salt, record.as_bytes()).expect("the opening matches the commitment");
        let rec: Value = serde_json::from_str(record).expect("record json");
        assert_eq!(rec["job"], job, "the record is job {job}'s");
        let index = item["index"].as_u64().expect("index");
        verify_inclusion(&leaf_hash(bytes), index, bc.size, &hashes(&item["proof"]), &bc.root)
            .expect("the inclusion proof verifies");
        // a changed record does not open the entry
        assert!(parsed.opens(&salt, record.replace("acme", "acmf").as_bytes()).is_err());
    }
    // another tenant sees neither the bundle nor the opening
    let (st, _) = call(&server.url, "GET", &format!("/v1/jobs/{job}/evidence"), Some(&other), None, None).await;
    assert_eq!(st, 404);
    let index = entries[0]["index"].as_u64().expect("index");
    let (st, theirs) =
        call(&server.url, "GET", &format!("/v1/evidence/entries/{index}"), Some(&other), None, None).await;
    assert_eq!(st, 200);
    assert!(theirs["opening"].is_null(), "another tenant's record stays closed: {theirs}");
    let (_, mine) = call(&server.url, "GET", &format!("/v1/evidence/entries/{index}"), Some(&acme), None, None).await;
    assert!(mine["opening"]["record"].is_string());
    // the served inclusion proof agrees
    let (st, proof) = call(
        &server.url,
        "GET",
        &format!("/v1/evidence/proof/inclusion?index={index}&size={}", c1.size),
        Some(&other),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200, "{proof}");
    verify_inclusion(
        &hash(proof["leaf_hash"].as_str().expect("leaf")),
        index,
        c1.size,
        &hashes(&proof["hashes"]),
        &c1.root,
    )
    .expect("served inclusion proof");

    // a witness cosigns; the checkpoint then carries its cosignature
    let mut cosigned = Note::parse(&note1).expect("note");
    cosigned.add(&witness.sign(&cosigned.text, 1_764_950_400)).expect("add");
    let (st, answer) = call(
        &server.url,
        "POST",
        "/v1/evidence/cosignatures",
        Some(&op),
        Some(serde_json::to_vec(&serde_json::json!({"note": cosigned.encode()})).expect("json")),
        None,
    )
    .await;
    assert_eq!(st, 200, "{answer}");
    assert_eq!(answer["cosigners"][0], "witness.example/w1");
    let (st, list) = call(&server.url, "GET", "/v1/evidence/checkpoints", Some(&op), None, None).await;
    assert_eq!(st, 200);
    let kept = list["checkpoints"].as_array().expect("list").iter().find(|x| x["size"] == c1.size).expect("kept");
    Checkpoint::open(kept["note"].as_str().expect("note"), &key, &[witness.verifier()], 1).expect("cosigned");
    // a cosignature by an impostor with the witness's name is refused
    let impostor = Signer::from_seed("witness.example/w1", COSIGNATURE_V1, [43; 32]).expect("impostor");
    let mut forged = Note::parse(&note1).expect("note");
    forged.add(&impostor.sign(&forged.text, 1_764_950_400)).expect("add");
    let (st, e) = call(
        &server.url,
        "POST",
        "/v1/evidence/cosignatures",
        Some(&op),
        Some(serde_json::to_vec(&serde_json::json!({"note": forged.encode()})).expect("json")),
        None,
    )
    .await;
    assert_eq!(st, 422, "{e}");

    // bad queries name their field; nothing is a 5xx
    for (path, field) in [
        ("/v1/evidence/proof/inclusion?index=abc", "index"),
        ("/v1/evidence/proof/inclusion", "index"),
        (&format!("/v1/evidence/proof/inclusion?index={}", c1.size) as &str, "index"),
        (&format!("/v1/evidence/proof/inclusion?index=0&size={}", c1.size + 1_000_000), "size"),
        ("/v1/evidence/proof/consistency?from=5&to=3", "from"),
        (&format!("/v1/evidence/proof/consistency?from=1&to={}", c1.size + 1_000_000), "to"),
        ("/v1/evidence/tile/0/12", "path"),
        ("/v1/evidence/tile/0/000.p/256", "path"),
        ("/v1/evidence/entries/-1", "index"),
    ] {
        let (st, e) = call(&server.url, "GET", path, Some(&op), None, None).await;
        assert_eq!(st, 400, "{path}: {e}");
        assert_eq!(e["field"], field, "{path}: {e}");
    }
    for path in ["/v1/evidence/tile/3/000", "/v1/evidence/tile/entries/x001/000", "/v1/evidence/entries/99999999"] {
        let (st, e) = call(&server.url, "GET", path, Some(&op), None, None).await;
        assert_eq!(st, 404, "{path}: {e}");
    }
    let (st, _) = call(&server.url, "GET", "/v1/evidence/checkpoint", None, None, None).await;
    assert_eq!(st, 401, "the log is read with a token");

    // a restart rebuilds the right edge from the store: the same root, and the tree grows on
    drop(server);
    let server = start_with(store.clone(), cfg).await;
    let (st, k2) = call(&server.url, "GET", "/v1/evidence/key", Some(&op), None, None).await;
    assert_eq!(st, 200);
    assert_eq!(k2["key"], keys["key"], "the log keeps its key across a restart");
    let (st, _) = call(&server.url, "POST", "/v1/jobs", Some(&acme), Some(spec("acme", "after")), None).await;
    assert_eq!(st, 201);
    let (c2, _) = checkpoint(&server.url, &acme, &key).await;
    assert!(c2.size > c1.size);
    let (st, proof) = call(
        &server.url,
        "GET",
        &format!("/v1/evidence/proof/consistency?from={}&to={}", c1.size, c2.size),
        Some(&op),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200, "{proof}");
    verify_consistency(c1.size, c2.size, &c1.root, &c2.root, &hashes(&proof["hashes"]))
        .expect("consistent across a restart");
    audit_over_http(&server.url, &op, &c2).await;

    // tokens' creations are in the log, once each, never the token; one made while no control
    // plane ran is logged at the next start
    drop(server);
    let late = create_token(&store, Role::Tenant, "late").await.expect("token");
    let server = start_with(store.clone(), ServerConfig::default()).await;
    let (found, by) = logged_tokens(&server.url, &op, &key, 4).await;
    assert_eq!(found.len(), 4, "ops, acme, other and late, once each: {found:?}");
    for (name, role) in [("ops", "operator"), ("acme", "tenant"), ("other", "tenant"), ("late", "tenant")] {
        let r = &by[name];
        assert_eq!(r["role"], role, "{r}");
        assert_eq!(r["fingerprint"].as_str().expect("fingerprint").len(), 16, "{r}");
    }
    for (_, r) in &found {
        let text = r.to_string();
        for t in [&op, &acme, &other, &late] {
            assert!(!text.contains(t.as_str()), "a token is never logged: {text}");
        }
    }
    // a tenant opens its own token's record, not another's
    let index = |name: &str| found.iter().find(|(_, r)| r["body"]["principal"] == name).expect("logged").0;
    let (_, mine) =
        call(&server.url, "GET", &format!("/v1/evidence/entries/{}", index("acme")), Some(&acme), None, None).await;
    assert!(mine["opening"]["record"].is_string(), "{mine}");
    let (_, theirs) =
        call(&server.url, "GET", &format!("/v1/evidence/entries/{}", index("late")), Some(&acme), None, None).await;
    assert!(theirs["opening"].is_null(), "{theirs}");
}

#[tokio::test]
async fn the_evidence_log_on_sqlite() {
    Box::pin(evidence_flow(sqlite("evidence").await)).await;
}

#[tokio::test]
async fn the_evidence_log_on_postgres() {
    Box::pin(evidence_flow(postgres("evidence").await)).await;
}

/// The region of a site or city, from the served network.
fn region(net: &Value, place: &str) -> String {
    let find = |list: &str| {
        net[list].as_array().and_then(|a| a.iter().find(|x| x["id"] == place)).map(|x| {
            x["region"].as_str().map_or_else(|| x["province"].as_str().unwrap_or_default().to_string(), str::to_string)
        })
    };
    find("sites").or_else(|| find("cities")).unwrap_or_else(|| panic!("{place} is not in the network"))
}

/// The dataset registry (issue 14 items 3–5): identifiers issued and resolved, residency of a
/// restricted dataset for its jobs, copies refused outside the region or with another hash,
/// a completed job's copy recorded, and the lineage proved from the log.
#[tokio::test]
async fn datasets_are_registered_resolved_kept_in_their_region_and_traced() {
    use crate::history::until;
    let store = sqlite("datasets").await;
    let cfg = ServerConfig { time_scale: 0.001, ..ServerConfig::default() };
    let server = start_with(store.clone(), cfg).await;
    let url = server.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let other = create_token(&store, Role::Tenant, "other").await.expect("token");
    let sha = "ab".repeat(32);
    let body = |v: Value| Some(serde_json::to_vec(&v).expect("json"));
    let (st, d) = call(
        &url,
        "POST",
        "/v1/datasets",
        Some(&acme),
        body(serde_json::json!({"name": "census", "size_gb": 50.0, "sha256": sha, "classification": "restricted",
            "licence": "CC-BY-4.0", "location": "beijing"})),
        None,
    )
    .await;
    assert_eq!(st, 201, "{d}");
    let id = d["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("88.156.1/"), "{id}");
    assert_eq!(d["region"], "jingjinji");
    assert!(d["values"].as_array().expect("values").iter().any(|v| v["type"] == "SHA256" && v["value"] == sha));
    // resolvable with the slash as is or encoded, case-insensitively; not by another tenant
    for path in [format!("/v1/datasets/{id}"), format!("/v1/datasets/{}", id.replace('/', "%2F").to_lowercase())] {
        let (st, r) = call(&url, "GET", &path, Some(&acme), None, None).await;
        assert_eq!(st, 200, "{path}: {r}");
        assert_eq!(r["id"], id.as_str());
    }
    let (st, _) = call(&url, "GET", &format!("/v1/datasets/{id}"), Some(&other), None, None).await;
    assert_eq!(st, 404, "a restricted dataset is its owner's");
    // malformed identifiers and a wrong check symbol name no dataset: 404 naming the field and why
    let mut typo = id.clone().into_bytes();
    let at = typo.len() - 3;
    typo[at] = if typo[at] == b'7' { b'8' } else { b'7' };
    for bad in ["88.156.1", "x/ABC", &String::from_utf8(typo).expect("utf-8")] {
        let (st, e) = call(&url, "GET", &format!("/v1/datasets/{bad}"), Some(&acme), None, None).await;
        assert_eq!(st, 404, "{bad}: {e}");
        assert_eq!(e["field"], "dataset");
        assert_eq!(e["code"], "bad_dataset_id", "{e}");
    }
    let (st, e) = call(
        &url,
        "POST",
        "/v1/datasets",
        Some(&acme),
        body(serde_json::json!({"name": "x", "size_gb": 1.0, "sha256": "12", "classification": "public",
            "licence": "MIT", "location": "beijing"})),
        None,
    )
    .await;
    assert_eq!((st, e["field"].as_str()), (422, Some("sha256")), "{e}");
    // a job names its input by id: size, replica and residency come from the registry
    let (st, j) = call(
        &url,
        "POST",
        "/v1/jobs",
        Some(&acme),
        body(serde_json::json!({"name": "read-census", "tenant": "acme", "kind": "batch", "origin": "shanghai",
            "resources": {"family": "general", "count": 8}, "work": {"run_time_s": 3600},
            "input": {"dataset": id.to_lowercase()}})),
        None,
    )
    .await;
    assert_eq!(st, 201, "{j}");
    assert_eq!(j["spec"]["input"]["location"], "beijing");
    assert_eq!(j["spec"]["input"]["dataset"], id.as_str(), "normalised");
    let (_, net) = call(&url, "GET", "/v1/network", Some(&op), None, None).await;
    let site = j["site"].as_str().expect("placed").to_string();
    assert_eq!(region(&net, &site), "jingjinji", "a restricted dataset's job stays in its region");
    // copies: not outside the region, not with another hash; one in the region with its hash
    let replica = |site: &str, sha: &str| body(serde_json::json!({"site": site, "sha256": sha}));
    let (st, e) =
        call(&url, "POST", &format!("/v1/datasets/{id}/replicas"), Some(&acme), replica("shanghai", &sha), None).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("site")), "{e}");
    let (st, e) = call(
        &url,
        "POST",
        &format!("/v1/datasets/{id}/replicas"),
        Some(&acme),
        replica("tianjin", &"cd".repeat(32)),
        None,
    )
    .await;
    assert_eq!((st, e["field"].as_str()), (422, Some("sha256")), "{e}");
    let (st, r) =
        call(&url, "POST", &format!("/v1/datasets/{id}/replicas"), Some(&acme), replica("tianjin", &sha), None).await;
    assert_eq!(st, 200, "{r}");
    assert!(
        r["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .any(|x| x["site"] == "tianjin" && x["sha256_verified"] == true)
    );
    // the job completes; a copy is recorded where it ran (when that was not a replica already)
    let job = j["id"].as_u64().expect("id");
    until(&url, &acme, &format!("/v1/jobs/{job}"), |v| v["state"] == "completed").await;
    let done = until(&url, &acme, &format!("/v1/datasets/{id}"), |v| {
        v["replicas"].as_array().is_some_and(|a| a.iter().any(|x| x["site"] == site.as_str()))
    })
    .await;
    assert!(done["replicas"].as_array().expect("replicas").len() >= 2);
    // lineage: registration, copies and the job, each proved against the signed checkpoint
    let (st, lineage) = call(&url, "GET", &format!("/v1/datasets/{id}/lineage"), Some(&acme), None, None).await;
    assert_eq!(st, 200, "{lineage}");
    let key = Verifier::parse(lineage["key"].as_str().expect("key")).expect("key");
    let (cp, _) = Checkpoint::open(lineage["checkpoint"].as_str().expect("note"), &key, &[], 0).expect("checkpoint");
    let entries = lineage["entries"].as_array().expect("entries");
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap_or_default()).collect();
    assert!(
        kinds.contains(&"register_dataset") && kinds.contains(&"replicate_dataset") && kinds.contains(&"job"),
        "{kinds:?}"
    );
    for e in entries {
        let bytes = e["entry"].as_str().expect("entry").as_bytes();
        verify_inclusion(
            &leaf_hash(bytes),
            e["index"].as_u64().expect("index"),
            cp.size,
            &hashes(&e["proof"]),
            &cp.root,
        )
        .expect("each record of the lineage is in the log");
    }
    let (st, _) = call(&url, "GET", &format!("/v1/datasets/{id}/lineage"), Some(&other), None, None).await;
    assert_eq!(st, 404);
    // the list: the owner sees it, another tenant does not (restricted)
    let (_, mine) = call(&url, "GET", "/v1/datasets", Some(&acme), None, None).await;
    assert_eq!(mine["datasets"].as_array().expect("list").len(), 1);
    let (_, theirs) = call(&url, "GET", "/v1/datasets", Some(&other), None, None).await;
    assert_eq!(theirs["datasets"].as_array().expect("list").len(), 0);
}
