//! Money commands against a running control plane (R4): `balance`, `bill [JOB]`, `statement`,
//! `topup`, `voucher programme create`, `voucher grant`, `voucher list`. Amounts are fen on the
//! wire and shown in yuan (¥12.34) to people; `--json` prints the API's answer as it is.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use suanwang_api as api;

use crate::remote::Client;

/// `¥12.34` from fen.
pub fn yuan(fen: i64) -> String {
    suanwang_core::money::Money(fen).to_string()
}

/// Amounts typed by people: `12.34` or `¥12.34` yuan, or `1234fen`.
pub fn parse_amount(s: &str) -> Result<i64> {
    let t = s.trim().trim_start_matches('¥');
    if let Some(f) = t.strip_suffix("fen") {
        return f.trim().parse::<i64>().with_context(|| format!("{s:?} is not a whole number of fen"));
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if frac.len() > 2 || !frac.chars().all(|c| c.is_ascii_digit()) || whole.is_empty() {
        bail!("{s:?} is not an amount in yuan (at most 2 decimals, e.g. 1000 or 12.34) nor in fen (1234fen)");
    }
    let whole: i64 = whole.parse().with_context(|| format!("{s:?} is not an amount"))?;
    let frac: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    whole.checked_mul(100).and_then(|w| w.checked_add(frac)).with_context(|| format!("{s:?} does not fit"))
}

pub(crate) async fn get<T: DeserializeOwned>(c: &Client, path: &str) -> Result<std::result::Result<T, ExitCode>> {
    let (status, bytes) = c.send(reqwest::Method::GET, path, None, None).await?;
    decode(c, path, status, &bytes)
}

pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
    c: &Client,
    path: &str,
    body: &B,
) -> Result<std::result::Result<T, ExitCode>> {
    let (status, bytes) = c.send(reqwest::Method::POST, path, Some(serde_json::to_vec(body)?), None).await?;
    decode(c, path, status, &bytes)
}

