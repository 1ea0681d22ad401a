//! The market over real HTTP (issue 16, R4): a provider's ask and tenants' bids for a product,
//! validated and held in the ledger; a clearing (uniform-price double auction) makes contracts
//! at one price between the last traded bid and ask, pays the seller less the platform's fee
//! out of the bid's hold and releases the rest; prices and contracts are published to whom they
//! concern; a restart reads the open book back and numbers on. Bad input is a 4xx naming the field.

use serde_json::{Value, json};
use suanwang_economy::market::hour_utc;
use suanwang_server::ServerConfig;
use suanwang_server::auth::Role;
use suanwang_server::create_token;
use suanwang_store::Store as _;

use crate::{call, sqlite, start_with};

#[allow(clippy::unnecessary_wraps)] // `call` takes an optional body
fn body(v: &Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(v).expect("json"))
}

/// The balance (or `available`) of `party`'s account of `kind`.
async fn account(url: &str, op: &str, party: &str, kind: &str, field: &str) -> i64 {
    let (st, b) = call(url, "GET", &format!("/v1/balance?party={party}"), Some(op), None, None).await;
    assert_eq!(st, 200, "{b}");
    b["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter(|a| a["kind"] == kind)
        .filter_map(|a| a[field].as_i64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn asks_and_bids_clear_into_contracts_paid_through_the_ledger() {
    let store = sqlite("market").await;
    let cfg = ServerConfig { credit_limit_fen: 0, ..ServerConfig::default() };
    let s = start_with(store.clone(), cfg.clone()).await;
    let url = s.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let globex = create_token(&store, Role::Tenant, "globex").await.expect("token");
    let seller = create_token(&store, Role::Provider, "idc-tianfu").await.expect("token");
    let other = create_token(&store, Role::Provider, "idc-guian").await.expect("token");
    let (st, t) =
        call(&url, "POST", "/v1/topups", Some(&op), body(&json!({"party": "acme", "amount_fen": 1_000_000})), None)
            .await;
    assert_eq!(st, 201, "{t}");
    let now = suanwang_server::actor::wall_now().0;
    let start = (now / 3_600_000 + 2) * 3_600_000;
    let product = format!("intelligent/ascend-910b/tianfu-shuangliu/{}/2h", hour_utc(start));
    let order = |side: &str, units: u64, price: u64| json!({"side": side, "product": product, "units": units, "price_fen": price});

    // bad orders: the field named, nothing held
    let past = format!("intelligent/ascend-910b/tianfu-shuangliu/{}/2h", hour_utc(now - 7_200_000));
    for (who, o, status, field) in [
        (&acme, json!({"side": "bid", "product": product, "units": 0, "price_fen": 10}), 422, "units"),
        (&acme, json!({"side": "bid", "product": product, "units": 1, "price_fen": 0}), 422, "price_fen"),
        (&acme, json!({"side": "bid", "product": product, "units": 1, "price_fen": 10_000_001}), 422, "price_fen"),
        (&acme, json!({"side": "bid", "product": past, "units": 1, "price_fen": 10}), 422, "start"),
        (
            &acme,
            json!({"side": "bid", "product": "intelligent/h800/nowhere/2030-01-01T00Z/1h", "units": 1, "price_fen": 10}),
            422,
            "product",
        ),
        (
            &acme,
            json!({"side": "bid", "product": "intelligent/h800/tianfu-shuangliu/2030-01-01T00Z/1h", "units": 1, "price_fen": 10}),
            422,
            "product",
        ),
        (
            &acme,
            json!({"side": "bid", "product": "intelligent/any/tianfu-shuangliu/2030-01-01T00:30Z/1h", "units": 1, "price_fen": 10}),
            422,
            "product",
        ),
        (
            &acme,
            json!({"side": "bid", "product": product, "units": 1, "price_fen": 10, "colour": "red"}),
            422,
            "colour",
        ),
        (&seller, order("ask", 2617, 100), 422, "units"),
        (&other, order("ask", 1, 100), 422, "product"),
        (&op, order("bid", 1, 100), 422, "owner"),
    ] {
        let (st, e) = call(&url, "POST", "/v1/market/orders", Some(who), body(&o), None).await;
        assert_eq!((st, e["field"].as_str()), (status, Some(field)), "{o}: {e}");
    }
    for (who, side) in [(&acme, "ask"), (&seller, "bid")] {
        let (st, e) = call(&url, "POST", "/v1/market/orders", Some(who), body(&order(side, 1, 100)), None).await;
        assert_eq!(st, 403, "{side}: {e}");
    }
    assert_eq!(account(&url, &op, "acme", "wallet", "available_fen").await, 1_000_000, "nothing held");

    // the ask: 10 cards at ¥1.00 per card-hour; bids: acme 6 at ¥1.50, acme 8 at ¥0.90
    let (st, ask) = call(&url, "POST", "/v1/market/orders", Some(&seller), body(&order("ask", 10, 100)), None).await;
    assert_eq!((st, ask["state"].as_str(), ask["owner"].as_str()), (201, Some("open"), Some("idc-tianfu")), "{ask}");
    let (st, e) = call(&url, "POST", "/v1/market/orders", Some(&seller), body(&order("ask", 2607, 100)), None).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("units")), "10 offered + 2607 > 2616 cards: {e}");
    let (st, bid) = call(&url, "POST", "/v1/market/orders", Some(&acme), body(&order("bid", 6, 150)), None).await;
    assert_eq!((st, bid["held_fen"].as_u64()), (201, Some(6 * 150 * 2)), "{bid}");
    let (st, low) = call(&url, "POST", "/v1/market/orders", Some(&acme), body(&order("bid", 8, 90)), None).await;
    assert_eq!(st, 201, "{low}");
    assert_eq!(account(&url, &op, "acme", "wallet", "available_fen").await, 1_000_000 - 1_800 - 1_440);
    // globex has no money: refused for balance, the shortfall named
    let (st, e) = call(&url, "POST", "/v1/market/orders", Some(&globex), body(&order("bid", 1, 100)), None).await;
    assert_eq!((st, e["code"].as_str(), e["field"].as_str()), (422, Some("balance"), Some("units")), "{e}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("short by ¥2.00")), "{e}");
    // cancelling: only one's own, once; the hold comes back
    let low_id = low["id"].as_u64().expect("id");
    let (st, _) = call(&url, "POST", &format!("/v1/market/orders/{low_id}/cancel"), Some(&globex), None, None).await;
    assert_eq!(st, 404, "not globex's order");
    let (st, c) = call(&url, "POST", &format!("/v1/market/orders/{low_id}/cancel"), Some(&acme), None, None).await;
    assert_eq!((st, c["state"].as_str()), (200, Some("cancelled")), "{c}");
    let (st, _) = call(&url, "POST", &format!("/v1/market/orders/{low_id}/cancel"), Some(&acme), None, None).await;
    assert_eq!(st, 404, "cancelled already");
    assert_eq!(account(&url, &op, "acme", "wallet", "available_fen").await, 1_000_000 - 1_800);

    // the clearing: 6 cards at (150 + 100) / 2 = 125 fen per card-hour for 2 h = ¥15.00; the
    // platform's 3 % (45 fen) out of it, ¥14.55 to the seller; the bid's other ¥3.00 released
    let (st, _) = call(&url, "POST", "/v1/market/clear", Some(&acme), None, None).await;
    assert_eq!(st, 403);
    let (st, cleared) = call(&url, "POST", "/v1/market/clear", Some(&op), None, None).await;
    assert_eq!(st, 200, "{cleared}");
    assert_eq!(
        (cleared["traded"].as_u64(), cleared["contracts"].as_u64(), cleared["units"].as_u64()),
        (Some(1), Some(1), Some(6))
    );
    assert_eq!(account(&url, &op, "acme", "wallet", "balance_fen").await, 1_000_000 - 1_500);
    assert_eq!(account(&url, &op, "acme", "wallet", "available_fen").await, 1_000_000 - 1_500, "nothing held any more");
    assert_eq!(account(&url, &op, "idc-tianfu", "provider", "balance_fen").await, 1_455);
    let (_, prices) = call(&url, "GET", "/v1/market/prices", Some(&globex), None, None).await;
    assert_eq!(prices["prices"][0]["price_fen"], 125, "{prices}");
    assert_eq!(prices["prices"][0]["product"], product.as_str());
    let (_, mine) = call(&url, "GET", "/v1/contracts", Some(&acme), None, None).await;
    let c = &mine["contracts"][0];
    assert_eq!(
        (
            c["buyer"].as_str(),
            c["seller"].as_str(),
            c["units"].as_u64(),
            c["amount_fen"].as_u64(),
            c["fee_fen"].as_u64()
        ),
        (Some("acme"), Some("idc-tianfu"), Some(6), Some(1_500), Some(45)),
        "{mine}"
    );
    let (_, sold) = call(&url, "GET", "/v1/contracts", Some(&seller), None, None).await;
    assert_eq!(sold["contracts"].as_array().map(Vec::len), Some(1), "the seller sees its sale: {sold}");
    let (_, none) = call(&url, "GET", "/v1/contracts", Some(&globex), None, None).await;
    assert_eq!(none["contracts"], json!([]));
    let (_, orders) = call(&url, "GET", "/v1/market/orders", Some(&acme), None, None).await;
    let states: Vec<(&str, u64)> = orders["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| (o["state"].as_str().unwrap_or(""), o["filled_units"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(states, [("filled", 6), ("cancelled", 0)], "{orders}");
    let (_, open) = call(&url, "GET", "/v1/market/orders?state=open", Some(&op), None, None).await;
    assert_eq!(open["orders"][0]["filled_units"], 6, "the ask's 4 other cards stay open: {open}");
    let (st, e) = call(&url, "GET", "/v1/market/orders?state=done", Some(&op), None, None).await;
    assert_eq!((st, e["field"].as_str()), (400, Some("state")), "{e}");
    let (st, _) = call(&url, "GET", "/v1/market/orders?owner=acme", Some(&globex), None, None).await;
    assert_eq!(st, 403);
    for (path, field) in [
        ("/v1/market/orders?product=", "product"),
        ("/v1/contracts?product=", "product"),
        ("/v1/market/prices?product=", "product"),
        ("/v1/market/orders?owner=", "owner"),
    ] {
        let (st, e) = call(&url, "GET", path, Some(&op), None, None).await;
        assert_eq!((st, e["field"].as_str()), (400, Some(field)), "{path}: {e}");
    }
    let (st, none) = call(&url, "GET", "/v1/market/prices?product=nothing-traded", Some(&op), None, None).await;
    assert_eq!((st, &none["prices"]), (200, &json!([])), "an unknown product lists nothing");

    // the contract is in the evidence log, for its buyer
    let size = store.evidence_size().await.expect("size");
    let entries = store.evidence_entries(0, size).await.expect("entries");
    assert!(entries.iter().any(|e| e.kind == "contract" && e.tenant.as_deref() == Some("acme")), "a contract entry");

    // a restart reads the open ask back; order numbers go on
    drop(s);
    let s = start_with(store.clone(), cfg).await;
    let url = s.url.clone();
    let (st, more) = call(&url, "POST", "/v1/market/orders", Some(&acme), body(&order("bid", 4, 200)), None).await;
    assert_eq!(st, 201, "{more}");
    assert!(more["id"].as_u64() > low["id"].as_u64(), "ids go on: {more}");
    let (_, cleared) = call(&url, "POST", "/v1/market/clear", Some(&op), None, None).await;
    assert_eq!(cleared["units"], 4, "{cleared}");
    let (_, history) =
        call(&url, "GET", &format!("/v1/market/prices?product={product}"), Some(&acme), None, None).await;
    let seen: Vec<u64> =
        history["prices"].as_array().expect("prices").iter().filter_map(|p| p["price_fen"].as_u64()).collect();
    assert_eq!(seen, [125, 150], "the history, in time order");
    assert_eq!(
        account(&url, &op, "idc-tianfu", "provider", "balance_fen").await,
        1_455 + 1_200 - 36,
        "4 × 150 × 2 less 3 %"
    );
}

/// A job on a contract (issue 16 item 3, first part): only the buyer's, only in its window, of
/// its family and size; it runs at the seller's sites and its compute and energy are not billed
/// again (they were paid at the auction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_its_tenants_contract_without_paying_twice() {
    let store = sqlite("market-job").await;
    let cfg = ServerConfig { credit_limit_fen: 0, time_scale: 1e-3, ..ServerConfig::default() };
    let s = start_with(store.clone(), cfg).await;
    let url = s.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let globex = create_token(&store, Role::Tenant, "globex").await.expect("token");
    let (st, _) =
        call(&url, "POST", "/v1/topups", Some(&op), body(&json!({"party": "acme", "amount_fen": 100_000})), None).await;
    assert_eq!(st, 201);
    let now = suanwang_server::actor::wall_now().0;
    // this hour's window (it has begun) and a later one
    let current = format!("intelligent/ascend-910b/tianfu/{}/2h", hour_utc(now));
    let later = format!("intelligent/ascend-910b/tianfu/{}/1h", hour_utc(now + 3 * 3_600_000));
    for product in [&current, &later] {
        let ask = json!({"side": "ask", "product": product, "units": 8, "price_fen": 100, "owner": "idc-tianfu"});
        let (st, e) = call(&url, "POST", "/v1/market/orders", Some(&op), body(&ask), None).await;
        assert_eq!(st, 201, "{e}");
        let bid = json!({"side": "bid", "product": product, "units": 8, "price_fen": 100});
        let (st, e) = call(&url, "POST", "/v1/market/orders", Some(&acme), body(&bid), None).await;
        assert_eq!(st, 201, "{e}");
    }
    let (_, cleared) = call(&url, "POST", "/v1/market/clear", Some(&op), None, None).await;
    assert_eq!(cleared["contracts"], 2, "{cleared}");
    let (_, list) = call(&url, "GET", "/v1/contracts", Some(&acme), None, None).await;
    let id_of = |p: &str| {
        list["contracts"]
            .as_array()
            .expect("list")
            .iter()
            .find(|c| c["product"] == p)
            .and_then(|c| c["id"].as_u64())
            .expect("id")
    };
    let (now_id, later_id) = (id_of(&current), id_of(&later));
    let job = |tenant: &str, contract: u64, count: u64, family: &str| {
        json!({"name": "on-contract", "tenant": tenant, "kind": "training", "origin": "chengdu",
            "resources": {"family": family, "count": count}, "work": {"run_time_s": 600}, "contract": contract})
    };
    for (who, spec, field) in [
        (&globex, job("globex", now_id, 4, "intelligent"), "contract"),
        (&acme, job("acme", later_id, 4, "intelligent"), "contract"),
        (&acme, job("acme", now_id, 9, "intelligent"), "resources.count"),
        (&acme, job("acme", now_id, 4, "general"), "resources.family"),
        (&acme, job("acme", 999, 4, "intelligent"), "contract"),
    ] {
        let (st, e) = call(&url, "POST", "/v1/jobs", Some(who), body(&spec), None).await;
        assert_eq!((st, e["field"].as_str()), (422, Some(field)), "{spec}: {e}");
    }
    // each contract holds its units in the scheduler (a `reserve` record each, in the log)
    let size = store.evidence_size().await.expect("size");
    let entries = store.evidence_entries(0, size).await.expect("entries");
    let reserved: Vec<&str> = entries.iter().filter(|e| e.kind == "reserve").map(|e| e.record.as_str()).collect();
    assert_eq!(reserved.len(), 2, "{reserved:?}");
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&job("acme", now_id, 4, "intelligent")), None).await;
    assert_eq!(st, 201, "{j}");
    let site = j["site"].as_str().unwrap_or_else(|| panic!("placed: {j}"));
    assert!(site.starts_with("tianfu-"), "at the seller's sites in tianfu: {j}");
    assert!(reserved.iter().any(|r| r.contains(site)), "in the contract's block, at {site}: {reserved:?}");
    let id = j["id"].as_u64().expect("id");
    crate::history::until(&url, &acme, &format!("/v1/jobs/{id}"), |v| v["state"] == "completed").await;
    let (st, bill) = call(&url, "GET", &format!("/v1/jobs/{id}/bill"), Some(&acme), None, None).await;
    assert_eq!(st, 200, "{bill}");
    for line in bill["lines"].as_array().expect("lines") {
        if line["kind"] == "compute" || line["kind"] == "energy" {
            assert_eq!(line["amount_fen"], 0, "paid at the auction: {bill}");
        }
    }
    assert_eq!(bill["tenant_fen"], 0, "no data moved, nothing more to pay: {bill}");
}

