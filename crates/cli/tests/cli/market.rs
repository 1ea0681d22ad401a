//! The market from the command line (issue 16): `suanwang up`, an ask for a provider's
//! accelerators (the operator on its behalf), a tenant's bid, `market clear`, then the contract,
//! the clearing price and the orders as the README's tour shows them; bad input names the field.

use crate::agents::up;
use crate::{stdout_json, suanwang_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_and_a_bid_clear_into_a_contract() {
    let u = up("market", &["--no-local-agent"]).await;
    let as_op = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", u.operator.as_str())];
    let as_tenant = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", u.tenant.as_str())];
    let now = suanwang_server::actor::wall_now().0;
    let start = suanwang_economy::market::hour_utc((now / 3_600_000 + 2) * 3_600_000);
    let kind = ["--place", "tianfu-shuangliu", "--family", "intelligent", "--model", "ascend-910b", "--hours", "2"];
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&kind);
        all.extend_from_slice(&["--start", &start]);
        suanwang_env(&all, env)
    };
    let ask = run(&as_op, &["market", "ask", "--units", "10", "--price", "1.00", "--owner", "idc-tianfu"]);
    let said = String::from_utf8_lossy(&ask.stdout);
    assert!(ask.status.success(), "{said} {}", String::from_utf8_lossy(&ask.stderr));
    assert!(
        said.contains("ask intelligent/ascend-910b/tianfu-shuangliu/") && said.contains("10 units at ¥1.00"),
        "{said}"
    );
    let bid = run(&as_tenant, &["market", "bid", "--units", "6", "--price", "150fen", "--json"]);
    let bid = stdout_json(&bid);
    assert_eq!(bid["held_fen"], 6 * 150 * 2, "{bid}");
    let bad = run(&as_tenant, &["market", "bid", "--units", "0", "--price", "1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("units"), "{}", String::from_utf8_lossy(&bad.stderr));
    let clear = suanwang_env(&["market", "clear"], &as_op);
    let said = String::from_utf8_lossy(&clear.stdout);
    assert!(said.contains("1 traded, 1 contracts, 6 units"), "{said} {}", String::from_utf8_lossy(&clear.stderr));
    let list = suanwang_env(&["contract", "list"], &as_tenant);
    let said = String::from_utf8_lossy(&list.stdout);
    assert!(
        said.contains("idc-tianfu → acme-ai at ¥1.25/unit·h: ¥15.00 (platform fee ¥0.45, seller gets ¥14.55)"),
        "{said}"
    );
    let prices = stdout_json(&suanwang_env(&["market", "prices", "--json"], &as_tenant));
    assert_eq!(prices["prices"][0]["price_fen"], 125, "{prices}");
    // carbon-sink credits: the lots on offer; an offset of a job that does not exist names it
    let lots = suanwang_env(&["carbon", "credits"], &as_tenant);
    let said = String::from_utf8_lossy(&lots.stdout);
    assert!(
        said.contains("lot qingyang-forest-2024 (CCER 2024, idc-qingyang at qingyang): 5000.000000 t left"),
        "{said}"
    );
    let bad = suanwang_env(&["carbon", "offset", "999"], &as_tenant);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("job"), "{}", String::from_utf8_lossy(&bad.stderr));
    // a quota: set by the operator, seen by the tenant
    let set = suanwang_env(&["quota", "set", "acme-ai", "--family", "general", "--max-units", "100"], &as_op);
    let said = String::from_utf8_lossy(&set.stdout);
    assert!(said.contains("acme-ai: at most 100 general units at once everywhere"), "{said}");
    let mine = String::from_utf8_lossy(&suanwang_env(&["quota", "list"], &as_tenant).stdout).to_string();
    assert!(mine.contains("at most 100 general units"), "{mine}");
    let open = stdout_json(&suanwang_env(&["market", "orders", "--state", "open", "--json"], &as_op));
    assert_eq!(
        (open["orders"][0]["side"].as_str(), open["orders"][0]["filled_units"].as_u64()),
        (Some("ask"), Some(6))
    );
}
