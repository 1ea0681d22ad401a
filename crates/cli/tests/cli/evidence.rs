//! The evidence and dataset commands against `suanwang up` (issue 14): a dataset registered from
//! a file, a job that reads it by id, its records verified offline — and the same bundle with a
//! changed record, a changed root or a truncated checkpoint refused; the log mirrored to static
//! files and audited, and a changed or missing tile caught.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::agents::{Up, up};

fn run(u: &Up, token: &str, args: &[&str]) -> Output {
    crate::client::client(u, token, args)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: &Output, what: &str) -> String {
    assert_eq!(o.status.code(), Some(1), "{what} must fail verification: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).expect("write");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_records_verify_offline_and_the_log_audits_from_static_files() {
    let u = up("evidence", &["--no-local-agent", "--time-scale", "0.001"]).await;
    let dir = u.dir.join("work");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let data = dir.join("census.bin");
    std::fs::write(&data, vec![7u8; 100_000]).expect("data");
    let reg = ok(&run(
        &u,
        &u.tenant,
        &[
            "dataset",
            "register",
            "--name",
            "census",
            "--file",
            &data.display().to_string(),
            "--classification",
            "restricted",
            "--location",
            "chengdu",
            "--licence",
            "CC-BY-4.0",
            "--json",
        ],
    ));
    let record: Value = serde_json::from_str(&reg).expect("json");
    let id = record["id"].as_str().expect("id").to_string();
    // the command computed the file's SHA-256 and size
    let want: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(vec![7u8; 100_000]).iter().fold(String::new(), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    assert_eq!(record["sha256"].as_str(), Some(want.as_str()));
    assert_eq!(record["size_gb"].as_f64(), Some(0.0001));
    assert_eq!(record["region"], "chengyu");
    let spec = write(
        &dir.join("job.toml"),
        &format!(
            "name = \"stats\"\ntenant = \"acme-ai\"\nkind = \"batch\"\norigin = \"shanghai\"\n[resources]\nfamily = \"general\"\ncount = 8\n[work]\nrun_time_s = 600\n[input]\ndataset = \"{id}\"\n"
        ),
    );
    ok(&run(&u, &u.tenant, &["submit", &spec]));
    let shown = ok(&run(&u, &u.tenant, &["dataset", "show", &id]));
    assert!(shown.contains("REGION          chengyu"), "{shown}");
    let key = write(&dir.join("log.vkey"), &ok(&run(&u, &u.tenant, &["evidence", "key"])));
    let bundle_text = ok(&run(&u, &u.tenant, &["job", "trace", "1", "--json"]));
    let bundle = write(&dir.join("job1.json"), &bundle_text);
    let verified = ok(&run(&u, &u.tenant, &["evidence", "verify", &bundle, "--key", &key]));
    assert!(verified.starts_with("verified: "), "{verified}");
    // a changed record, a changed root, a truncated checkpoint: each refused
    let mut edited: Value = serde_json::from_str(&bundle_text).expect("bundle");
    let record = edited["entries"][0]["opening"]["record"].as_str().expect("record").replacen("submit", "submat", 1);
    edited["entries"][0]["opening"]["record"] = Value::String(record);
    let changed = write(&dir.join("changed.json"), &edited.to_string());
    let why = refused(&run(&u, &u.tenant, &["evidence", "verify", &changed, "--key", &key]), "a changed record");
    assert!(why.contains("commitment"), "{why}");
    let mut edited: Value = serde_json::from_str(&bundle_text).expect("bundle");
    let note = edited["checkpoint"].as_str().expect("note").to_string();
    let lines: Vec<&str> = note.lines().collect();
    let root = lines[2];
    let flipped = if root.starts_with('A') { root.replacen('A', "B", 1) } else { format!("A{}", &root[1..]) };
    edited["checkpoint"] = Value::String(note.replacen(root, &flipped, 1));
    let forged = write(&dir.join("forged.json"), &edited.to_string());
    refused(&run(&u, &u.tenant, &["evidence", "verify", &forged, "--key", &key]), "a forged checkpoint");
    let mut edited: Value = serde_json::from_str(&bundle_text).expect("bundle");
    edited["checkpoint"] = Value::String(note[..note.len() - 20].to_string());
    let truncated = write(&dir.join("truncated.json"), &edited.to_string());
    refused(&run(&u, &u.tenant, &["evidence", "verify", &truncated, "--key", &key]), "a truncated checkpoint");
    // the lineage names the registration and the job
    let trace = ok(&run(&u, &u.tenant, &["dataset", "trace", &id]));
    assert!(trace.contains("register_dataset") && trace.contains("commands: submit"), "{trace}");
    assert!(!trace.contains("NOT PROVED"), "{trace}");
    // a mistyped identifier is refused before any lookup
    let mut typo = id.clone().into_bytes();
    let at = typo.len() - 2;
    typo[at] = if typo[at] == b'3' { b'4' } else { b'3' };
    let out = run(&u, &u.tenant, &["dataset", "show", &String::from_utf8(typo).expect("utf-8")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("check symbol"), "{}", String::from_utf8_lossy(&out.stderr));
    // the log as static files: audited, then a changed tile and a missing bundle caught
    let mirror = dir.join("mirror");
    ok(&run(&u, &u.operator, &["evidence", "mirror", &mirror.display().to_string()]));
    let static_dir = mirror.display().to_string();
    let audited = ok(&run(&u, &u.operator, &["evidence", "audit", &static_dir, "--key", &key]));
    assert!(audited.starts_with("audit passed"), "{audited}");
    let tile = std::fs::read_dir(mirror.join("tile/0/000.p"))
        .expect("tile dir")
        .next()
        .expect("a tile")
        .expect("entry")
        .path();
    let mut bytes = std::fs::read(&tile).expect("tile");
    bytes[5] ^= 1;
    std::fs::write(&tile, &bytes).expect("write");
    refused(&run(&u, &u.operator, &["evidence", "audit", &static_dir, "--key", &key]), "a changed tile");
    bytes[5] ^= 1;
    std::fs::write(&tile, &bytes).expect("write");
    ok(&run(&u, &u.operator, &["evidence", "audit", &static_dir, "--key", &key]));
    std::fs::remove_dir_all(mirror.join("tile/entries")).expect("rm");
    refused(&run(&u, &u.operator, &["evidence", "audit", &static_dir, "--key", &key]), "missing entries");
}