/// A job with `max_price` (issue 16 item 1) becomes a bid on the open ask that fits it — 202
/// with the order, its hold on the wallet — and, when a clearing fills it and the contract's
/// window has begun, is submitted on the contract (the order's `job_id`) and pays nothing more
/// for compute. A bid no ask fits at its price is a 422 naming `max_price`; a cancelled bid's job
/// is given up with the reason and its hold released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn a_job_with_max_price_bids_and_runs_on_the_contract_it_wins() {
    let store = sqlite("market-job-bid").await;
    let cfg = ServerConfig { credit_limit_fen: 0, time_scale: 1e-3, ..ServerConfig::default() };
    let s = start_with(store.clone(), cfg.clone()).await;
    let url = s.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let (st, _) =
        call(&url, "POST", "/v1/topups", Some(&op), body(&json!({"party": "acme", "amount_fen": 100_000})), None).await;
    assert_eq!(st, 201);
    let now = suanwang_server::actor::wall_now().0;
    // this hour's window: a clearing fills it and its contract can be used at once
    let product = format!("intelligent/ascend-910b/tianfu/{}/2h", hour_utc(now));
    let ask = json!({"side": "ask", "product": product, "units": 8, "price_fen": 100, "owner": "idc-tianfu"});
    let (st, e) = call(&url, "POST", "/v1/market/orders", Some(&op), body(&ask), None).await;
    assert_eq!(st, 201, "{e}");
    let job = |max_price: u64, count: u64| {
        json!({"name": "bidder", "tenant": "acme", "kind": "training", "origin": "chengdu",
            "resources": {"family": "intelligent", "count": count, "accelerator": "ascend-910b"},
            "work": {"run_time_s": 600}, "max_price": max_price})
    };
    let available = || account(&url, &op, "acme", "wallet", "available_fen");
    let before = available().await;

    // nothing fits: below the floor, more units than offered, a window too short; with a contract
    for (spec, why) in [
        (job(99, 4), "at least 100"),
        (job(120, 9), "no open ask"),
        (
            {
                let mut j = job(120, 4);
                j["work"] = json!({"run_time_s": 3 * 3600});
                j
            },
            "no open ask",
        ),
        (
            {
                let mut j = job(120, 4);
                j["contract"] = json!(1);
                j
            },
            "does not bid",
        ),
    ] {
        let (st, e) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&spec), None).await;
        assert_eq!((st, e["field"].as_str()), (422, Some("max_price")), "{spec}: {e}");
        let text = format!("{} {}", e["message"], e["detail"]);
        assert!(text.contains(why), "{why}: {e}");
    }
    assert_eq!(available().await, before, "a refused bid holds nothing");

    // a bid that fits: 202 with the order, units × max_price × hours held
    let (st, bid) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&job(120, 4)), None).await;
    assert_eq!(st, 202, "{bid}");
    assert_eq!((bid["side"].as_str(), bid["product"].as_str()), (Some("bid"), Some(product.as_str())), "{bid}");
    assert_eq!(
        (bid["units"].as_u64(), bid["price_fen"].as_u64(), bid["held_fen"].as_u64()),
        (Some(4), Some(120), Some(960))
    );
    assert_eq!(bid["job"]["name"], "bidder", "the order carries the job: {bid}");
    assert!(bid["job"].get("max_price").is_none(), "{bid}");
    assert_eq!(available().await, before - 960);
    // another, cancelled before the clearing: its job is given up, its hold released
    let (st, other) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&job(110, 2)), None).await;
    assert_eq!(st, 202, "{other}");
    let other_id = other["id"].as_u64().expect("id");
    let (st, c) = call(&url, "POST", &format!("/v1/market/orders/{other_id}/cancel"), Some(&acme), None, None).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(available().await, before - 960);

    // a restart reads the bid and its job back from the store
    drop(s);
    let s = start_with(store.clone(), cfg).await;
    let url = s.url.clone();
    let (_, cleared) = call(&url, "POST", "/v1/market/clear", Some(&op), None, None).await;
    assert_eq!(cleared["contracts"], 1, "{cleared}");
    let (_, orders) = call(&url, "GET", "/v1/market/orders", Some(&acme), None, None).await;
    let find = |id: u64| {
        orders["orders"].as_array().expect("orders").iter().find(|o| o["id"] == id).cloned().expect("the order")
    };
    let won = find(bid["id"].as_u64().expect("id"));
    assert_eq!(won["state"], "filled", "{won}");
    let job_id = won["job_id"].as_u64().unwrap_or_else(|| panic!("the job was submitted: {won}"));
    let gave_up = find(other_id);
    assert!(gave_up["job_reason"].as_str().is_some_and(|r| r.contains("cancelled")), "{gave_up}");
    assert!(gave_up.get("job_id").is_none(), "{gave_up}");
    let (_, contracts) = call(&url, "GET", "/v1/contracts", Some(&acme), None, None).await;
    let contract = &contracts["contracts"][0];
    assert_eq!(contract["bid"], bid["id"], "{contracts}");
    let paid = contract["amount_fen"].as_i64().expect("amount");
    assert!((800..=960).contains(&paid), "between the floor and max_price, 4 units × 2 h: {contract}");
    // the hold posted at the clearing price (the job holds its own estimate while it runs)
    assert_eq!(account(&url, &op, "acme", "wallet", "balance_fen").await, before - paid);

    let (_, j) = call(&url, "GET", &format!("/v1/jobs/{job_id}"), Some(&acme), None, None).await;
    assert_eq!(j["spec"]["contract"], contract["id"], "on the contract it won: {j}");
    crate::history::until(&url, &acme, &format!("/v1/jobs/{job_id}"), |v| v["state"] == "completed").await;
    let (_, bill) = call(&url, "GET", &format!("/v1/jobs/{job_id}/bill"), Some(&acme), None, None).await;
    assert_eq!(bill["tenant_fen"], 0, "paid at the auction: {bill}");
}

