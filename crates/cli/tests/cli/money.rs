//! The README's money tour with its own example files (`examples/money/`): a tenant holding
//! Chengdu's compute voucher pays less by the programme's rate, rounded down, and its wallet
//! drops by exactly what it pays (issue 13, R4). The example job must stay where the voucher
//! pays — unpinned, the default policy moved it to a western hub and the tour's voucher paid
//! nothing.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agents::up;
use crate::client::client;

async fn get(url: &str, token: &str, path: &str) -> Value {
    crate::http().get(format!("{url}{path}")).bearer_auth(token).send().await.expect("get").json().await.expect("json")
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn wallet_fen(url: &str, tenant: &str) -> i64 {
    let b = get(url, tenant, "/v1/balance").await;
    let accounts = b["accounts"].as_array().expect("accounts");
    let w = accounts.iter().find(|a| a["kind"] == "wallet").unwrap_or_else(|| panic!("no wallet: {b}"));
    w["balance_fen"].as_i64().expect("balance")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_money_tour_bills_and_the_voucher_pays_its_rate() {
    let u = up("money-tour", &["--no-local-agent", "--time-scale", "0.001"]).await;
    let job = crate::repo("examples/money/render-chengdu.toml");
    let programme = crate::repo("examples/money/programme.toml");
    let data = u.dir.to_str().expect("utf8").to_string();
    let funder = ok(&crate::suanwang(&["token", "create", "--data", &data, "--role", "funder", "--name", "chengdu"]));
    let funder = funder.trim();
    ok(&client(&u, &u.operator, &["topup", "acme-ai", "1000"]));
    ok(&client(&u, funder, &["voucher", "programme", "create", &programme]));
    let grant = ["voucher", "grant", "--programme", "chengdu-compute-2026", "--tenant", "acme-ai", "--amount", "5000"];
    ok(&client(&u, funder, &grant));
    let before = wallet_fen(&u.url, &u.tenant).await;
    let submitted = ok(&client(&u, &u.tenant, &["submit", &job]));
    let id: u64 = submitted
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no job id in: {submitted}"));
    let deadline = Instant::now() + Duration::from_mins(1);
    let bill = loop {
        let b = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/bill")).await;
        if b["status"] == "settled" {
            break b;
        }
        assert!(Instant::now() < deadline, "job {id} was never settled: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line = |kind: &str| -> i64 {
        bill["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .filter(|l| l["kind"] == kind)
            .map(|l| l["amount_fen"].as_i64().expect("fen"))
            .sum()
    };
    // the programme pays 30 % (rate_bp 3000) of compute and its energy, rounded down
    let eligible = line("compute") + line("energy");
    assert!(eligible > 0, "{bill}");
    let (total, voucher, tenant) = (
        bill["total_fen"].as_i64().expect("total"),
        bill["voucher_fen"].as_i64().expect("voucher"),
        bill["tenant_fen"].as_i64().expect("tenant"),
    );
    assert_eq!(voucher, eligible * 3000 / 10_000, "the voucher pays its rate of the eligible cost: {bill}");
    assert_eq!(tenant, total - voucher, "the tenant pays the rest: {bill}");
    let split: i64 =
        bill["split"].as_array().expect("split").iter().map(|t| t["amount_fen"].as_i64().expect("fen")).sum();
    assert_eq!(split, total, "providers and the platform get the whole bill: {bill}");
    assert_eq!(
        before - wallet_fen(&u.url, &u.tenant).await,
        tenant,
        "the wallet drops by exactly what the tenant pays"
    );
}
