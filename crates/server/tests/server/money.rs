//! Money over real HTTP on SQLite and PostgreSQL (issue 13, R4/R7): a prepaid tenant is refused
//! for balance with the shortfall named; a top-up is applied once however often it is retried;
//! a job's bill adds up, its tenant's wallet drops by exactly what it pays, a voucher pays its
//! rate, the split reaches provider, carrier and platform, every party's statement adds up to
//! the ledger, a hold of a job cancelled before it ran is voided, and a restart reads the same
//! books back. Bad input is a 4xx naming the field.

use serde_json::{Value, json};
use suanwang_server::ServerConfig;
use suanwang_server::auth::Role;
use suanwang_server::create_token;
use suanwang_store::AnyStore;

use crate::history::until;
use crate::{call, postgres, sqlite, start_with};

/// A job big enough that its bill is hundreds of fen at a time scale of 1/1000 (20,000 cores
/// for 3.6 s of simulated hour).
fn big(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "name": name, "tenant": "acme", "kind": "batch", "origin": "beijing",
        "resources": {"family": "general", "count": 20_000}, "work": {"run_time_s": 3600}
    }))
    .expect("json")
}

/// A JSON body for `call`.
#[allow(clippy::needless_pass_by_value, clippy::unnecessary_wraps)] // called with `json!(…)` literals
fn post(v: Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).expect("json"))
}

