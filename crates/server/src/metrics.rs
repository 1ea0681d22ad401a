//! Counters and histograms for `/metrics` (Prometheus text format, written by hand: a few
//! atomics need no library).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the HTTP latency histogram, seconds.
pub const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pub placements: AtomicU64,
    pub refusals: AtomicU64,
    pub queue_depth: AtomicU64,
    pub batches: AtomicU64,
    pub batch_rows: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Agent reports refused as implausible (usage not finite, negative, or beyond the run).
    pub reports_refused: AtomicU64,
    /// Requests answered 429 by the failed-authentication throttle.
    pub auth_throttled: AtomicU64,
    http_buckets: [AtomicU64; 12],
    http_count: AtomicU64,
    http_sum_us: AtomicU64,
    pub started_ms: AtomicU64,
    /// How long the start's rebuild from snapshot and log took.
    pub replay_ms: AtomicU64,
}

/// This process's resident memory in bytes (`VmRSS` of /proc/self/status), when readable.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

impl Metrics {
    pub fn observe_http(&self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.http_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.http_count.fetch_add(1, Ordering::Relaxed);
        self.http_sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The exposition text; `jobs_by_state` and per-hub figures come from the caller's views.
    pub fn render(&self, jobs_by_state: &[(String, u64)], hubs: &[(String, f64, f64)], now_ms: i64) -> String {
        let mut out = String::new();
        let g = |o: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        g(&mut out, "suanwang_jobs", "Jobs by state.", "gauge");
        for (state, n) in jobs_by_state {
            let _ = writeln!(out, "suanwang_jobs{{state=\"{state}\"}} {n}");
        }
        let placements = self.placements.load(Ordering::Relaxed);
        g(&mut out, "suanwang_placements_total", "Placements made.", "counter");
        let _ = writeln!(out, "suanwang_placements_total {placements}");
        let secs = ((now_ms as u64).saturating_sub(self.started_ms.load(Ordering::Relaxed)) as f64 / 1000.0).max(1e-3);
        g(&mut out, "suanwang_placements_per_second", "Placements per second since start.", "gauge");
        let _ = writeln!(out, "suanwang_placements_per_second {:.3}", placements as f64 / secs);
        g(&mut out, "suanwang_refusals_total", "Jobs no site could take.", "counter");
        let _ = writeln!(out, "suanwang_refusals_total {}", self.refusals.load(Ordering::Relaxed));
        if let Some(rss) = resident_bytes() {
            g(&mut out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        g(
            &mut out,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            "gauge",
        );
        let _ =
            writeln!(out, "process_start_time_seconds {:.3}", self.started_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        g(&mut out, "suanwang_replay_seconds", "How long the start's rebuild from snapshot and log took.", "gauge");
        let _ = writeln!(out, "suanwang_replay_seconds {:.3}", self.replay_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        g(&mut out, "suanwang_queue_depth", "Requests waiting for the engine.", "gauge");
        let _ = writeln!(out, "suanwang_queue_depth {}", self.queue_depth.load(Ordering::Relaxed));
        g(&mut out, "suanwang_commit_batches_total", "Group commits.", "counter");
        let _ = writeln!(out, "suanwang_commit_batches_total {}", self.batches.load(Ordering::Relaxed));
        g(&mut out, "suanwang_commit_rows_total", "Commands committed.", "counter");
        let _ = writeln!(out, "suanwang_commit_rows_total {}", self.batch_rows.load(Ordering::Relaxed));
        g(&mut out, "suanwang_auth_failures_total", "Requests refused for a missing or bad token.", "counter");
        let _ = writeln!(out, "suanwang_auth_failures_total {}", self.auth_failures.load(Ordering::Relaxed));
        g(&mut out, "suanwang_reports_refused_total", "Agent reports refused as implausible.", "counter");
        let _ = writeln!(out, "suanwang_reports_refused_total {}", self.reports_refused.load(Ordering::Relaxed));
        g(
            &mut out,
            "suanwang_auth_throttled_total",
            "Requests refused with 429 after too many failed authentications.",
            "counter",
        );
        let _ = writeln!(out, "suanwang_auth_throttled_total {}", self.auth_throttled.load(Ordering::Relaxed));
        g(&mut out, "suanwang_hub_utilization", "Share of a hub's unified capacity held by running jobs.", "gauge");
        for (hub, util, _) in hubs {
            let _ = writeln!(out, "suanwang_hub_utilization{{hub=\"{hub}\"}} {util:.6}");
        }
        g(&mut out, "suanwang_hub_green_share", "Green-power share of a hub's sites now (modelled profile).", "gauge");
        for (hub, _, green) in hubs {
            let _ = writeln!(out, "suanwang_hub_green_share{{hub=\"{hub}\"}} {green:.4}");
        }
        g(&mut out, "suanwang_http_request_duration_seconds", "HTTP request latency.", "histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "suanwang_http_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.http_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.http_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "suanwang_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "suanwang_http_request_duration_seconds_sum {:.6}",
            self.http_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "suanwang_http_request_duration_seconds_count {count}");
        out
    }
}
