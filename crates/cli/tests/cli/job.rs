use super::{repo, suanwang};

#[test]
fn job_check_accepts_every_example() {
    for entry in std::fs::read_dir(repo("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = suanwang(&["job", "check", path.to_str().expect("utf8")]);
            assert_eq!(out.status.code(), Some(0), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn job_check_exits_1_listing_every_problem() {
    let dir = std::env::temp_dir().join(format!("suanwang-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "name = \"x\"\ntenant = \"t\"\nkind = \"mining\"\norigin = \"atlantis\"\n[resources]\nfamily = \"general\"\ncount = 0\n[work]\nrun_time_s = 1\n").expect("write");
    let out = suanwang(&["job", "check", file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in ["kind:", "origin:", "resources.count:"] {
        assert!(err.contains(field), "{field} missing from:\n{err}");
    }
    let out = suanwang(&["job", "check", file.to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["problems"].as_array().map(Vec::len), Some(3));
    assert!(doc["problems"][0]["field"].is_string() && doc["problems"][0]["hint"].is_string());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn job_check_of_a_missing_file_is_an_error_not_a_panic() {
    let out = suanwang(&["job", "check", "/nonexistent/job.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/job.toml"));
}
