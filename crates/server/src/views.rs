//! What the API reads of the live state, kept up to date from the engine's events (R7).
//!
//! Memory holds only what is live: the jobs that have not ended, the work handed to agents, a
//! bounded cache of the jobs that ended last and of the idempotency keys used last, and running
//! totals. Every job's history is in the store's job projection, written in the same group commit
//! as the commands that changed it; a job that ends leaves memory once it falls out of the cache.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use suanwang_core::{Network, Ts};
use suanwang_engine::{Event, JobState};

use crate::wire::JobView;
use suanwang_store::JobRow;

/// Jobs that ended, kept in memory for a quick read after their end (the last half of this at
/// least, this many at most: [`Bounded`]).
pub const RECENT_JOBS: usize = 1024;
/// Idempotency keys kept in memory (as [`RECENT_JOBS`]); older ones are looked up in the store.
pub const RECENT_KEYS: usize = 65_536;

/// A map that keeps at least its last `cap / 2` insertions and at most `cap` entries, in two
/// generations: new keys go into `young`; when it holds `cap / 2`, it becomes `old` and the
/// previous `old` is dropped whole. Nothing is removed one by one, so the hash tables never fill
/// with tombstones and never grow past the size they are created with (a map with a FIFO of
/// removals doubled its table once it had churned through its free buckets: 8 MiB more resident
/// memory after about 650,000 submissions, issue 11).
#[derive(Debug, Clone)]
pub struct Bounded<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: Eq + Hash, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        let half = cap.div_ceil(2).max(1);
        Bounded { young: HashMap::with_capacity(half), old: HashMap::new(), half }
    }

    pub fn insert(&mut self, k: K, v: V) {
        self.old.remove(&k);
        self.young.insert(k, v);
        if self.young.len() >= self.half {
            self.old = std::mem::replace(&mut self.young, HashMap::with_capacity(self.half));
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.young.get(k).or_else(|| self.old.get(k))
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Running totals over every job ever submitted, updated on each change of a job's state:
/// `/metrics` and `/v1/kpis` read them instead of scanning jobs. They are part of the snapshot,
/// and the commands after it bring them up to date, so a restart does not reset them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub jobs: u64,
    pub by_state: BTreeMap<String, u64>,
    pub energy_kwh: f64,
    pub green_kwh: f64,
    pub carbon_kg: f64,
    pub cost_fen: i64,
    pub ucu_hours: f64,
    pub hub_ucu_hours: f64,
    /// First placements (moves not counted).
    pub placements: u64,
    pub refusals: u64,
    /// Energy of jobs in the hubs, and its green part.
    #[serde(default)]
    pub hub_energy_kwh: f64,
    #[serde(default)]
    pub hub_green_kwh: f64,
    /// Data moved to jobs' sites, and the part that crossed from one hub to another.
    #[serde(default)]
    pub transfer_gb: f64,
    #[serde(default)]
    pub transfer_fen: i64,
    #[serde(default)]
    pub inter_hub_transfer_gb: f64,
    #[serde(default)]
    pub inter_hub_transfer_fen: i64,
    /// Set when `cost_fen` would have overflowed (it then stays at its bound).
    #[serde(default)]
    pub overflowed: bool,
    /// Enclaves (R1): per contract holder, its ended contract jobs at western hubs' sites.
    #[serde(default)]
    pub enclaves: BTreeMap<String, EnclaveTotals>,
}

/// What a holder's enclave ran (`Totals::enclaves`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnclaveTotals {
    pub jobs: u64,
    pub ucu_hours: f64,
    pub energy_kwh: f64,
    pub green_kwh: f64,
    pub sites: std::collections::BTreeSet<String>,
}