fn fen(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The balance of `party`'s account of `kind` (0 when it has none).
async fn balance(url: &str, op: &str, party: &str, kind: &str) -> i64 {
    let (st, b) = call(url, "GET", &format!("/v1/balance?party={party}"), Some(op), None, None).await;
    assert_eq!(st, 200, "{b}");
    b["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter(|a| a["kind"] == kind)
        .map(|a| fen(a, "balance_fen"))
        .sum()
}

#[allow(clippy::too_many_lines, clippy::many_single_char_names)] // s, j, e, p, g, v, w, b: server, answers
async fn economy(store: AnyStore) {
    let cfg = ServerConfig { time_scale: 1e-3, credit_limit_fen: 0, ..ServerConfig::default() };
    let s = start_with(store.clone(), cfg.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let globex = create_token(&store, Role::Tenant, "globex").await.expect("token");
    let funder = create_token(&store, Role::Funder, "sichuan").await.expect("token");
    let reg = create_token(&store, Role::Regulator, "nda").await.expect("token");
    let url = s.url.clone();

    // prepaid and empty: refused for balance, the shortfall named, nothing held
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), Some(big("unpaid")), None).await;
    assert_eq!((st, j["state"].as_str()), (201, Some("refused")), "{j}");
    let reason = j["reason"].as_str().expect("reason");
    assert!(reason.starts_with("balance:") && reason.contains("short by"), "{reason}");
    assert_eq!(balance(&url, &op, "acme", "wallet").await, 0);

    // bad money is a 4xx naming the field, and changes nothing
    for (body, field) in [
        (json!({"party": "acme", "amount_fen": -5}), "amount_fen"),
        (json!({"party": "acme", "amount_fen": 0}), "amount_fen"),
        (json!({"party": "acme", "amount_fen": 5, "transfer_id": "80000000000000000000000000000001"}), "transfer_id"),
        (json!({"party": "acme", "amount_fen": 5, "transfer_id": "xyz"}), "transfer_id"),
        (json!({"party": "acme", "amount_fen": 5, "to": "platform"}), "to"),
        (json!({"party": "acme", "amount_fen": 5, "currency": "USD"}), "currency"),
    ] {
        let (st, e) = call(&url, "POST", "/v1/topups", Some(&op), post(body.clone()), None).await;
        assert_eq!((st, e["field"].as_str()), (422, Some(field)), "{body}: {e}");
    }
    let (st, _) =
        call(&url, "POST", "/v1/topups", Some(&acme), post(json!({"party": "acme", "amount_fen": 5})), None).await;
    assert_eq!(st, 403, "a tenant cannot pay itself in");

    // a top-up retried with its id is applied once; the id with other fields is a conflict
    let topup = json!({"party": "acme", "amount_fen": 100_000, "transfer_id": "0000000000000000000000000000abcd"});
    let (st, t) = call(&url, "POST", "/v1/topups", Some(&op), post(topup.clone()), None).await;
    assert_eq!((st, t["created"].as_bool(), fen(&t, "balance_fen")), (201, Some(true), 100_000), "{t}");
    let (st, t) = call(&url, "POST", "/v1/topups", Some(&op), post(topup), None).await;
    assert_eq!((st, t["created"].as_bool(), fen(&t, "balance_fen")), (200, Some(false), 100_000), "{t}");
    let other = json!({"party": "acme", "amount_fen": 7, "transfer_id": "0000000000000000000000000000abcd"});
    let (st, e) = call(&url, "POST", "/v1/topups", Some(&op), post(other), None).await;
    assert_eq!((st, e["field"].as_str()), (409, Some("transfer_id")), "{e}");
    assert_eq!(balance(&url, &op, "acme", "wallet").await, 100_000);

    // a voucher programme: bad ones named, a good one funded, a grant within cap and budget
    let now = suanwang_server::actor::wall_now().0;
    let programme = json!({"id": "sichuan-compute", "kind": "compute", "budget_fen": 1_000_000, "rate_bp": 3000,
        "cap_per_beneficiary_fen": 600_000, "valid_from_ms": now - 1000, "valid_to_ms": now + 86_400_000});
    for (patch, field) in [
        (json!({"rate_bp": 10_001}), "rate_bp"),
        (json!({"valid_to_ms": now - 2000}), "valid_to_ms"),
        (json!({"budget_fen": -1}), "budget_fen"),
        (json!({"kind": "data"}), "kind"),
    ] {
        let mut p = programme.clone();
        for (k, v) in patch.as_object().expect("patch") {
            p[k] = v.clone();
        }
        let (st, e) = call(&url, "POST", "/v1/vouchers/programmes", Some(&funder), post(p), None).await;
        assert_eq!((st, e["field"].as_str()), (422, Some(field)), "{patch}: {e}");
    }
    let (st, _) = call(&url, "POST", "/v1/vouchers/programmes", Some(&acme), post(programme.clone()), None).await;
    assert_eq!(st, 403, "tenants do not fund programmes");
    let (st, p) = call(&url, "POST", "/v1/vouchers/programmes", Some(&funder), post(programme.clone()), None).await;
    assert_eq!((st, fen(&p, "budget_left_fen")), (201, 1_000_000), "{p}");
    assert_eq!(p["programme"]["funder"], "sichuan");
    let grant = |amount: i64| post(json!({"programme": "sichuan-compute", "tenant": "acme", "amount_fen": amount}));
    let (st, e) = call(&url, "POST", "/v1/vouchers/grants", Some(&funder), grant(700_000), None).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("amount_fen")), "beyond the cap: {e}");
    let (st, e) = call(
        &url,
        "POST",
        "/v1/vouchers/grants",
        Some(&funder),
        post(json!({"programme": "nope", "tenant": "acme", "amount_fen": 1})),
        None,
    )
    .await;
    assert_eq!(st, 404, "{e}");
    let (st, g) = call(&url, "POST", "/v1/vouchers/grants", Some(&funder), grant(50_000), None).await;
    assert_eq!((st, fen(&g, "left_fen")), (201, 50_000), "{g}");

    // a job: held while it runs, billed on its meter when it ends
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), Some(big("paid")), None).await;
    assert_eq!(st, 201, "{j}");
    assert_ne!(j["state"], "refused", "{j}");
    let id = j["id"].as_u64().expect("id");
    let bill = until(&url, &acme, &format!("/v1/jobs/{id}/bill"), |b| b["status"] == "settled").await;
    let lines: i64 = bill["lines"].as_array().expect("lines").iter().map(|l| fen(l, "amount_fen")).sum();
    let (total, voucher, tenant) = (fen(&bill, "total_fen"), fen(&bill, "voucher_fen"), fen(&bill, "tenant_fen"));
    assert_eq!(lines, tenant, "the lines (vouchers negative) add up to what the tenant pays: {bill}");
    assert_eq!(total - voucher, tenant);
    let line = |k: &str| {
        bill["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .filter(|l| l["kind"] == k)
            .map(|l| fen(l, "amount_fen"))
            .sum::<i64>()
    };
    let eligible = line("compute") + line("energy");
    assert!(eligible > 100, "a bill of some size: {bill}");
    assert_eq!(voucher, eligible * 3000 / 10_000, "the voucher pays 30 %, rounded down: {bill}");
    assert_eq!(
        line("platform_fee"),
        (2 * (line("compute") + line("energy") + line("transfer")) * 300 + 10_000) / 20_000
    );
    // the wallet dropped by exactly what the tenant pays
    assert_eq!(balance(&url, &op, "acme", "wallet").await, 100_000 - tenant);
    assert_eq!(balance(&url, &op, "acme", "grant").await, 50_000 - voucher);
    // the split reaches provider, carrier and platform and adds up to the bill
    let split = bill["split"].as_array().expect("split");
    assert_eq!(split.iter().map(|t| fen(t, "amount_fen")).sum::<i64>(), total, "{bill}");
    let provider = split.iter().find(|t| t["kind"] == "provider_share").expect("provider share");
    let provider_name = provider["credit_name"].as_str().and_then(|n| n.strip_prefix("provider:")).expect("name");
    let (st, pst) = call(&url, "GET", &format!("/v1/statements?party={provider_name}"), Some(&reg), None, None).await;
    assert_eq!(st, 200, "{pst}");
    assert_eq!(fen(&pst, "net_fen"), fen(provider, "amount_fen"), "the provider's statement shows its share: {pst}");
    // every party's statement adds up: what payees received = what tenants and vouchers paid
    let received = balance(&url, &op, provider_name, "provider").await
        + split.iter().filter(|t| t["kind"] == "carrier_share").map(|t| fen(t, "amount_fen")).sum::<i64>()
        + balance(&url, &op, "platform", "platform").await;
    assert_eq!(received, tenant + voucher);
    let (_, ast) = call(&url, "GET", "/v1/statements", Some(&acme), None, None).await;
    let acct = &ast["accounts"].as_array().expect("accounts")[0];
    assert_eq!(fen(acct, "closing_fen"), fen(acct, "opening_fen") + fen(acct, "credits_fen") - fen(acct, "debits_fen"));
    assert_eq!(fen(&ast, "net_fen"), 100_000 - tenant + 50_000 - voucher, "wallet and grant: {ast}");
    // CSV: a header and a line per posted transfer
    let res =
        crate::http().get(format!("{url}/v1/statements?format=csv")).bearer_auth(&acme).send().await.expect("csv");
    assert!(res.headers()["content-type"].to_str().expect("ct").starts_with("text/csv"));
    let csv = res.text().await.expect("csv");
    assert_eq!(csv.lines().count(), 1 + ast["lines"].as_array().expect("lines").len(), "{csv}");
    assert!(csv.starts_with("at_ms,transfer_id,kind,job,account,counterparty,debit_fen,credit_fen\n"));
    let (st, e) = call(&url, "GET", "/v1/statements?from=yesterday", Some(&acme), None, None).await;
    assert_eq!((st, e["field"].as_str()), (400, Some("from")), "{e}");

    // who sees what
    let (st, _) = call(&url, "GET", "/v1/balance?party=acme", Some(&globex), None, None).await;
    assert_eq!(st, 403, "a tenant sees its own wallet only");
    let (st, _) = call(&url, "GET", &format!("/v1/jobs/{id}/bill"), Some(&globex), None, None).await;
    assert_eq!(st, 404, "nor another tenant's bills");
    let (_, v) = call(&url, "GET", "/v1/vouchers", Some(&globex), None, None).await;
    assert_eq!(
        (v["programmes"].as_array().map(Vec::len), v["redemptions"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    for t in [&acme, &funder, &reg] {
        let (_, v) = call(&url, "GET", "/v1/vouchers", Some(t), None, None).await;
        let r = &v["redemptions"][0];
        assert_eq!((r["job"].as_u64(), fen(r, "amount_fen")), (Some(id), voucher), "redemption seen: {v}");
    }

    // cancelled before it ran: the hold is voided, the wallet is whole again
    let before = balance(&url, &op, "acme", "wallet").await;
    let moving = serde_json::to_vec(&json!({
        "name": "moving", "tenant": "acme", "kind": "analytics", "origin": "beijing", "start_within": "0s",
        "resources": {"family": "general", "count": 8}, "work": {"run_time_s": 3600},
        "input": {"size_gb": 2, "location": "beijing", "classification": "public"}
    }))
    .expect("json");
    let (_, j) = call(&url, "POST", "/v1/jobs", Some(&acme), Some(moving), None).await;
    let mid = j["id"].as_u64().expect("id");
    // its data moves for minutes before it can run (transfer time is not scaled)
    assert_eq!(j["state"], "in_transfer", "{j}");
    let (_, b) = call(&url, "GET", &format!("/v1/jobs/{mid}/bill"), Some(&acme), None, None).await;
    assert_eq!(b["status"], "estimate", "{b}");
    assert!(fen(&b, "held_fen") > 0, "its price is held: {b}");
    let (st, _) = call(&url, "POST", &format!("/v1/jobs/{mid}/cancel"), Some(&acme), None, None).await;
    assert_eq!(st, 200);
    let (_, b) = call(&url, "GET", &format!("/v1/jobs/{mid}/bill"), Some(&acme), None, None).await;
    assert_eq!((b["status"].as_str(), fen(&b, "held_fen")), (Some("void"), 0), "{b}");
    let (_, w) = call(&url, "GET", "/v1/balance", Some(&acme), None, None).await;
    let wallet = w["accounts"].as_array().expect("a").iter().find(|a| a["kind"] == "wallet").cloned().expect("w");
    assert_eq!((fen(&wallet, "balance_fen"), fen(&wallet, "debits_pending_fen")), (before, 0), "{wallet}");

    // a restart reads the same books back
    let (_, all_before) = call(&url, "GET", "/v1/balance?party=acme", Some(&op), None, None).await;
    drop(s);
    let s = start_with(store.clone(), cfg).await;
    let (_, all_after) = call(&s.url, "GET", "/v1/balance?party=acme", Some(&op), None, None).await;
    assert_eq!(all_before, all_after);
}

#[tokio::test]
async fn money_on_sqlite() {
    economy(sqlite("money").await).await;
}

#[tokio::test]
async fn money_on_postgres() {
    economy(postgres("money").await).await;
}
