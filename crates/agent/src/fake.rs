//! Test doubles for the agent loop: an in-memory control plane and an executor that runs
//! nothing (no server, no processes). Tests drive them: assign work, end runs, refuse reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use suanwang_api::ErrorBody;
use suanwang_api::agent::{Approval, Assignment, AssignmentsAnswer, RegisterAnswer, RegisterRequest, Report};
use tokio::sync::Notify;

use crate::control::{ControlPlane, CpError};
use crate::executor::{ExecError, ExecState, Executor, Handle, OnChange, RunSpec, Usage};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A refusal with `status` and `code`, as the server would send it.
pub fn refused(status: u16, code: &str, message: &str) -> CpError {
    CpError::Refused {
        status,
        error: ErrorBody {
            code: code.into(),
            message: message.into(),
            detail: String::new(),
            hint: String::new(),
            field: None,
        },
    }
}

/// Decides whether the fake control plane refuses a report (as JSON, the way it would reach
/// the server).
pub type ReportRule = Box<dyn Fn(&serde_json::Value, usize) -> Option<CpError> + Send>;

#[derive(Default)]
struct CpState {
    registered: bool,
    registrations: Vec<RegisterRequest>,
    assignments: Vec<Assignment>,
    /// Every report the control plane took.
    reports: Vec<Report>,
    /// Every report that reached it, taken or not.
    attempts: Vec<Report>,
    checkpoints: BTreeMap<u64, (u32, Vec<u8>)>,
    rule: Option<ReportRule>,
    /// Answer every call with this transport error (the control plane is unreachable).
    down: bool,
    /// Reports that could not reach it while it was down.
    missed: usize,
}

/// An in-memory control plane for one site.
pub struct FakeControlPlane {
    state: Mutex<CpState>,
    changed: Notify,
    identity: String,
}

impl std::fmt::Debug for FakeControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeControlPlane").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl Default for FakeControlPlane {
    fn default() -> Self {
        FakeControlPlane::new("fakecp")
    }
}

fn version(list: &[Assignment]) -> String {
    let mut keys: Vec<(u64, u32)> = list.iter().map(|a| (a.id, a.attempt)).collect();
    keys.sort_unstable();
    format!("{keys:?}")
}

impl FakeControlPlane {
    pub fn new(identity: &str) -> FakeControlPlane {
        FakeControlPlane { state: Mutex::default(), changed: Notify::new(), identity: identity.into() }
    }

    /// Replaces the site's assignments (the long-poll answers at once).
    pub fn assign(&self, list: Vec<Assignment>) {
        lock(&self.state).assignments = list;
        self.changed.notify_waiters();
    }

    /// Refuses reports for which `rule` gives an error; it sees the report's JSON and its size
    /// in bytes.
    pub fn refuse_reports(&self, rule: ReportRule) {
        lock(&self.state).rule = Some(rule);
    }

    /// Makes every call fail as if the control plane could not be reached (or reachable again).
    pub fn set_down(&self, down: bool) {
        lock(&self.state).down = down;
        self.changed.notify_waiters();
    }

    /// Forgets the site's registration (as a control plane that lost its state).
    pub fn forget_site(&self) {
        lock(&self.state).registered = false;
        self.changed.notify_waiters();
    }

    pub fn registrations(&self) -> Vec<RegisterRequest> {
        lock(&self.state).registrations.clone()
    }

    /// The reports taken.
    pub fn reports(&self) -> Vec<Report> {
        lock(&self.state).reports.clone()
    }

    /// Reports that could not reach it while it was down.
    pub fn missed_reports(&self) -> usize {
        lock(&self.state).missed
    }

    /// Every report sent, taken or refused.
    pub fn report_attempts(&self) -> Vec<Report> {
        lock(&self.state).attempts.clone()
    }

    /// Waits until `pred` holds of the reports taken, at most `timeout`; the reports then.
    pub async fn wait_reports(&self, timeout: Duration, pred: impl Fn(&[Report]) -> bool) -> Option<Vec<Report>> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let reports = self.reports();
            if pred(&reports) {
                return Some(reports);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let _ = tokio::time::timeout_at(deadline.into(), changed).await;
        }
    }

    /// Waits until the site is registered `n` times, at most `timeout`.
    pub async fn wait_registrations(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.registrations().len() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout_at(deadline.into(), changed).await;
        }
    }

    fn check_up(&self) -> Result<(), CpError> {
        if lock(&self.state).down { Err(CpError::Transport("connection refused (fake)".into())) } else { Ok(()) }
    }
}