impl Totals {
    /// Job `v` moved from state `from` (`None`: it is new) to its state now.
    fn moved(&mut self, from: Option<JobState>, v: &JobView, net: &Network) {
        if from == Some(v.state) {
            return;
        }
        match from {
            None => self.jobs += 1,
            Some(old) => {
                if let Some(n) = self.by_state.get_mut(state_str(old)) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        *self.by_state.entry(state_str(v.state).to_string()).or_default() += 1;
        if terminal(v.state)
            && let Some(m) = &v.meter
        {
            self.energy_kwh += m.energy_kwh;
            self.green_kwh += m.green_kwh;
            self.carbon_kg += m.carbon_market_kg;
            self.ucu_hours += m.ucu_hours;
            let site = v.site.as_deref().and_then(|s| net.site(s));
            if site.is_some_and(suanwang_core::network::Site::in_hub) {
                self.hub_ucu_hours += m.ucu_hours;
                self.hub_energy_kwh += m.energy_kwh;
                self.hub_green_kwh += m.green_kwh;
            }
            // a contract's job at a western hub's site is its holder's enclave work (飞地)
            let on_contract = v.spec.get("contract").is_some_and(|c| !c.is_null());
            if let Some(s) = site.filter(|s| on_contract && s.in_hub() && s.side == suanwang_core::network::Side::West)
            {
                let e = self.enclaves.entry(v.tenant.clone()).or_default();
                e.jobs += 1;
                e.ucu_hours += m.ucu_hours;
                e.energy_kwh += m.energy_kwh;
                e.green_kwh += m.green_kwh;
                e.sites.insert(s.id.clone());
            }
            self.transfer_gb += m.transfer_gb;
            self.transfer_fen = self.transfer_fen.saturating_add(m.transfer_fen);
            // from a place of one hub to a site of another
            let from =
                v.spec.pointer("/input/location").and_then(serde_json::Value::as_str).and_then(|l| hub_of(net, l));
            if let (Some(a), Some(b)) = (from, site.and_then(|s| s.hub.as_deref()))
                && a != b
            {
                self.inter_hub_transfer_gb += m.transfer_gb;
                self.inter_hub_transfer_fen = self.inter_hub_transfer_fen.saturating_add(m.transfer_fen);
            }
            match self.cost_fen.checked_add(m.money_fen) {
                Some(c) => self.cost_fen = c,
                None => {
                    self.overflowed = true;
                    self.cost_fen = if m.money_fen > 0 { i64::MAX } else { i64::MIN };
                    tracing::error!(job = v.id, "the total cost overflows; it stays at its bound");
                }
            }
        }
    }

    pub fn counts_by_state(&self) -> Vec<(String, u64)> {
        self.by_state.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (s.clone(), *n)).collect()
    }
}

/// The hub a place (a site or a hub's cluster) belongs to.
fn hub_of<'a>(net: &'a Network, place: &str) -> Option<&'a str> {
    if let Some(s) = net.site(place) {
        return s.hub.as_deref();
    }
    net.clusters.iter().find(|c| c.id == place).map(|c| c.hub.as_str())
}

#[derive(Debug)]
pub struct Views {
    /// Jobs that have not ended.
    pub live: BTreeMap<u64, JobView>,
    /// The jobs that ended last.
    pub recent: Bounded<u64, JobView>,
    /// Work handed to agents and not yet reported, by job.
    pub assignments: BTreeMap<u64, suanwang_engine::Assignment>,
    /// (tenant, idempotency key) → (job id, fingerprint of its spec), for the keys used last.
    pub keys: Bounded<(String, String), (u64, u64)>,
    pub next_id: u64,
    pub totals: Totals,
}

impl Default for Views {
    fn default() -> Self {
        Views {
            live: BTreeMap::new(),
            recent: Bounded::new(RECENT_JOBS),
            assignments: BTreeMap::new(),
            keys: Bounded::new(RECENT_KEYS),
            next_id: 1,
            totals: Totals::default(),
        }
    }
}

/// Jobs changed by a batch, before it is durable: (state before, view after) by id.
pub type Staged = BTreeMap<u64, (Option<JobState>, JobView)>;