/// Carbon-sink settlement (issue 16 item 6, R5): an ended job's market-based carbon is retired
/// against a lot — the tenant pays the holder, the lot's grams go down by exactly the job's, in
/// a second ledger that balances like money — once per job; another tenant cannot offset it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_carbon_is_offset_once_through_both_ledgers() {
    let store = sqlite("market-carbon").await;
    // big and long enough that its market-based carbon is many grams at this time scale
    let cfg = ServerConfig { credit_limit_fen: 0, time_scale: 1e-2, ..ServerConfig::default() };
    let s = start_with(store.clone(), cfg.clone()).await;
    let url = s.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let globex = create_token(&store, Role::Tenant, "globex").await.expect("token");
    let (st, _) =
        call(&url, "POST", "/v1/topups", Some(&op), body(&json!({"party": "acme", "amount_fen": 10_000_000})), None)
            .await;
    assert_eq!(st, 201);
    let spec = json!({"name": "emitter", "tenant": "acme", "kind": "batch", "origin": "shanghai", "start_within": "0s",
        "resources": {"family": "general", "count": 400_000}, "work": {"run_time_s": 600}});
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&spec), None).await;
    assert_eq!(st, 201, "{j}");
    let id = j["id"].as_u64().expect("id");
    let (st, e) = call(&url, "POST", "/v1/carbon/offsets", Some(&acme), body(&json!({"job": id})), None).await;
    if st != 201 {
        assert_eq!((st, e["field"].as_str()), (409, Some("job")), "not ended yet: {e}");
    }
    let done = crate::history::until(&url, &acme, &format!("/v1/jobs/{id}"), |v| v["state"] == "completed").await;
    let kg = done["meter"]["carbon_market_kg"].as_f64().expect("carbon");
    let grams = (kg * 1000.0).round() as u64;
    assert!(grams > 0, "{done}");
    let (_, before) = call(&url, "GET", "/v1/carbon/credits", Some(&globex), None, None).await;
    let lot = before["lots"][0]["id"].as_str().expect("lot").to_string();
    let left_before = before["lots"][0]["remaining_grams"].as_u64().expect("left");
    let wallet_before = account(&url, &op, "acme", "wallet", "balance_fen").await;
    // the lot's holder may also have been paid for running the job (where it ran depends on
    // the hour's green power and tariffs): the offset's payment is what changes its balance
    let holder = before["lots"][0]["holder"].as_str().expect("holder").to_string();
    let holder_before = account(&url, &op, &holder, "provider", "balance_fen").await;
    let (st, e) = call(&url, "POST", "/v1/carbon/offsets", Some(&globex), body(&json!({"job": id})), None).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("job")), "not globex's job: {e}");
    let (st, e) =
        call(&url, "POST", "/v1/carbon/offsets", Some(&acme), body(&json!({"job": id, "lot": "nope"})), None).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("lot")), "{e}");
    let (st, o) =
        call(&url, "POST", "/v1/carbon/offsets", Some(&acme), body(&json!({"job": id, "lot": lot})), None).await;
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["grams"].as_u64(), Some(grams), "the job's market-based carbon, in grams: {o}");
    let price = o["price_fen"].as_i64().expect("price");
    let per_tonne = before["lots"][0]["price_fen_per_tonne"].as_u64().expect("price");
    assert_eq!(price as u64, (grams * per_tonne).div_ceil(1_000_000), "{o}");
    let (st, e) = call(&url, "POST", "/v1/carbon/offsets", Some(&acme), body(&json!({"job": id})), None).await;
    assert_eq!((st, e["field"].as_str()), (409, Some("job")), "never counted twice: {e}");
    let (_, after) = call(&url, "GET", "/v1/carbon/credits", Some(&acme), None, None).await;
    assert_eq!(after["lots"][0]["remaining_grams"].as_u64(), Some(left_before - grams), "{after}");
    assert_eq!(after["offsets"][0]["job"].as_u64(), Some(id));
    let (_, theirs) = call(&url, "GET", "/v1/carbon/credits", Some(&globex), None, None).await;
    assert_eq!(theirs["offsets"], json!([]), "a tenant sees its own offsets only");
    assert_eq!(account(&url, &op, "acme", "wallet", "balance_fen").await, wallet_before - price);
    assert_eq!(o["holder"].as_str(), Some(holder.as_str()));
    assert_eq!(account(&url, &op, &holder, "provider", "balance_fen").await, holder_before + price);
    // after a restart: the lot's grams and the offset are read back, still once
    drop(s);
    let s = start_with(store.clone(), cfg).await;
    let (_, again) = call(&s.url, "GET", "/v1/carbon/credits", Some(&acme), None, None).await;
    assert_eq!(again["lots"][0]["remaining_grams"].as_u64(), Some(left_before - grams), "{again}");
    let (st, _) = call(&s.url, "POST", "/v1/carbon/offsets", Some(&acme), body(&json!({"job": id})), None).await;
    assert_eq!(st, 409);
    let size = store.evidence_size().await.expect("size");
    let entries = store.evidence_entries(0, size).await.expect("entries");
    assert!(entries.iter().any(|e| e.kind == "carbon_offset" && e.tenant.as_deref() == Some("acme")), "in the log");
}