impl ControlPlane for FakeControlPlane {
    async fn register(&self, req: &RegisterRequest) -> Result<RegisterAnswer, CpError> {
        self.check_up()?;
        {
            let mut s = lock(&self.state);
            s.registered = true;
            s.registrations.push(req.clone());
        }
        self.changed.notify_waiters();
        Ok(RegisterAnswer {
            site: req.site.id.clone(),
            registered: true,
            approval: Approval::Approved,
            control_plane: self.identity.clone(),
            probe: None,
        })
    }

    async fn assignments(&self, wait: Duration, known: Option<&str>) -> Result<AssignmentsAnswer, CpError> {
        let deadline = Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            self.check_up()?;
            let (registered, list) = {
                let s = lock(&self.state);
                (s.registered, s.assignments.clone())
            };
            if !registered {
                return Err(refused(404, "not_found", "no registered site of that name"));
            }
            let v = version(&list);
            if known.is_none_or(|k| k != v) || Instant::now() >= deadline {
                return Ok(AssignmentsAnswer {
                    site: "fake".into(),
                    assignments: list,
                    version: v,
                    control_plane: self.identity.clone(),
                });
            }
            let _ = tokio::time::timeout_at(deadline.into(), changed).await;
        }
    }

    async fn report(&self, report: &Report) -> Result<(), CpError> {
        if self.check_up().is_err() {
            lock(&self.state).missed += 1;
            self.changed.notify_waiters();
            return self.check_up();
        }
        // as the server sees it: JSON (a NaN becomes null, which a number field refuses)
        let text = serde_json::to_string(report).map_err(|e| CpError::Transport(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| CpError::Transport(e.to_string()))?;
        let result = {
            let mut s = lock(&self.state);
            s.attempts.push(report.clone());
            let refusal = match serde_json::from_str::<Report>(&text) {
                Err(e) => Some(refused(422, "invalid_report", &format!("the report is not valid: {e}"))),
                Ok(_) => s.rule.as_ref().and_then(|rule| rule(&json, text.len())),
            };
            let assigned = s.assignments.iter().any(|a| (a.id, a.attempt) == (report.id, report.attempt));
            match refusal {
                Some(e) => Err(e),
                None if !assigned => Err(refused(409, "stale_report", "not assigned to this site")),
                None => {
                    s.reports.push(report.clone());
                    // a reported job is no longer assigned
                    s.assignments.retain(|a| (a.id, a.attempt) != (report.id, report.attempt));
                    Ok(())
                }
            }
        };
        self.changed.notify_waiters();
        result
    }

    async fn put_checkpoint(&self, id: u64, attempt: u32, data: Vec<u8>) -> Result<(), CpError> {
        self.check_up()?;
        lock(&self.state).checkpoints.insert(id, (attempt, data));
        Ok(())
    }

    async fn get_checkpoint(&self, id: u64) -> Result<Option<Vec<u8>>, CpError> {
        self.check_up()?;
        Ok(lock(&self.state).checkpoints.get(&id).map(|(_, d)| d.clone()))
    }
}

#[derive(Debug, Clone)]
struct FakeRun {
    spec: RunSpec,
    state: ExecState,
    usage: Usage,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// An executor that runs nothing: runs stay running until a test ends them with [`finish`]
/// (which fires the run's event, as a child's exit does).
///
/// [`finish`]: FakeExecutor::finish
pub struct FakeExecutor {
    runs: Mutex<BTreeMap<Handle, FakeRun>>,
    watchers: Mutex<BTreeMap<Handle, OnChange>>,
    started: Mutex<Vec<RunSpec>>,
    cancelled: Mutex<Vec<Handle>>,
    journal: Mutex<Vec<String>>,
    next: AtomicU64,
    /// Whether it sends events (like the process executor), or must be polled (like Slurm).
    events: bool,
    /// `poll` fails (the executor does not answer).
    silent: Mutex<bool>,
}

impl std::fmt::Debug for FakeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeExecutor").field("events", &self.events).finish_non_exhaustive()
    }
}

impl FakeExecutor {
    /// `events`: it tells when a run ends (else the agent must poll it).
    pub fn new(events: bool) -> FakeExecutor {
        FakeExecutor {
            runs: Mutex::default(),
            watchers: Mutex::default(),
            started: Mutex::default(),
            cancelled: Mutex::default(),
            journal: Mutex::default(),
            next: AtomicU64::new(1),
            events,
            silent: Mutex::new(false),
        }
    }

    /// Every run started (not adopted), in order.
    pub fn started(&self) -> Vec<RunSpec> {
        lock(&self.started).clone()
    }

    /// Every run cancelled, in order.
    pub fn cancelled(&self) -> Vec<Handle> {
        lock(&self.cancelled).clone()
    }

