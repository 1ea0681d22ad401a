use super::{repo, stdout_json, suanwang};

#[test]
fn network_json_has_the_documented_arrays() {
    let doc = stdout_json(&suanwang(&["network", "--json"]));
    for key in ["hubs", "clusters", "cities", "sites", "links"] {
        assert!(doc[key].as_array().is_some_and(|a| !a.is_empty()), "{key} is a non-empty array");
    }
    assert_eq!(doc["hubs"].as_array().map(Vec::len), Some(8));
    assert_eq!(doc["clusters"].as_array().map(Vec::len), Some(10));
    let site = &doc["sites"][0];
    for key in ["id", "pools", "capacity_ucu", "green_share", "grid_factor_kg_per_kwh", "pue"] {
        assert!(!site[key].is_null(), "site has {key}");
    }
    let general = doc["totals"]["capacity_ucu"]["general"].as_f64().expect("number");
    assert!(general > 0.0);
}

#[test]
fn network_table_lists_every_hub_and_site() {
    let out = suanwang(&["network"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ["jingjinji", "ningxia", "qinghai", "zhongwei-xibuyun", "yrd-qingpu", "TOTAL"] {
        assert!(text.contains(id), "{id} missing from:\n{text}");
    }
}

#[test]
fn latency_json_has_ms_and_tier() {
    let doc = stdout_json(&suanwang(&["network", "latency", "beijing", "zhangjiakou", "--json"]));
    let ms = doc["one_way_ms"].as_f64().expect("one_way_ms");
    assert!(ms > 0.0 && ms <= 5.0, "{ms}");
    assert!(["city", "regional"].contains(&doc["tier"].as_str().expect("tier")));

    let doc = stdout_json(&suanwang(&["network", "latency", "shanghai", "zhongwei", "--json"]));
    assert_eq!(doc["tier"], "cross-hub");
    let doc = stdout_json(&suanwang(&["network", "latency", "harbin", "yunnan-kunming", "--json"]));
    assert_eq!(doc["tier"], "beyond");
}

#[test]
fn latency_of_an_unknown_id_fails_naming_it() {
    let out = suanwang(&["network", "latency", "beijing", "atlantis"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("atlantis"));
}

#[test]
fn another_data_directory_can_be_loaded_and_is_checked() {
    let dir = std::env::temp_dir().join(format!("suanwang-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for name in suanwang_core::network::DATA_FILES {
        let to = dir.join(name);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(repo(&format!("data/{name}")), &to).expect("copy");
    }
    let ok = suanwang(&["--network-data", dir.to_str().expect("utf8"), "network", "--json"]);
    assert!(ok.status.success());
    let sites = dir.join("network/sites.toml");
    let text = std::fs::read_to_string(&sites).expect("read");
    std::fs::write(&sites, text.replacen("pue = 1.25", "pue = 9.0", 1)).expect("write");
    let bad = suanwang(&["--network-data", dir.to_str().expect("utf8"), "network"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("network/sites.toml") && err.contains("pue"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reader that closes the pipe early (`suanwang network --json | head -c 1`) ends the command
/// quietly: status 0 or 141, no panic.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::io::Read as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["network", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut first = [0u8; 1];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("a byte");
    // the pipe's read end is closed here (dropped with `stdout`)
    let out = child.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(matches!(out.status.code(), Some(0 | 141)), "{:?} {stderr}", out.status);
}