/// Quotas (issue 16 item 5, first part; R3): the operator caps a tenant's live units of a family
/// everywhere or in a region; a submission beyond a quota everywhere is refused naming it, a
/// region whose quota is full is taken out of where the job may run; quotas survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_or_steer_a_tenants_jobs() {
    let store = sqlite("market-quota").await;
    let s = start_with(store.clone(), ServerConfig::default()).await;
    let url = s.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    for (q, field) in [
        (json!({"tenant": "acme", "family": "gpu", "max_units": 1}), "family"),
        (json!({"tenant": "acme", "family": "general", "region": "nowhere", "max_units": 1}), "region"),
        (json!({"tenant": "acme", "family": "general", "max_units": 1, "extra": 1}), "extra"),
    ] {
        let (st, e) = call(&url, "POST", "/v1/quotas", Some(&op), body(&q), None).await;
        assert_eq!((st, e["field"].as_str()), (422, Some(field)), "{q}: {e}");
    }
    let everywhere = json!({"tenant": "acme", "family": "general", "max_units": 10});
    let (st, _) = call(&url, "POST", "/v1/quotas", Some(&acme), body(&everywhere), None).await;
    assert_eq!(st, 403, "tenants do not set quotas");
    let (st, v) = call(&url, "POST", "/v1/quotas", Some(&op), body(&everywhere), None).await;
    assert_eq!(st, 200, "{v}");
    let none_in_chengyu = json!({"tenant": "acme", "family": "intelligent", "region": "chengyu", "max_units": 0});
    let (st, _) = call(&url, "POST", "/v1/quotas", Some(&op), body(&none_in_chengyu), None).await;
    assert_eq!(st, 200);
    let job = |family: &str, count: u64, regions: Option<Value>| {
        let mut j = json!({"name": "q", "tenant": "acme", "kind": "batch", "origin": "chengdu",
            "resources": {"family": family, "count": count}, "work": {"run_time_s": 3600}});
        if let Some(r) = regions {
            j["allowed_regions"] = r;
        }
        j
    };
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&job("general", 8, None)), None).await;
    assert_eq!((st, j["state"].as_str()), (201, Some("running")), "{j}");
    let refused = async |url: &str| {
        let (st, e) = call(url, "POST", "/v1/jobs", Some(&acme), body(&job("general", 4, None)), None).await;
        assert_eq!((st, e["field"].as_str()), (422, Some("resources.count")), "{e}");
        assert!(e["message"].as_str().is_some_and(|m| m.starts_with("quota:") && m.contains("hold 8;")), "{e}");
    };
    refused(&url).await;
    // chengyu is full for intelligent work: a job that may only run there is refused, one that
    // may run anywhere runs elsewhere
    let (st, e) =
        call(&url, "POST", "/v1/jobs", Some(&acme), body(&job("intelligent", 1, Some(json!(["chengyu"])))), None).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("resources.count")), "{e}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("chengyu")), "{e}");
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&job("intelligent", 1, None)), None).await;
    assert_eq!(st, 201, "{j}");
    let site = j["site"].as_str().expect("placed");
    let net = suanwang_core::Network::reference().expect("net");
    assert_ne!(net.site(site).map(|s| s.region.as_str()), Some("chengyu"), "{j}");
    let (_, list) = call(&url, "GET", "/v1/quotas", Some(&acme), None, None).await;
    let general =
        list["quotas"].as_array().expect("quotas").iter().find(|q| q["family"] == "general").cloned().expect("general");
    assert_eq!((general["max_units"].as_u64(), general["used_units"].as_u64()), (Some(10), Some(8)), "{list}");
    drop(s);
    let s = start_with(store.clone(), ServerConfig::default()).await;
    refused(&s.url).await;
    // submissions at once cannot both pass a quota that has room for one: 2 units left, eight
    // jobs of 2 at the same time — exactly one is accepted
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (url, acme, spec) = (s.url.clone(), acme.clone(), job("general", 2, None));
            tokio::spawn(async move { call(&url, "POST", "/v1/jobs", Some(&acme), body(&spec), None).await.0 })
        })
        .collect();
    let mut statuses = vec![];
    for r in racers {
        statuses.push(r.await.expect("task"));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 422, 422, 422, 422, 422, 422, 422], "one fits the quota");
}