impl Views {
    /// A job in memory: live or recently ended.
    pub fn job(&self, id: u64) -> Option<&JobView> {
        self.live.get(&id).or_else(|| self.recent.get(&id))
    }

    /// The views `events` give the jobs they touch, and `fresh` jobs: computed before the batch
    /// is durable (their rows go into its transaction), installed after.
    pub fn stage(&self, fresh: Vec<JobView>, events: &[Event]) -> Staged {
        let mut staged: Staged = fresh.into_iter().map(|v| (v.id, (None, v))).collect();
        for ev in events {
            let Some(id) = event_job(ev) else { continue };
            let entry = match staged.entry(id) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let Some(v) = self.job(id) else { continue };
                    slot.insert((Some(v.state), v.clone()))
                }
            };
            apply_event(&mut entry.1, ev);
        }
        staged
    }

    /// Installs what a durable batch changed: the staged jobs (an ended job moves to the
    /// recent cache), the agents' work, and the totals.
    pub fn install(&mut self, staged: Staged, events: &[Event], net: &Network) {
        for ev in events {
            match ev {
                Event::Assigned { assignment, .. } => {
                    self.assignments.insert(assignment.id, assignment.clone());
                }
                Event::Completed { id, .. }
                | Event::Failed { id, .. }
                | Event::Cancelled { id, .. }
                | Event::Rescheduled { id, .. } => {
                    self.assignments.remove(id);
                }
                Event::Placed { attempt: 1, .. } => self.totals.placements += 1,
                Event::Refused { .. } => self.totals.refusals += 1,
                _ => {}
            }
        }
        for (id, (from, view)) in staged {
            self.totals.moved(from, &view, net);
            self.next_id = self.next_id.max(id.saturating_add(1));
            if terminal(view.state) {
                self.live.remove(&id);
                self.recent.insert(id, view);
            } else {
                self.live.insert(id, view);
            }
        }
    }
}

/// The job an event is about, if any.
pub(crate) fn event_job(ev: &Event) -> Option<u64> {
    match ev {
        Event::Submitted { id, .. }
        | Event::Admitted { id, .. }
        | Event::Refused { id, .. }
        | Event::Placed { id, .. }
        | Event::DataArrived { id, .. }
        | Event::Started { id, .. }
        | Event::Completed { id, .. }
        | Event::Failed { id, .. }
        | Event::Cancelled { id, .. }
        | Event::Rescheduled { id, .. }
        | Event::Preempted { id, .. }
        | Event::Measured { id, .. } => Some(*id),
        _ => None,
    }
}

