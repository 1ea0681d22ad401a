//! The wire format from outside: the OpenAPI document validated by an independent validator,
//! and the wire types round-tripping the JSON the server has always sent.

use std::path::PathBuf;
use std::process::Command;

/// `openapi-spec-validator` (PyPI): `$SUANWANG_OPENAPI_VALIDATOR`, else the virtualenv
/// `scripts/test.sh` installs it into (`target/pyenv`), else on PATH.
fn validator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SUANWANG_OPENAPI_VALIDATOR") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/openapi-spec-validator");
    if venv.is_file() {
        return Some(venv);
    }
    let found = Command::new("openapi-spec-validator").arg("--help").output().is_ok_and(|o| o.status.success());
    found.then(|| PathBuf::from("openapi-spec-validator"))
}

#[test]
fn the_openapi_document_passes_an_independent_validator() {
    let Some(bin) = validator() else {
        eprintln!(
            "SKIPPED: openapi-spec-validator is not installed (scripts/test.sh installs it into target/pyenv; \
             or `pip install openapi-spec-validator`)"
        );
        return;
    };
    let doc = suanwang_api::openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    let path = std::env::temp_dir().join(format!("suanwang-openapi-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write the document");
    let out = Command::new(&bin).arg("--schema").arg("3.1.0").arg(&path).output().expect("run the validator");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success() && text.contains("OK"), "{} says:\n{text}", bin.display());
}

#[test]
fn a_broken_document_fails_the_validator() {
    // the validator is not a rubber stamp: a path parameter left undeclared is an error
    let Some(bin) = validator() else {
        eprintln!("SKIPPED: openapi-spec-validator is not installed");
        return;
    };
    let mut doc = suanwang_api::openapi();
    doc["paths"]["/v1/jobs/{id}"]["get"]["parameters"] = serde_json::json!([]);
    let path = std::env::temp_dir().join(format!("suanwang-openapi-broken-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&doc).expect("json")).expect("write");
    let out = Command::new(&bin).arg("--schema").arg("3.1.0").arg(&path).output().expect("run the validator");
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success(), "an undeclared path parameter passed: {}", String::from_utf8_lossy(&out.stdout));
}