/// A statement whose sums pass i64 (found by schemathesis: top-ups near the largest amount)
/// answers with its sums at the bound instead of dropping the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_whose_sums_overflow_stays_at_the_bound() {
    let store = sqlite("market-overflow").await;
    let s = start_with(store.clone(), ServerConfig::default()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    for _ in 0..2 {
        let t = json!({"party": "rich", "amount_fen": 5_000_000_000_000_000_000_i64});
        let (st, e) = call(&s.url, "POST", "/v1/topups", Some(&op), body(&t), None).await;
        assert_eq!(st, 201, "{e}");
    }
    let (st, statement) = call(&s.url, "GET", "/v1/statements?party=rich", Some(&op), None, None).await;
    assert_eq!(st, 200, "{statement}");
    assert_eq!(statement["net_fen"].as_i64(), Some(i64::MAX), "{statement}");
    // a period after them: what came before is summed into its opening balance, at the bound too
    // (found by schemathesis: SQLite's SUM failed past i64, a 503)
    for _ in 0..2 {
        let (st, statement) =
            call(&s.url, "GET", "/v1/statements?from=8978-12-07T00:25:07.3Z", Some(&op), None, None).await;
        assert_eq!(st, 200, "{statement}");
        s.store.fold_ledger().await.expect("fold");
    }
}

