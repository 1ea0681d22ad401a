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
    /// Snapshots stored; the last one's pause of the command thread (its copy of the state, µs)
    /// and its size.
    pub snapshots: AtomicU64,
    pub snapshot_pause_us: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    /// Alert notifications: delivered, retried, given up, dropped (delivery queue full).
    pub alerts_delivered: AtomicU64,
    pub alerts_retried: AtomicU64,
    pub alerts_failed: AtomicU64,
    pub alerts_dropped: AtomicU64,
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

    /// The exposition text; `jobs_by_state` comes from the caller's views, the indicators and
    /// alerts from early warning's last evaluation.
    pub fn render(
        &self,
        jobs_by_state: &[(String, u64)],
        samples: &suanwang_alerts::Samples,
        alerts: &[suanwang_alerts::Alert],
        now_ms: i64,
    ) -> String {
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
        g(&mut out, "suanwang_snapshots_total", "Snapshots of the live state stored.", "counter");
        let _ = writeln!(out, "suanwang_snapshots_total {}", self.snapshots.load(Ordering::Relaxed));
        g(
            &mut out,
            "suanwang_snapshot_pause_seconds",
            "How long the last snapshot held the command thread (its copy of the state).",
            "gauge",
        );
        let pause = self.snapshot_pause_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "suanwang_snapshot_pause_seconds {pause:.6}");
        g(&mut out, "suanwang_snapshot_bytes", "The last snapshot's size.", "gauge");
        let _ = writeln!(out, "suanwang_snapshot_bytes {}", self.snapshot_bytes.load(Ordering::Relaxed));
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
        // the indicators early warning judges, under the names its rules use
        for ind in suanwang_alerts::INDICATORS {
            g(&mut out, ind.name, ind.help, "gauge");
            for x in samples.get(ind.name).map_or(&[][..], Vec::as_slice) {
                let _ = writeln!(out, "{}{} {}", ind.name, labels(&x.labels), value(x.value));
            }
        }
        g(&mut out, "suanwang_alerts", "Alerts now, by state and severity.", "gauge");
        let mut by: std::collections::BTreeMap<(&str, &str), u64> = std::collections::BTreeMap::new();
        for a in alerts
            .iter()
            .filter(|a| matches!(a.state, suanwang_alerts::State::Firing | suanwang_alerts::State::Pending))
        {
            *by.entry((a.state.as_str(), a.severity.as_str())).or_default() += 1;
        }
        for state in ["firing", "pending"] {
            for severity in ["critical", "warning", "info"] {
                let n = by.get(&(state, severity)).copied().unwrap_or(0);
                let _ = writeln!(out, "suanwang_alerts{{state=\"{state}\",severity=\"{severity}\"}} {n}");
            }
        }
        for (name, help, counter) in [
            (
                "suanwang_alert_notifications_total",
                "Alert notifications delivered (webhooks, Alertmanager).",
                &self.alerts_delivered,
            ),
            (
                "suanwang_alert_notification_retries_total",
                "Alert notification attempts that failed and were retried.",
                &self.alerts_retried,
            ),
            (
                "suanwang_alert_notification_failures_total",
                "Alert notifications given up or refused by the receiver.",
                &self.alerts_failed,
            ),
            (
                "suanwang_alert_notification_dropped_total",
                "Batches of alert notifications dropped because delivery was behind.",
                &self.alerts_dropped,
            ),
        ] {
            g(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
        g(&mut out, "suanwang_build_info", "The running build: its version.", "gauge");
        let _ = writeln!(out, "suanwang_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        process_metrics(&mut out);
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

/// Label set in the exposition format, values escaped (`\\`, `\"`, `\n`).
fn labels(l: &std::collections::BTreeMap<String, String>) -> String {
    if l.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn value(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{x}")
    }
}

/// The standard process metrics (Prometheus client conventions) from /proc, where readable.
fn process_metrics(out: &mut String) {
    let mut g = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (USER_HZ, 100 on Linux)
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r)
    {
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        // fields after the command: state is field 3, so utime (14) is index 11
        g(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            (ticks(11) + ticks(12)) / 100.0,
        );
        g("process_threads", "Number of OS threads in the process.", "gauge", ticks(17));
        g("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", ticks(20));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        g("process_open_fds", "Number of open file descriptors.", "gauge", fds.count() as f64);
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(max) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|x| x.parse::<f64>().ok())
    {
        g("process_max_fds", "Maximum number of open file descriptors.", "gauge", max);
    }
}