    /// What it did, in order: `start <job>-<attempt>`, `cancel <job>-<attempt>`.
    pub fn journal(&self) -> Vec<String> {
        lock(&self.journal).clone()
    }

    /// The handle of job `id`'s attempt `attempt`, if it was started or adopted.
    pub fn handle_of(&self, id: u64, attempt: u32) -> Option<Handle> {
        lock(&self.runs).iter().find(|(_, r)| (r.spec.job_id, r.spec.attempt) == (id, attempt)).map(|(h, _)| h.clone())
    }

    /// The state of a run.
    pub fn state(&self, handle: &Handle) -> Option<ExecState> {
        lock(&self.runs).get(handle).map(|r| r.state.clone())
    }

    /// A run an earlier instance left (it can be adopted with its spec's run id).
    pub fn leave(&self, spec: RunSpec) -> Handle {
        let h = Handle(format!("fake:{}", self.next.fetch_add(1, Ordering::Relaxed)));
        let run = FakeRun { spec, state: ExecState::Running, usage: Usage::default(), stdout: vec![], stderr: vec![] };
        lock(&self.runs).insert(h.clone(), run);
        h
    }

    /// Ends a run with `state`, `usage` and output; fires its event.
    pub fn finish(&self, handle: &Handle, state: ExecState, usage: Usage, stdout: &[u8], stderr: &[u8]) {
        if let Some(r) = lock(&self.runs).get_mut(handle) {
            r.state = state;
            r.usage = usage;
            r.stdout = stdout.to_vec();
            r.stderr = stderr.to_vec();
        }
        let watcher = lock(&self.watchers).get(handle).cloned();
        if let Some(w) = watcher {
            w(handle);
        }
    }

    /// Makes `poll` fail (or answer again).
    pub fn set_silent(&self, silent: bool) {
        *lock(&self.silent) = silent;
    }
}

impl Executor for FakeExecutor {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start(&self, spec: &RunSpec) -> Result<Handle, ExecError> {
        if spec.command == "no-such-command" {
            return Err(ExecError::Start { command: spec.command.clone(), reason: "not found".into() });
        }
        lock(&self.started).push(spec.clone());
        lock(&self.journal).push(format!("start {}-{}", spec.job_id, spec.attempt));
        Ok(self.leave(spec.clone()))
    }

    fn poll(&self, handle: &Handle) -> Result<(ExecState, Usage), ExecError> {
        if *lock(&self.silent) {
            return Err(ExecError::Io("the executor does not answer (fake)".into()));
        }
        let runs = lock(&self.runs);
        let r = runs.get(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        Ok((r.state.clone(), r.usage))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(5)
    }

    fn check_interval(&self) -> Duration {
        Duration::from_millis(50)
    }

    fn watch(&self, handle: &Handle, on_change: OnChange) -> bool {
        if !self.events {
            return false;
        }
        lock(&self.watchers).insert(handle.clone(), Arc::clone(&on_change));
        // as a pidfd of a process that already exited: a run that ended before it was watched
        // is signalled at once
        let ended = lock(&self.runs).get(handle).is_some_and(|r| r.state != ExecState::Running);
        if ended {
            on_change(handle);
        }
        true
    }

    fn cancel(&self, handle: &Handle) -> Result<(), ExecError> {
        lock(&self.cancelled).push(handle.clone());
        if let Some(r) = lock(&self.runs).get_mut(handle) {
            lock(&self.journal).push(format!("cancel {}-{}", r.spec.job_id, r.spec.attempt));
            if r.state == ExecState::Running {
                r.state = ExecState::Cancelled;
            }
        }
        Ok(())
    }

    fn logs(&self, handle: &Handle) -> Result<(String, String), ExecError> {
        let (out, err) = self.logs_bytes(handle)?;
        Ok((String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned()))
    }

    fn logs_bytes(&self, handle: &Handle) -> Result<(Vec<u8>, Vec<u8>), ExecError> {
        let runs = lock(&self.runs);
        let r = runs.get(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        Ok((r.stdout.clone(), r.stderr.clone()))
    }

    fn running(&self) -> Result<Vec<Handle>, ExecError> {
        Ok(lock(&self.runs).iter().filter(|(_, r)| r.state == ExecState::Running).map(|(h, _)| h.clone()).collect())
    }

    fn adopt(&self, spec: &RunSpec) -> Result<Option<Handle>, ExecError> {
        Ok(lock(&self.runs)
            .iter()
            .find(|(_, r)| {
                (r.spec.job_id, r.spec.attempt) == (spec.job_id, spec.attempt)
                    && !spec.run_id.is_empty()
                    && r.spec.run_id == spec.run_id
            })
            .map(|(h, _)| h.clone()))
    }
}