fn decode<T: DeserializeOwned>(
    c: &Client,
    path: &str,
    status: u16,
    bytes: &[u8],
) -> Result<std::result::Result<T, ExitCode>> {
    if status < 300 {
        return Ok(Ok(serde_json::from_slice(bytes)
            .with_context(|| format!("the answer of {}{path} is not what was expected", c.server))?));
    }
    let e: api::ErrorBody = serde_json::from_slice(bytes).unwrap_or_else(|_| api::ErrorBody {
        code: format!("http_{status}"),
        message: String::from_utf8_lossy(bytes).trim().to_string(),
        detail: String::new(),
        hint: String::new(),
        field: None,
    });
    Ok(Err(crate::remote::print_error(status, &e)))
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = pairs.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", urlencode(v)))).collect();
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn balance(c: &Client, party: Option<&str>, json: bool) -> Result<ExitCode> {
    let a: api::BalanceAnswer = match get(c, &format!("/v1/balance{}", query(&[("party", party)]))).await? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&a)?);
        return Ok(ExitCode::SUCCESS);
    }
    if a.accounts.is_empty() {
        println!("{}: no accounts yet (a wallet opens with its first top-up or job)", a.party);
    }
    for acct in &a.accounts {
        let held = if acct.debits_pending_fen > 0 {
            format!("  held {}", yuan(acct.debits_pending_fen))
        } else {
            String::new()
        };
        let avail = acct.available_fen.map(|v| format!("  available {}", yuan(v))).unwrap_or_default();
        println!("{:<10} {:<28} balance {:>14}{held}{avail}", acct.kind, acct.name, yuan(acct.balance_fen));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn bill(c: &Client, job: &str, json: bool) -> Result<ExitCode> {
    let b: api::BillAnswer = match get(c, &format!("/v1/jobs/{}/bill", urlencode(job))).await? {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&b)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("job {} ({}), {}; price book {}", b.job, b.tenant, b.status, b.price_book);
    if b.status == "estimate" {
        println!(
            "  not ended yet: {} held in the wallet; the bill is made from its meter when it ends",
            yuan(b.held_fen)
        );
        return Ok(ExitCode::SUCCESS);
    }
    for l in &b.lines {
        println!("  {:<13} {:>14.3} {:<7} {:>14}  {}", l.kind, l.quantity, l.unit, yuan(l.amount_fen), l.description);
    }
    println!("  {:<13} {:>38}", "total", yuan(b.total_fen));
    if b.voucher_fen > 0 {
        println!("  {:<13} {:>38}", "vouchers paid", yuan(b.voucher_fen));
    }
    println!("  {:<13} {:>38}", "tenant pays", yuan(b.tenant_fen));
    if b.held_fen > 0 {
        println!("  {:<13} {:>38}  (held until the job ends)", "held", yuan(b.held_fen));
    }
    for s in &b.split {
        println!("  → {:<15} {:>14}  to {}", s.kind, yuan(s.amount_fen), s.credit_name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `bill` without a job: one line per job the token sees (the first page of its jobs).
pub async fn bills(c: &Client, json: bool) -> Result<ExitCode> {
    let list: api::JobList = match get(c, "/v1/jobs?limit=100").await? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let mut out = vec![];
    for j in &list.jobs {
        let b: api::BillAnswer = match get(c, &format!("/v1/jobs/{}/bill", j.id)).await? {
            Ok(b) => b,
            Err(code) => return Ok(code),
        };
        if !json {
            println!(
                "job {:<8} {:<10} {:<9} total {:>12}  vouchers {:>10}  tenant pays {:>12}",
                b.job,
                b.tenant,
                b.status,
                yuan(b.total_fen),
                yuan(b.voucher_fen),
                yuan(b.tenant_fen)
            );
        }
        out.push(b);
    }
    if json {
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn statement(
    c: &Client,
    party: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    csv: bool,
    json: bool,
) -> Result<ExitCode> {
    let q = query(&[("party", party), ("from", from), ("to", to), ("format", csv.then_some("csv"))]);
    let path = format!("/v1/statements{q}");
    if csv {
        let (status, bytes) = c.send(reqwest::Method::GET, &path, None, None).await?;
        if status >= 300 {
            return decode::<serde_json::Value>(c, &path, status, &bytes).map(|r| r.err().unwrap_or(ExitCode::FAILURE));
        }
        print!("{}", String::from_utf8_lossy(&bytes));
        return Ok(ExitCode::SUCCESS);
    }
    let s: api::Statement = match get(c, &path).await? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("statement of {}", s.party);
    for a in &s.accounts {
        println!(
            "  {:<10} {:<28} opening {:>12}  +{:>12}  -{:>12}  closing {:>12}",
            a.kind,
            a.name,
            yuan(a.opening_fen),
            yuan(a.credits_fen),
            yuan(a.debits_fen),
            yuan(a.closing_fen)
        );
    }
    for l in &s.lines {
        let amount =
            if l.credit_fen > 0 { format!("+{}", yuan(l.credit_fen)) } else { format!("-{}", yuan(l.debit_fen)) };
        let job = if l.job > 0 { format!("job {}", l.job) } else { String::new() };
        println!("  {}  {:<15} {:>13}  {:<9} {}", crate::remote::rfc3339(l.at_ms), l.kind, amount, job, l.counterparty);
    }
    println!("  net {}", yuan(s.net_fen));
    Ok(ExitCode::SUCCESS)
}

pub async fn topup(
    c: &Client,
    party: &str,
    amount: &str,
    funder: bool,
    id: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let amount_fen = parse_amount(amount)?;
    // the client chooses the transfer id, so a retry of this command cannot pay twice
    let transfer_id = match id {
        Some(i) => i.to_string(),
        None => {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            // the top bit is the platform's
            suanwang_server::billing::hex(u128::from_be_bytes(b) >> 1)
        }
    };
    let req = api::TopupRequest {
        party: party.to_string(),
        to: Some(if funder { "funder" } else { "wallet" }.into()),
        amount_fen,
        transfer_id: Some(transfer_id),
    };
    let a: api::MoneyAnswer = match post(c, "/v1/topups", &req).await? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&a)?);
    } else {
        let what = if a.created { "paid in" } else { "already paid in (a retry; nothing changed)" };
        println!(
            "{} {what} for {party}: balance {} (transfer {})",
            yuan(amount_fen),
            yuan(a.balance_fen),
            a.transfer_id.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn programme_create(c: &Client, file: &Path, json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let spec: api::ProgrammeSpec = if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not a programme", file.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("{} is not a programme", file.display()))?
    };
    let v: api::ProgrammeView = match post(c, "/v1/vouchers/programmes", &spec).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "programme {} ({}, funder {}): budget {}, rate {}.{:02} %, cap {} per tenant per year",
            v.programme.id,
            v.programme.kind,
            v.programme.funder,
            yuan(v.budget_left_fen),
            v.programme.rate_bp / 100,
            v.programme.rate_bp % 100,
            yuan(v.programme.cap_per_beneficiary_fen)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn grant(c: &Client, programme: &str, tenant: &str, amount: &str, json: bool) -> Result<ExitCode> {
    let req =
        api::GrantRequest { programme: programme.into(), tenant: tenant.into(), amount_fen: parse_amount(amount)? };
    let g: api::GrantView = match post(c, "/v1/vouchers/grants", &req).await? {
        Ok(g) => g,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&g)?);
    } else {
        println!(
            "{} of {} granted to {}: it holds {} (granted this year {})",
            yuan(req.amount_fen),
            g.programme,
            g.tenant,
            yuan(g.left_fen),
            yuan(g.granted_this_year_fen)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn voucher_list(c: &Client, json: bool) -> Result<ExitCode> {
    let l: api::VoucherList = match get(c, "/v1/vouchers").await? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&l)?);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &l.programmes {
        println!(
            "{} ({}, funder {}{}): rate {}.{:02} %, budget left {}",
            p.programme.id,
            p.programme.kind,
            p.programme.funder,
            if p.closed { ", closed" } else { "" },
            p.programme.rate_bp / 100,
            p.programme.rate_bp % 100,
            yuan(p.budget_left_fen)
        );
        for g in &p.grants {
            println!(
                "  {:<24} holds {:>12}  granted this year {:>12}",
                g.tenant,
                yuan(g.left_fen),
                yuan(g.granted_this_year_fen)
            );
        }
    }
    for r in &l.redemptions {
        println!("redeemed {} of {} by {} for job {}", yuan(r.amount_fen), r.programme, r.tenant, r.job);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_amount;

    #[test]
    fn amounts_parse_in_yuan_or_fen_and_bad_ones_are_named() {
        assert_eq!(parse_amount("1000").ok(), Some(100_000));
        assert_eq!(parse_amount("¥12.3").ok(), Some(1_230));
        assert_eq!(parse_amount("12.34").ok(), Some(1_234));
        assert_eq!(parse_amount("55fen").ok(), Some(55));
        assert!(parse_amount("1.234").is_err());
        assert!(parse_amount("abc").is_err());
        assert!(parse_amount("99999999999999999999").is_err());
    }
}
