//! The client commands against `suanwang up`: what `jobs`, `submit`, `plan --server` and
//! `job ID` print for people.

use std::process::{Command, Output};

use serde_json::Value;

use crate::agents::{Up, up as up_with};

/// `suanwang up` without its local agent (these tests need none).
async fn up(tag: &str) -> Up {
    up_with(&format!("client-{tag}"), &["--no-local-agent"]).await
}

/// `suanwang ARGS` against the server with `token`.
pub(crate) fn client(u: &Up, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(args)
        .env_remove("SUANWANG_NETWORK_DATA")
        .env("SUANWANG_SERVER", &u.url)
        .env("SUANWANG_TOKEN", token)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn spec_file(dir: &std::path::Path, name: &str, body: &str) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).expect("write spec");
    path.display().to_string()
}

fn rfc3339(ms: i64) -> String {
    format!("{:.0}", jiff::Timestamp::from_millisecond(ms).expect("an instant"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_line_up_submit_says_when_and_job_shows_utc_times() {
    let u = up("jobs").await;
    let specs = u.dir.join("specs");
    // names of very different lengths, one job refused (a reason in the last column)
    let mut ids = vec![];
    // (16 TiB per core: no pool has it, so the third is refused)
    for (name, memory) in [("a", 1), ("a-much-longer-name-than-the-old-fixed-columns-allowed", 2), ("mid.name", 16_384)]
    {
        let file = spec_file(
            &specs,
            name,
            &format!(
                "name = \"{name}\"\ntenant = \"acme-ai\"\nkind = \"batch\"\norigin = \"beijing\"\n\
                 [resources]\nfamily = \"general\"\ncount = 4\nmemory_gib = {memory}\n[work]\nrun_time_s = 600\n"
            ),
        );
        let said = stdout(&client(&u, &u.tenant, &["submit", &file]));
        let id: u64 = said.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("{said}"));
        let view: Value =
            serde_json::from_str(&stdout(&client(&u, &u.tenant, &["job", &id.to_string()]))).expect("job JSON");
        // `job ID`: each instant also in RFC 3339 (UTC), next to the epoch figure
        for key in ["submitted_at", "updated_at", "start_at", "end_at"] {
            match view[key].as_i64() {
                Some(ms) => {
                    assert_eq!(view[format!("{key}_utc")].as_str(), Some(rfc3339(ms).as_str()), "{key}: {view}");
                }
                None => assert!(view.get(format!("{key}_utc")).is_none(), "{key}: {view}"),
            }
        }
        // `submit` says when the job starts, and whether it was deferred
        match view["start_at"].as_i64() {
            Some(start) => {
                assert!(said.contains(&format!("starts {}", rfc3339(start))), "{said}");
                let waits_an_hour = start - view["submitted_at"].as_i64().expect("submitted") >= 3_600_000;
                assert_eq!(said.contains("deferred to greener or cheaper hours"), waits_an_hour, "{said}");
                if waits_an_hour {
                    assert!(
                        said.contains("latency_tier") && said.contains("deadline"),
                        "how to ask for sooner: {said}"
                    );
                }
            }
            None => {
                assert_eq!(view["state"], "refused", "{view}");
                assert!(said.contains("no site can take the job"), "the reason: {said}");
            }
        }
        ids.push(id);
    }
    let table = stdout(&client(&u, &u.tenant, &["jobs"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    // every column starts at the same offset on every line: after two spaces, under its header
    for header in ["STATE", "TENANT", "NAME", "SITE", "START (UTC)", "REASON"] {
        let at = lines[0].find(header).unwrap_or_else(|| panic!("{header} in {}", lines[0]));
        for l in lines[1..].iter().filter(|l| header != "REASON" || l.contains("no site")) {
            assert!(l.len() > at && &l[at - 2..at] == "  " && l.as_bytes()[at] != b' ', "{header} at {at}:\n{table}");
        }
    }
    for (l, id) in lines[1..].iter().zip(&ids) {
        assert_eq!(l.split_whitespace().next(), Some(id.to_string().as_str()), "{table}");
    }
    assert!(lines[3].contains("no site can take the job"), "{table}");
    assert_eq!(client(&u, &u.tenant, &["jobs", "--state", "bogus"]).status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_plan_prints_the_local_view_and_json_on_request() {
    let u = up("plan").await;
    let file = crate::repo("examples/training.toml");
    let local = stdout(&crate::suanwang(&["plan", &file]));
    let remote = stdout(&client(&u, &u.tenant, &["plan", &file]));
    // the same view: the same lines in the same order (the live load may choose differently)
    let shape = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .filter(|w| !w.starts_with('*') && !w.is_empty())
            .take(7)
            .collect()
    };
    assert_eq!(shape(&local), shape(&remote), "local:\n{local}\nremote:\n{remote}");
    assert!(remote.starts_with("job llm-pretrain-13b — policy balanced\n  where "), "{remote}");
    assert!(remote.contains("why (lower is better"), "{remote}");
    let json: Value = serde_json::from_str(&stdout(&client(&u, &u.tenant, &["plan", &file, "--json"]))).expect("JSON");
    assert_eq!(json["placed"], true, "{json}");
    assert!(json["placement"]["chosen"]["site"].is_string(), "{json}");
    // refused: exit 1, the reasons on stderr, as locally
    let specs = u.dir.join("specs");
    let huge = spec_file(
        &specs,
        "huge",
        "name = \"huge\"\ntenant = \"acme-ai\"\nkind = \"batch\"\norigin = \"beijing\"\n\
         [resources]\nfamily = \"general\"\ncount = 1\nmemory_gib = 16384\n[work]\nrun_time_s = 600\n",
    );
    let out = client(&u, &u.tenant, &["plan", &huge]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no site can take job \"huge\""), "{out:?}");
    // a JSON error from the server is shown with its field
    let bad = spec_file(&specs, "bad", "name = \"bad\"\ntenant = \"acme-ai\"\nkind = \"mining\"\n");
    let out = client(&u, &u.tenant, &["plan", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("field: "), "{out:?}");
    let _ = &u.operator;
}
