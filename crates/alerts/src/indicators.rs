//! The named indicators (R7): what the control plane measures for early warning. Each is a
//! gauge on `/metrics` under the same name and labels, so a rule reads the same whether this
//! crate evaluates it or a user's Prometheus does (`suanwang alerts rules --prometheus`).

/// One indicator: a gauge, its labels, and how it is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indicator {
    pub name: &'static str,
    pub labels: &'static [&'static str],
    /// What one sample means (the `# HELP` line).
    pub help: &'static str,
}

/// Every indicator the control plane serves. A rule naming another is refused at start.
pub const INDICATORS: &[Indicator] = &[
    Indicator {
        name: "suanwang_site_up",
        labels: &["site"],
        help: "1 while the site takes placements (not lost), 0 once it is lost.",
    },
    Indicator {
        name: "suanwang_agent_silence_seconds",
        labels: &["site"],
        help: "Seconds since the agent of an agent-run site was last heard from.",
    },
    Indicator {
        name: "suanwang_site_utilization",
        labels: &["site", "hub"],
        help: "Share of the site's unified capacity (ucu) held by running jobs.",
    },
    Indicator {
        name: "suanwang_site_utilization_zscore",
        labels: &["site", "hub"],
        help: "Utilization against the site's own recent history: (x - EWMA mean) / EWMA standard deviation, half-life 30 min, 0 until 30 samples.",
    },
    Indicator {
        name: "suanwang_link_transfer_bytes",
        labels: &["link"],
        help: "Bytes placed to move over the link by network in the last 10 minutes.",
    },
    Indicator {
        name: "suanwang_link_transfer_zscore",
        labels: &["link"],
        help: "The link's 10-minute transfer volume against its own recent history (EWMA z-score, half-life 2 h, 0 until 30 samples).",
    },
    Indicator {
        name: "suanwang_auth_failures_recent",
        labels: &["source"],
        help: "Failed authentications (missing, wrong or expired token) from an address in the last 5 minutes.",
    },
    Indicator {
        name: "suanwang_forbidden_recent",
        labels: &["principal"],
        help: "Requests of an authenticated principal refused for its role or ownership (403) in the last 5 minutes.",
    },
    Indicator {
        name: "suanwang_queue_wait_p99_seconds",
        labels: &[],
        help: "p99 of submission-to-start waits of the jobs that started in the last 15 minutes (0 when none did).",
    },
    Indicator {
        name: "suanwang_latency_tier_attainment",
        labels: &["tier"],
        help: "Share of the jobs with a latency tier decided in the last 15 minutes that a site within the tier took (1 when none was decided).",
    },
    Indicator {
        name: "suanwang_hub_utilization",
        labels: &["hub"],
        help: "Share of a hub's unified capacity held by running jobs.",
    },
    Indicator {
        name: "suanwang_network_utilization",
        labels: &[],
        help: "Share of the whole network's unified capacity held by running jobs (the national average).",
    },
    Indicator {
        name: "suanwang_hub_utilization_ratio",
        labels: &[],
        help: "The hubs' utilization (all hub sites together) divided by the national average; absent while nothing runs.",
    },
    Indicator {
        name: "suanwang_hub_green_share",
        labels: &["hub"],
        help: "Green-power share of a hub's sites now (their modelled hourly profiles).",
    },
    Indicator {
        name: "suanwang_site_pue",
        labels: &["site", "side"],
        help: "The site's power usage effectiveness; side: east or west for a hub's site, none elsewhere.",
    },
    Indicator {
        name: "suanwang_voucher_budget_used_ratio",
        labels: &["programme"],
        help: "Share of a voucher programme's budget granted or spent.",
    },
    Indicator {
        name: "suanwang_tenant_credit_used_ratio",
        labels: &["tenant"],
        help: "Share of a tenant's credit limit in use (wallet below zero, holds included); tenants with a credit limit only.",
    },
    Indicator {
        name: "suanwang_evidence_unsigned_seconds",
        labels: &[],
        help: "How long entries of the evidence log have waited for a signed checkpoint (0 when the newest checkpoint covers the log).",
    },
    Indicator {
        name: "suanwang_ledger_balanced",
        labels: &[],
        help: "1 when the ledger's debits equal its credits (posted and pending), 0 when not.",
    },
];

/// The indicator called `name`.
pub fn indicator(name: &str) -> Option<&'static Indicator> {
    INDICATORS.iter().find(|i| i.name == name)
}
