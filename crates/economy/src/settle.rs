//! A job's settlement as one linked chain of transfers (all-or-none): the hold posted with what
//! the tenant owes, a charge for what the bill exceeded the hold by (as far as the wallet
//! allows; the platform writes off the rest), what vouchers paid, and the split to provider,
//! carrier and platform. The clearing account nets to zero over the chain.

use serde::{Deserialize, Serialize};

use crate::{Ledger, Transfer, TransferFlags, TransferKind, system_id};

/// One leg of a settlement, for reading (statements and bills name them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub kind: TransferKind,
    pub amount_fen: u64,
}

/// The transfers that settle one job, and what they add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub transfers: Vec<Transfer>,
    /// What the tenant paid (posted hold + charge).
    pub tenant_fen: u64,
    /// What the platform wrote off (the tenant's wallet could not pay it).
    pub written_off_fen: u64,
}

/// Builds the chain settling job `job`: `hold` is its pending hold, if one is open; the tenant
/// owes `tenant_fen`; `vouchers` are (grant account, fen) paid by vouchers; `shares` are
/// (payee account, fen, kind) and add up to `tenant_fen` + the vouchers. Returns `None` when
/// the shares do not add up (a defect of the caller, never applied).
#[allow(clippy::too_many_arguments)]
pub fn settlement(
    ledger: &Ledger,
    job: u64,
    wallet: u128,
    clearing: u128,
    platform: u128,
    hold: Option<&Transfer>,
    tenant_fen: u64,
    vouchers: &[(u128, u64)],
    shares: &[(u128, u64, TransferKind)],
) -> Option<Settlement> {
    let voucher_total: u64 = vouchers.iter().try_fold(0u64, |s, v| s.checked_add(v.1))?;
    let share_total: u64 = shares.iter().try_fold(0u64, |s, v| s.checked_add(v.1))?;
    if share_total != tenant_fen.checked_add(voucher_total)? {
        return None;
    }
    let mut out = vec![];
    let mut leg = 0u16;
    let mut next = |kind| {
        leg += 1;
        system_id(kind, job, leg)
    };
    let held = hold.map_or(0, |h| h.amount);
    if let Some(h) = hold {
        let posted = tenant_fen.min(held);
        if posted == 0 {
            out.push(Transfer::void(next(TransferKind::Void), h.id, TransferKind::Void.code()).user_data(job));
        } else {
            out.push(Transfer::post(next(TransferKind::Post), h.id, posted, TransferKind::Post.code()).user_data(job));
        }
    }
    let extra = tenant_fen.saturating_sub(held);
    // the hold's unposted rest is released by the post, so the wallet can pay up to this
    let available = ledger
        .account(wallet)
        .map_or(0, |a| a.available().map_or(u128::from(extra), |v| v + u128::from(held - tenant_fen.min(held))));
    let charged = u64::try_from(available.min(u128::from(extra))).unwrap_or(extra);
    if charged > 0 {
        out.push(
            Transfer::new(next(TransferKind::Charge), wallet, clearing, charged, TransferKind::Charge.code())
                .user_data(job),
        );
    }
    let written_off = extra - charged;
    if written_off > 0 {
        out.push(
            Transfer::new(next(TransferKind::WriteOff), platform, clearing, written_off, TransferKind::WriteOff.code())
                .user_data(job),
        );
    }
    for &(grant, fen) in vouchers.iter().filter(|v| v.1 > 0) {
        out.push(
            Transfer::new(next(TransferKind::Voucher), grant, clearing, fen, TransferKind::Voucher.code())
                .user_data(job),
        );
    }
    for &(payee, fen, kind) in shares.iter().filter(|s| s.1 > 0) {
        out.push(Transfer::new(next(kind), clearing, payee, fen, kind.code()).user_data(job));
    }
    let last = out.len().saturating_sub(1);
    for t in &mut out[..last] {
        t.flags = t.flags.with(TransferFlags::LINKED);
    }
    Some(Settlement { transfers: out, tenant_fen: held.min(tenant_fen) + charged, written_off_fen: written_off })
}
