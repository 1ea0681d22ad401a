//! What the API reads: a view per job, kept up to date from the engine's events.

use std::collections::{BTreeMap, HashMap};

use crate::wire::JobView;
use suanwang_core::Ts;
use suanwang_engine::{Event, JobState};

#[derive(Debug, Default)]
pub struct Views {
    pub jobs: BTreeMap<u64, JobView>,
    /// Work handed to agents and not yet reported, by job.
    pub assignments: BTreeMap<u64, suanwang_engine::Assignment>,
    /// Output of jobs run by agents: (stdout, stderr), each cut to its last 64 KiB.
    pub logs: HashMap<u64, (String, String)>,
    /// (tenant, idempotency key) → job id.
    pub idempotency: HashMap<(String, String), u64>,
    pub next_id: u64,
}

impl Views {
    pub fn apply(&mut self, ev: &Event) {
        let (id, at) = match ev {
            Event::Submitted { id, at }
            | Event::Admitted { id, at }
            | Event::Refused { id, at, .. }
            | Event::Placed { id, at, .. }
            | Event::DataArrived { id, at, .. }
            | Event::Started { id, at, .. }
            | Event::Completed { id, at, .. }
            | Event::Failed { id, at, .. }
            | Event::Cancelled { id, at, .. }
            | Event::Rescheduled { id, at, .. } => (*id, *at),
            Event::Assigned { assignment, .. } => {
                self.assignments.insert(assignment.id, assignment.clone());
                return;
            }
            Event::Measured { id, at, usage, .. } => {
                if let Some(v) = self.jobs.get_mut(id) {
                    v.usage = Some(*usage);
                    v.updated_at = *at;
                }
                return;
            }
            _ => return,
        };
        match ev {
            Event::Completed { .. } | Event::Failed { .. } | Event::Cancelled { .. } | Event::Rescheduled { .. } => {
                self.assignments.remove(&id);
            }
            _ => {}
        }
        let Some(v) = self.jobs.get_mut(&id) else { return };
        v.updated_at = at;
        match ev {
            Event::Submitted { .. } => v.state = JobState::Submitted,
            Event::Admitted { .. } => v.state = JobState::Admitted,
            Event::Refused { rejections, .. } => {
                v.state = JobState::Refused;
                let mut by: BTreeMap<&str, usize> = BTreeMap::new();
                for r in rejections {
                    *by.entry(r.filter.as_str()).or_default() += 1;
                }
                v.reason = Some(format!(
                    "no site can take the job: {}",
                    by.iter().map(|(f, n)| format!("{n} site(s) by {f}")).collect::<Vec<_>>().join(", ")
                ));
            }
            Event::Placed { site, pool, start_at, end_at, attempt, mode, .. } => {
                v.state =
                    if *mode == suanwang_sched::TransferMode::None { JobState::Placed } else { JobState::InTransfer };
                v.site = Some(site.clone());
                v.pool = Some(pool.clone());
                v.start_at = Some(*start_at);
                v.end_at = Some(*end_at);
                v.attempts = *attempt;
            }
            Event::DataArrived { .. } => v.state = JobState::Placed,
            Event::Started { .. } => v.state = JobState::Running,
            Event::Completed { outcome, .. } => {
                v.state = JobState::Completed;
                v.meter = Some(outcome.meter);
            }
            Event::Failed { reason, meter, .. } => {
                v.state = JobState::Failed;
                v.reason = Some(reason.clone());
                if *meter != suanwang_engine::Meter::default() {
                    v.meter = Some(*meter);
                }
            }
            Event::Cancelled { meter, .. } => {
                v.state = JobState::Cancelled;
                v.meter = Some(*meter);
            }
            Event::Rescheduled { reason, attempt, .. } => {
                v.attempts = *attempt;
                v.reason = Some(reason.clone());
            }
            _ => {}
        }
    }

    pub fn counts_by_state(&self) -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for v in self.jobs.values() {
            let s = serde_json::to_value(v.state).ok().and_then(|x| x.as_str().map(str::to_owned)).unwrap_or_default();
            *m.entry(s).or_default() += 1;
        }
        m.into_iter().collect()
    }
}

/// `Views` in a JSON-friendly shape (tuple keys become pairs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ViewsSnapshot {
    jobs: Vec<JobView>,
    #[serde(default)]
    assignments: Vec<suanwang_engine::Assignment>,
    #[serde(default)]
    logs: Vec<(u64, (String, String))>,
    idempotency: Vec<((String, String), u64)>,
    next_id: u64,
}

impl Views {
    pub fn snapshot(&self) -> ViewsSnapshot {
        let mut idempotency: Vec<((String, String), u64)> =
            self.idempotency.iter().map(|(k, v)| (k.clone(), *v)).collect();
        idempotency.sort();
        let mut logs: Vec<(u64, (String, String))> = self.logs.iter().map(|(k, v)| (*k, v.clone())).collect();
        logs.sort_by_key(|(k, _)| *k);
        ViewsSnapshot {
            jobs: self.jobs.values().cloned().collect(),
            assignments: self.assignments.values().cloned().collect(),
            logs,
            idempotency,
            next_id: self.next_id,
        }
    }

    pub fn restore(s: ViewsSnapshot) -> Views {
        Views {
            jobs: s.jobs.into_iter().map(|j| (j.id, j)).collect(),
            assignments: s.assignments.into_iter().map(|a| (a.id, a)).collect(),
            logs: s.logs.into_iter().collect(),
            idempotency: s.idempotency.into_iter().collect(),
            next_id: s.next_id,
        }
    }
}

pub fn fresh_view(id: u64, job: &suanwang_core::Job, spec: serde_json::Value, by: &str, at: Ts) -> JobView {
    JobView {
        id,
        name: job.name.clone(),
        tenant: job.tenant.clone(),
        kind: job.kind.as_str().to_string(),
        state: JobState::Submitted,
        site: None,
        pool: None,
        start_at: None,
        end_at: None,
        submitted_at: at,
        submitted_by: by.to_string(),
        updated_at: at,
        attempts: 0,
        reason: None,
        meter: None,
        usage: None,
        spec,
    }
}