/// A job's view after `ev`.
pub fn apply_event(v: &mut JobView, ev: &Event) {
    let at = match ev {
        Event::Submitted { at, .. }
        | Event::Admitted { at, .. }
        | Event::Refused { at, .. }
        | Event::Placed { at, .. }
        | Event::DataArrived { at, .. }
        | Event::Started { at, .. }
        | Event::Completed { at, .. }
        | Event::Failed { at, .. }
        | Event::Cancelled { at, .. }
        | Event::Rescheduled { at, .. }
        | Event::Preempted { at, .. }
        | Event::Measured { at, .. } => *at,
        _ => return,
    };
    v.updated_at = at;
    match ev {
        Event::Submitted { .. } => v.state = JobState::Submitted,
        Event::Admitted { .. } => v.state = JobState::Admitted,
        Event::Refused { rejections, .. } => {
            v.state = JobState::Refused;
            v.ended_at = Some(at);
            let mut by: BTreeMap<&str, usize> = BTreeMap::new();
            for r in rejections {
                *by.entry(r.filter.as_str()).or_default() += 1;
            }
            v.reason = Some(match rejections.as_slice() {
                // the ledger refused the hold: say by how much (R4)
                [r] if r.filter == suanwang_sched::Filter::Balance => format!("balance: {}", r.detail()),
                _ => format!(
                    "no site can take the job: {}",
                    by.iter().map(|(f, n)| format!("{n} site(s) by {f}")).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Event::Placed { site, pool, start_at, end_at, attempt, mode, .. } => {
            v.state = if *mode == suanwang_sched::TransferMode::None { JobState::Placed } else { JobState::InTransfer };
            v.site = Some(site.clone());
            v.pool = Some(pool.clone());
            v.start_at = Some(*start_at);
            v.end_at = Some(*end_at);
            v.attempts = *attempt;
            v.started_at = None;
        }
        Event::DataArrived { .. } => v.state = JobState::Placed,
        Event::Started { .. } => {
            v.state = JobState::Running;
            v.started_at = Some(at);
            // it runs for its planned time from now (the engine does the same)
            if let (Some(s), Some(e)) = (v.start_at, v.end_at) {
                v.start_at = Some(at);
                v.end_at = Some(Ts(at.0.saturating_add(e.0.saturating_sub(s.0))));
            }
        }
        Event::Completed { outcome, .. } => {
            v.state = JobState::Completed;
            v.meter = Some(outcome.meter);
            v.ended_at = Some(at);
        }
        Event::Failed { reason, meter, .. } => {
            v.state = JobState::Failed;
            v.reason = Some(reason.clone());
            v.ended_at = Some(at);
            if *meter != suanwang_engine::Meter::default() {
                v.meter = Some(*meter);
            }
        }
        Event::Cancelled { meter, .. } => {
            v.state = JobState::Cancelled;
            v.meter = Some(*meter);
            v.ended_at = Some(at);
        }
        Event::Rescheduled { reason, attempt, .. } => {
            v.attempts = *attempt;
            v.reason = Some(reason.clone());
        }
        Event::Measured { usage, .. } => v.usage = Some(*usage),
        _ => {}
    }
}

pub fn terminal(s: JobState) -> bool {
    matches!(s, JobState::Completed | JobState::Failed | JobState::Cancelled | JobState::Refused)
}

/// A state's name on the wire and in the store.
pub fn state_str(s: JobState) -> &'static str {
    match s {
        JobState::Submitted => "submitted",
        JobState::Admitted => "admitted",
        JobState::Placed => "placed",
        JobState::InTransfer => "in_transfer",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Refused => "refused",
    }
}

/// A fingerprint of a submitted spec: a key reused with another spec is refused.
pub fn fingerprint(spec: &serde_json::Value) -> u64 {
    // serde_json's maps are ordered, so equal documents print the same
    spec.to_string().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The projection row of a job view. The spec is written with a job's first row only (an
/// update leaves it), so `with_spec` is false for jobs the store has already.
pub fn job_row(v: &JobView, with_spec: bool) -> JobRow {
    let ms = |t: Option<Ts>| t.map(|t| t.0);
    JobRow {
        id: i64::try_from(v.id).unwrap_or(i64::MAX),
        tenant: v.tenant.clone(),
        name: v.name.clone(),
        kind: v.kind.clone(),
        state: state_str(v.state).to_string(),
        site: v.site.clone(),
        pool: v.pool.clone(),
        submitted_at_ms: v.submitted_at.0,
        submitted_by: v.submitted_by.clone(),
        updated_at_ms: v.updated_at.0,
        start_at_ms: ms(v.start_at),
        end_at_ms: ms(v.end_at),
        started_at_ms: ms(v.started_at),
        ended_at_ms: ms(v.ended_at),
        attempts: i64::from(v.attempts),
        reason: v.reason.clone(),
        meter: v.meter.as_ref().and_then(|m| serde_json::to_string(m).ok()),
        usage: v.usage.as_ref().and_then(|u| serde_json::to_string(u).ok()),
        spec: if with_spec { v.spec.to_string() } else { String::new() },
    }
}

/// The view of a projection row (a row this server did not write is read as far as it can be:
/// a field that does not parse is left empty, with a warning).
pub fn job_view(r: JobRow) -> JobView {
    fn parse<T: serde::de::DeserializeOwned>(id: i64, what: &str, s: Option<&str>) -> Option<T> {
        let s = s?;
        serde_json::from_str(s)
            .map_err(|e| tracing::warn!(job = id, field = what, error = %e, "unreadable field in the job projection"))
            .ok()
    }
    let state = parse::<JobState>(r.id, "state", Some(&format!("\"{}\"", r.state))).unwrap_or(JobState::Failed);
    JobView {
        id: u64::try_from(r.id).unwrap_or(0),
        name: r.name,
        tenant: r.tenant,
        kind: r.kind,
        state,
        site: r.site,
        pool: r.pool,
        start_at: r.start_at_ms.map(Ts),
        end_at: r.end_at_ms.map(Ts),
        started_at: r.started_at_ms.map(Ts),
        ended_at: r.ended_at_ms.map(Ts),
        submitted_at: Ts(r.submitted_at_ms),
        submitted_by: r.submitted_by,
        updated_at: Ts(r.updated_at_ms),
        attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
        reason: r.reason,
        meter: parse(r.id, "meter", r.meter.as_deref()),
        usage: parse(r.id, "usage", r.usage.as_deref()),
        spec: std::sync::Arc::new(serde_json::from_str(&r.spec).unwrap_or(serde_json::Value::Null)),
    }
}

/// The live part of the views, for a snapshot (history is in the store).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveSnapshot {
    live: Vec<JobView>,
    assignments: Vec<suanwang_engine::Assignment>,
    next_id: u64,
    totals: Totals,
}

impl Views {
    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            live: self.live.values().cloned().collect(),
            assignments: self.assignments.values().cloned().collect(),
            next_id: self.next_id,
            totals: self.totals.clone(),
        }
    }

    pub fn restore(s: LiveSnapshot) -> Views {
        Views {
            live: s.live.into_iter().map(|j| (j.id, j)).collect(),
            assignments: s.assignments.into_iter().map(|a| (a.id, a)).collect(),
            next_id: s.next_id.max(1),
            totals: s.totals,
            ..Views::default()
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
        started_at: None,
        ended_at: None,
        submitted_at: at,
        submitted_by: by.to_string(),
        updated_at: at,
        attempts: 0,
        reason: None,
        meter: None,
        usage: None,
        spec: std::sync::Arc::new(spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_the_last_insertions_and_no_more_than_its_cap() {
        let mut b = Bounded::new(6);
        for i in 0..100u64 {
            b.insert(i, i * 10);
            assert!(b.len() <= 6, "{} entries after {i}", b.len());
            for back in 0..3.min(i + 1) {
                assert_eq!(b.get(&(i - back)), Some(&((i - back) * 10)), "the last 3 are kept");
            }
        }
        assert_eq!(b.get(&90), None, "older ones are forgotten");
        // inserting a key again updates it and does not count it twice
        b.insert(99, 991);
        b.insert(98, 981);
        assert_eq!(b.get(&99), Some(&991));
        assert_eq!(b.get(&98), Some(&981));
        assert!(b.len() <= 6);
        let mut twice = Bounded::new(6);
        twice.insert(1, 1);
        twice.insert(1, 2);
        assert_eq!((twice.len(), twice.get(&1)), (1, Some(&2)));
    }

    #[test]
    fn fingerprints_tell_specs_apart() {
        let a = serde_json::json!({"name": "x", "work": {"run_time_s": 60}});
        let b = serde_json::json!({"work": {"run_time_s": 60}, "name": "x"});
        let c = serde_json::json!({"name": "x", "work": {"run_time_s": 61}});
        assert_eq!(fingerprint(&a), fingerprint(&b), "key order does not matter");
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