/// 包年包月 (issue 16 item 3): capacity bought at the reserved price for a whole window without
/// an auction — on-demand less the book's discount, paid at once to the seller less the
/// platform's fee — whose units the scheduler then holds for the buyer's jobs on the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_capacity_is_bought_for_a_window_at_the_reserved_price() {
    let store = sqlite("market-reserved").await;
    let cfg = ServerConfig { credit_limit_fen: 0, time_scale: 1e-3, ..ServerConfig::default() };
    let s = start_with(store.clone(), cfg).await;
    let url = s.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let globex = create_token(&store, Role::Tenant, "globex").await.expect("token");
    let (st, _) =
        call(&url, "POST", "/v1/topups", Some(&op), body(&json!({"party": "acme", "amount_fen": 10_000_000})), None)
            .await;
    assert_eq!(st, 201);
    // a western hub's site with general pools (a city's block there is its enclave, 飞地): the
    // dearest of them sets the on-demand price
    let net = suanwang_core::Network::reference().expect("reference");
    let site = net
        .sites
        .iter()
        .find(|s| {
            s.in_hub()
                && s.side == suanwang_core::network::Side::West
                && s.pools.iter().any(|p| p.family.as_str() == "general")
        })
        .expect("a site");
    let on_demand = site
        .pools
        .iter()
        .filter(|p| p.family.as_str() == "general")
        .map(|p| p.price_fen_per_unit_hour)
        .max()
        .expect("price");
    let now = suanwang_server::actor::wall_now().0;
    let hour = hour_utc(now.div_euclid(3_600_000) * 3_600_000);
    let product = format!("general/any/{}/{hour}/720h", site.id);
    for (who, req, status, field) in [
        (&acme, json!({"product": format!("general/any/{}/{hour}/24h", site.id), "units": 2}), 422, "product"),
        (&acme, json!({"product": product, "units": 2, "seller": "nobody"}), 422, "seller"),
        (&acme, json!({"product": product, "units": 1_000_000}), 422, "units"),
        (&globex, json!({"product": product, "units": 2, "tenant": "acme"}), 403, ""),
        (&op, json!({"product": product, "units": 2}), 422, "tenant"),
        (&globex, json!({"product": product, "units": 2}), 422, "units"),
    ] {
        let (st, e) = call(&url, "POST", "/v1/contracts", Some(who), body(&req), None).await;
        assert_eq!(st, status, "{req}: {e}");
        if !field.is_empty() {
            assert_eq!(e["field"].as_str(), Some(field), "{req}: {e}");
        }
    }
    let wallet_before = account(&url, &op, "acme", "wallet", "balance_fen").await;
    let (st, k) =
        call(&url, "POST", "/v1/contracts", Some(&acme), body(&json!({"product": product, "units": 2})), None).await;
    assert_eq!(st, 201, "{k}");
    // on-demand × 2 units × 720 h × (1 − 35 %), half up
    let amount = (i128::from(on_demand) * 2 * 720 * 6_500 * 2 + 10_000).div_euclid(2 * 10_000);
    assert_eq!(i128::from(k["amount_fen"].as_i64().expect("amount")), amount, "{k}");
    assert_eq!(i128::from(wallet_before - account(&url, &op, "acme", "wallet", "balance_fen").await), amount);
    let seller = k["seller"].as_str().expect("seller");
    let fee = k["fee_fen"].as_i64().expect("fee");
    assert_eq!(i128::from(account(&url, &op, seller, "provider", "balance_fen").await + fee), amount);
    let id = k["id"].as_u64().expect("id");
    // the scheduler holds its units: a `reserve` record, and the buyer's job on it runs there
    let size = store.evidence_size().await.expect("size");
    let entries = store.evidence_entries(0, size).await.expect("entries");
    assert!(entries.iter().any(|e| e.kind == "reserve" && e.record.contains(&site.id)), "a reserve record");
    let spec = json!({"name": "in-block", "tenant": "acme", "kind": "batch", "origin": "shanghai",
        "resources": {"family": "general", "count": 2}, "work": {"run_time_s": 600}, "contract": id});
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), body(&spec), None).await;
    assert_eq!(st, 201, "{j}");
    assert_eq!(j["site"].as_str(), Some(site.id.as_str()), "{j}");
    // once it has ended it counts as the holder's enclave work in the KPIs
    let job = j["id"].as_u64().expect("id");
    crate::history::until(&url, &acme, &format!("/v1/jobs/{job}"), |v| v["state"] == "completed").await;
    let (st, k) = call(&url, "GET", "/v1/kpis", Some(&op), None, None).await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["enclaves"]["acme"]["jobs"], 1, "{k}");
    assert_eq!(k["enclaves"]["acme"]["sites"], json!([site.id]), "{k}");
    assert!(k["enclaves"]["acme"]["ucu_hours"].as_f64().is_some_and(|u| u > 0.0), "{k}");
}
