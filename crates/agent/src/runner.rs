//! The agent loop (issue 11 item 5): registers the site, follows its assignments, and runs
//! them through an executor — behind the [`ControlPlane`] trait, so it runs against the real
//! server over HTTP or an in-memory fake.
//!
//! Three sources wake the loop: a new answer of the assignments long-poll (a separate task,
//! which is also the heartbeat), an executor's event that a run changed (the child's exit: a
//! run's end is reported the moment it happens, not at the next check), and a tick (every
//! second; the executor's `check_interval` while a run has no event, as Slurm runs). Each
//! wake-up observes, asks [`reconcile`] what to do, and does it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use suanwang_api::agent::{
    Approval, Assignment, AssignmentsAnswer, LOG_TAIL_BYTES, RegisterRequest, Report, stream_tail,
};
use tokio::sync::{mpsc, watch};

use crate::checkpoint;
use crate::control::{ControlPlane, CpError};
use crate::executor::{ExecState, Executor, Handle, OnChange, RunSpec, Usage};
use crate::reconcile::{Action, Followed, OnDisk, RunKey, reconcile};
use crate::sandbox::RunUser;
use crate::users::Users;
use crate::{AgentError, run_id_in, work_dir};

/// What the loop needs besides its control plane and executor.
#[derive(Debug, Clone)]
pub struct Config {
    /// The site this agent serves.
    pub site: String,
    /// The agent's data directory (absolute: paths under it are handed to runs).
    pub data: PathBuf,
    /// What the agent registers (and registers again when the control plane forgot it).
    pub registration: RegisterRequest,
    /// How long a run may go unanswered by its executor before it is reported failed.
    pub lost_after: Duration,
    /// Whom runs execute as.
    pub users: Users,
    /// Run directories must let run users pass (Slurm enters them as the run user).
    pub traversable: bool,
    /// How long one long-poll for assignments waits (it is the heartbeat too).
    pub poll_wait: Duration,
    /// How often the loop looks at every run (checkpoints, retries, runs without events)
    /// when nothing happens: 1 s. Runs whose executor has no events are looked at every
    /// `check_interval` of the executor instead.
    pub idle_check: Duration,
}

/// The file in the agent's data directory naming the control plane its runs belong to.
pub const CONTROL_PLANE_FILE: &str = "control-plane";

/// How long the loop may go without beginning a round before the heartbeat stops vouching
/// for it (a wedged loop then loses its site, and its jobs move).
pub const WATCHDOG: Duration = Duration::from_mins(2);

/// The tails a report tries, largest first: a report refused for size (413) is sent again
/// with the next.
const TAILS: [usize; 5] = [LOG_TAIL_BYTES, 16 * 1024, 4 * 1024, 512, 0];

/// How a run ended, as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    state: ExecState,
    usage: Usage,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// A run this agent follows.
#[derive(Debug)]
struct Run {
    /// `None` when it never started (its failure is to be reported).
    handle: Option<Handle>,
    followed: Followed,
    /// Its executor sends events for it (else it is polled every check).
    watched: bool,
    /// Since when its executor has failed to answer for it.
    unanswered: Option<Instant>,
    outcome: Option<Outcome>,
    /// The next report attempt after a transient failure.
    retry_at: Option<Instant>,
    retries: u32,
    checkpoint: Option<Sent>,
}

impl Run {
    fn started(handle: Handle, watched: bool, checkpoint: Option<Sent>) -> Run {
        Run {
            handle: Some(handle),
            followed: Followed::Running,
            watched,
            unanswered: None,
            outcome: None,
            retry_at: None,
            retries: 0,
            checkpoint,
        }
    }

    fn ended(handle: Option<Handle>, outcome: Outcome) -> Run {
        Run {
            handle,
            followed: Followed::Ended,
            watched: false,
            unanswered: None,
            outcome: Some(outcome),
            retry_at: None,
            retries: 0,
            checkpoint: None,
        }
    }
}

/// What became of a run's checkpoint directory at the control plane.
#[derive(Debug)]
struct Sent {
    dir: PathBuf,
    /// The directory's signature when last sent (or refused: the same content is not sent again).
    signature: u64,
    /// When it was last looked at: a run's checkpoints are sent at most every `every`.
    looked: Instant,
    every: Duration,
    /// The run's user (its checkpoint is packed with its rights).
    user: Option<RunUser>,
}

/// What became of a report.
#[derive(Debug, PartialEq)]
enum Sending {
    /// Taken, or refused for good (stale: the job moved on): nothing more to send.
    Done,
    /// Not reached, or a server error: try again later.
    Retry,
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `(job, attempt)` of a run directory's name (`<job>-<attempt>`).
fn run_dir_name(name: &str) -> Option<RunKey> {
    let (id, attempt) = name.split_once('-')?;
    Some((id.parse().ok()?, attempt.parse().ok()?))
}

/// The run directories in `data`: `(job, attempt) → path`.
pub fn run_dirs(data: &Path) -> BTreeMap<RunKey, PathBuf> {
    std::fs::read_dir(data)
        .map(|d| {
            d.flatten().filter_map(|e| run_dir_name(&e.file_name().to_string_lossy()).map(|k| (k, e.path()))).collect()
        })
        .unwrap_or_default()
}

/// What a run directory holds, for [`reconcile`].
fn on_disk(dir: &Path) -> OnDisk {
    OnDisk { run_id: run_id_in(dir), reported: dir.join("reported").exists() }
}

/// The report of `outcome` with streams cut to their last `tail` bytes.
fn report_of(key: RunKey, outcome: &Outcome, tail: usize) -> Option<Report> {
    let (succeeded, reason) = match &outcome.state {
        ExecState::Succeeded => (true, None),
        ExecState::Failed { reason, .. } => (false, Some(reason.clone())),
        ExecState::Cancelled => (false, Some("cancelled at the site".to_string())),
        ExecState::Running => return None,
    };
    let (stdout, stdout_base64) = stream_tail(&outcome.stdout, tail);
    let (stderr, stderr_base64) = stream_tail(&outcome.stderr, tail);
    Some(Report {
        id: key.0,
        attempt: key.1,
        succeeded,
        reason,
        cpu_seconds: outcome.usage.cpu_seconds,
        peak_memory_mib: outcome.usage.peak_memory_mib,
        wall_seconds: outcome.usage.wall_seconds,
        stdout,
        stderr,
        stdout_base64,
        stderr_base64,
    })
}

/// The site's agent.
pub struct Agent<C: ControlPlane> {
    cp: Arc<C>,
    executor: Arc<dyn Executor>,
    config: Config,
    runs: BTreeMap<RunKey, Run>,
    /// The first round after a start stops runs an earlier instance left.
    first_round: bool,
    /// Runs given up on, or whose cancel failed: stopped once their executor answers again.
    abandoned: Vec<Handle>,
    /// When the loop last began a round (epoch ms), for the heartbeat's watchdog.
    progress: Arc<AtomicI64>,
    /// Executor events: a run changed.
    changed_tx: mpsc::UnboundedSender<Handle>,
    changed_rx: mpsc::UnboundedReceiver<Handle>,
}

impl<C: ControlPlane> std::fmt::Debug for Agent<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("site", &self.config.site).field("runs", &self.runs.len()).finish_non_exhaustive()
    }
}

impl<C: ControlPlane> Agent<C> {
    pub fn new(cp: Arc<C>, executor: Arc<dyn Executor>, config: Config) -> Agent<C> {
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        Agent {
            cp,
            executor,
            config,
            runs: BTreeMap::new(),
            first_round: true,
            abandoned: vec![],
            progress: Arc::new(AtomicI64::new(epoch_ms())),
            changed_tx,
            changed_rx,
        }
    }

    /// Registers, then serves until the process ends (or the poller stops).
    pub async fn run(mut self) -> Result<(), AgentError> {
        self.register_retrying().await?;
        let (tx, mut answers) = watch::channel::<Option<AssignmentsAnswer>>(None);
        let (lost_tx, mut lost) = mpsc::channel::<()>(1);
        tokio::spawn(poll_assignments(
            Arc::clone(&self.cp),
            Arc::clone(&self.progress),
            self.config.poll_wait,
            tx,
            lost_tx,
        ));
        let mut assigned: Option<Vec<Assignment>> = None;
        // the time of the last look at every run: the next is due a tick after it, however
        // often answers and events wake the loop meanwhile (a fresh sleep per wake-up never
        // ended while assignments kept coming, and a run whose event was missed waited forever)
        let mut last_check = Instant::now();
        loop {
            self.progress.store(epoch_ms(), Ordering::Relaxed);
            let mut changed = BTreeSet::new();
            let mut check_all = false;
            let due = self.next_check(last_check);
            tokio::select! {
                r = answers.changed() => {
                    if r.is_err() {
                        return Err(AgentError::Unreachable("the assignments poller stopped".into()));
                    }
                    if let Some(a) = answers.borrow_and_update().as_ref() {
                        assigned = Some(a.assignments.clone());
                    }
                }
                Some(h) = self.changed_rx.recv() => {
                    changed.insert(h);
                    while let Ok(h) = self.changed_rx.try_recv() {
                        changed.insert(h);
                    }
                }
                Some(()) = lost.recv() => {
                    // the control plane does not know this site (its state was lost): again
                    if let Err(e) = self.register().await {
                        tracing::warn!(error = %e, "registering again failed; will retry");
                    }
                    continue;
                }
                () = tokio::time::sleep_until(due.into()) => {
                    check_all = true;
                    last_check = Instant::now();
                }
            }
            let Some(list) = &assigned else { continue };
            let list = list.clone();
            self.round(&list, &changed, check_all).await;
        }
    }

    /// When the loop next looks at every run, events or not: `idle_check` after the last look,
    /// or the executor's check interval while a run has no events (Slurm), or a report's retry.
    fn next_check(&self, last_check: Instant) -> Instant {
        let mut tick = self.config.idle_check;
        if self.runs.values().any(|r| r.followed == Followed::Running && !r.watched) {
            tick = tick.min(self.executor.check_interval());
        }
        let due = last_check + tick;
        self.runs.values().filter_map(|r| r.retry_at).fold(due, Instant::min)
    }

    /// One round: learn which runs changed (`changed`, or every run when `check_all`), then
    /// carry out what [`reconcile`] asks for `list`.
    pub(crate) async fn round(&mut self, list: &[Assignment], changed: &BTreeSet<Handle>, check_all: bool) {
        self.observe(changed, check_all).await;
        // the directories reconcile must know of: all of them once after a start (runs an
        // earlier instance left), else those of assignments not followed yet
        let mut disk = BTreeMap::new();
        if self.first_round {
            for (key, dir) in run_dirs(&self.config.data) {
                if !self.runs.contains_key(&key) {
                    disk.insert(key, on_disk(&dir));
                }
            }
        } else {
            for a in list {
                let key = (a.id, a.attempt);
                let dir = self.run_dir(key);
                if !self.runs.contains_key(&key) && dir.exists() {
                    disk.insert(key, on_disk(&dir));
                }
            }
        }
        let followed: BTreeMap<RunKey, Followed> = self.runs.iter().map(|(k, r)| (*k, r.followed)).collect();
        let actions = reconcile(&followed, list, &disk, self.first_round);
        self.first_round = false;
        for action in actions {
            self.act(action).await;
        }
        if check_all {
            self.keep_checkpoints().await;
            self.stop_abandoned().await;
        }
    }

    /// Polls the runs that changed (or all): an ended one gets its outcome, for its report.
    async fn observe(&mut self, changed: &BTreeSet<Handle>, check_all: bool) {
        let keys: Vec<RunKey> = self
            .runs
            .iter()
            .filter(|(_, r)| r.followed == Followed::Running)
            .filter(|(_, r)| check_all || r.handle.as_ref().is_some_and(|h| changed.contains(h)))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(h) = self.runs.get(&key).and_then(|r| r.handle.clone()) else { continue };
            let h2 = h.clone();
            let Ok(polled) = self.exec(move |e| e.poll(&h2)).await else { continue };
            let (state, usage) = match polled {
                Ok(x) => {
                    if let Some(r) = self.runs.get_mut(&key) {
                        r.unanswered = None;
                    }
                    x
                }
                Err(e) => {
                    // the executor does not answer for this run (Slurm down, run vanished):
                    // keep serving the others, and give up on this one after `lost_after`
                    let Some(r) = self.runs.get_mut(&key) else { continue };
                    let since = *r.unanswered.get_or_insert_with(Instant::now);
                    tracing::warn!(id = key.0, attempt = key.1, error = %e, for_s = since.elapsed().as_secs(), "cannot poll the run");
                    if since.elapsed() < self.config.lost_after {
                        continue;
                    }
                    self.abandoned.push(h.clone());
                    let reason = format!(
                        "the {} executor lost the run (no answer for {} s): {e}",
                        self.executor.name(),
                        since.elapsed().as_secs()
                    );
                    let outcome = Outcome {
                        state: ExecState::Failed { reason, exit_code: None },
                        usage: Usage::default(),
                        stdout: vec![],
                        stderr: vec![],
                    };
                    *r = Run::ended(Some(h), outcome);
                    continue;
                }
            };
            if !state.is_done() {
                continue;
            }
            let h2 = h.clone();
            let (stdout, stderr) = match self.exec(move |e| e.logs_bytes(&h2)).await {
                Ok(Ok(logs)) => logs,
                _ => (vec![], vec![]),
            };
            tracing::debug!(id = key.0, attempt = key.1, ?state, "the run ended");
            if let Some(r) = self.runs.get_mut(&key) {
                *r = Run::ended(Some(h), Outcome { state, usage, stdout, stderr });
            }
        }
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Withdraw(key) => {
                let Some(run) = self.runs.remove(&key) else { return };
                let Some(h) = run.handle else { return };
                // withdrawn (cancelled, or moved after this site was lost): stop it, and keep
                // trying while the executor does not answer
                let h2 = h.clone();
                match self.exec(move |e| e.cancel(&h2)).await {
                    Ok(Ok(())) => tracing::info!(id = key.0, attempt = key.1, "stopped a withdrawn run"),
                    Ok(Err(e)) => {
                        tracing::warn!(id = key.0, attempt = key.1, error = %e, "could not stop a withdrawn run yet; will retry");
                        self.abandoned.push(h);
                    }
                    Err(e) => {
                        tracing::warn!(id = key.0, error = %e, "could not stop a withdrawn run; will retry");
                        self.abandoned.push(h);
                    }
                }
            }
            Action::Forget(key) => {
                self.runs.remove(&key);
            }
            Action::StopLeft(key) => {
                let dir = self.run_dir(key);
                if let Some(h) = self.stop_left_run(key, &dir).await {
                    self.abandoned.push(h);
                }
            }
            Action::SetAside(key) => {
                // this job and attempt number's directory holds another run (of another
                // control plane, or from before its run ids): never adopted; set aside
                tracing::warn!(id = key.0, attempt = key.1, "the run directory holds another run: set aside");
                let dir = self.run_dir(key);
                if let Some(h) = self.stop_left_run(key, &dir).await {
                    self.abandoned.push(h);
                }
                let aside = self.config.data.join("previous-unknown");
                let _ = std::fs::create_dir_all(&aside);
                let _ = std::fs::rename(&dir, aside.join(format!("{}-{}-{}", key.0, key.1, epoch_ms())));
            }
            Action::Adopt(a) => self.start(&a, true).await,
            Action::Start(a) => self.start(&a, false).await,
            Action::Report(key) => self.report(key).await,
        }
    }

    /// Where one attempt of a job keeps its files.
    fn run_dir(&self, key: RunKey) -> PathBuf {
        self.config.data.join(format!("{}-{}", key.0, key.1))
    }

    /// Starts `a` — or, with `adopt`, follows the run an earlier instance started for it
    /// (starting it when there is none after all).
    async fn start(&mut self, a: &Assignment, adopt: bool) {
        let key = (a.id, a.attempt);
        let user = self.config.users.of(&a.tenant);
        let mut env: Vec<(String, String)> = a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut spec = RunSpec {
            job_id: a.id,
            attempt: a.attempt,
            command: a.command.clone(),
            args: a.args.clone(),
            env: vec![],
            dir: self.run_dir(key),
            run_id: a.run_id.clone(),
            user: user.clone(),
            memory_mib: a.memory_mib.max(64),
            time_limit: Duration::from_secs(a.time_limit_s.max(1)),
            cpus: a.cores,
        };
        let mut sent = None;
        if let Some(every) = a.checkpoint_s {
            // the run writes its checkpoints here; a later attempt finds the newest here
            let dir = match crate::prepare(&spec, self.config.traversable) {
                Ok(d) => work_dir(&d).join("checkpoint"),
                Err(e) => {
                    tracing::warn!(id = a.id, error = %e, "cannot make the run's directory; will retry");
                    return;
                }
            };
            if !dir.exists() && a.attempt > 1 {
                match self.restore_checkpoint(a.id, &dir, user.clone()).await {
                    Ok(true) => tracing::info!(id = a.id, attempt = a.attempt, "resuming from its checkpoint"),
                    Ok(false) => tracing::info!(id = a.id, attempt = a.attempt, "no checkpoint yet: from the start"),
                    Err(e) => tracing::warn!(id = a.id, error = %e, "checkpoint not restored: from the start"),
                }
            }
            if std::fs::create_dir_all(&dir).is_ok() {
                let _ = crate::give(&dir, user.as_ref());
            }
            let abs = dir.canonicalize().unwrap_or(dir);
            env.push(("SUANWANG_CHECKPOINT_DIR".into(), abs.display().to_string()));
            sent = Some(Sent {
                signature: checkpoint::signature(&abs),
                dir: abs,
                looked: Instant::now(),
                every: Duration::from_secs(u64::from(every.max(1))),
                user: user.clone(),
            });
        }
        spec.env = env;
        let started = self
            .exec(move |e| {
                if adopt {
                    match e.adopt(&spec) {
                        Ok(Some(h)) => return (Ok(h), true),
                        Ok(None) => {}
                        Err(err) => tracing::warn!(id = spec.job_id, error = %err, "could not adopt; starting afresh"),
                    }
                }
                (e.start(&spec), false)
            })
            .await;
        match started {
            Ok((Ok(h), adopted)) => {
                let how = if adopted { "adopted a run from before a restart" } else { "started" };
                tracing::info!(id = a.id, attempt = a.attempt, handle = %h.0, "{how}");
                let tx = self.changed_tx.clone();
                let on_change: OnChange = Arc::new(move |h: &Handle| {
                    let _ = tx.send(h.clone());
                });
                let h2 = h.clone();
                let watched = self.exec(move |e| e.watch(&h2, on_change)).await.unwrap_or(false);
                self.runs.insert(key, Run::started(h, watched, sent));
            }
            Ok((Err(e), _)) => {
                tracing::warn!(id = a.id, attempt = a.attempt, error = %e, "could not start");
                let outcome = Outcome {
                    state: ExecState::Failed { reason: e.to_string(), exit_code: None },
                    usage: Usage::default(),
                    stdout: vec![],
                    stderr: e.to_string().into_bytes(),
                };
                self.runs.insert(key, Run::ended(None, outcome));
            }
            Err(e) => tracing::warn!(id = a.id, error = %e, "could not start; will retry"),
        }
    }

    /// Reports how run `key` ended: trimmed and sent again when refused for size, turned into
    /// a failure with the refusal as its reason when refused as implausible or invalid, tried
    /// again later when the control plane cannot be reached — never left unreported.
    async fn report(&mut self, key: RunKey) {
        let Some(run) = self.runs.get(&key) else { return };
        if run.retry_at.is_some_and(|at| at > Instant::now()) {
            return;
        }
        let Some(outcome) = run.outcome.clone() else { return };
        let (sending, outcome) = self.send_report(key, outcome).await;
        let Some(run) = self.runs.get_mut(&key) else { return };
        run.outcome = Some(outcome);
        match sending {
            Sending::Done => {
                run.followed = Followed::Reported;
                run.retry_at = None;
                // reported: a later instance must not take this directory for a live run
                let _ = std::fs::write(self.run_dir(key).join("reported"), b"");
            }
            Sending::Retry => {
                run.retries = run.retries.saturating_add(1);
                let backoff = Duration::from_millis(200u64.saturating_mul(1 << run.retries.min(5)));
                run.retry_at = Some(Instant::now() + backoff);
            }
        }
    }

    /// Sends the report of `outcome`; what became of it, and the outcome to send next time (a
    /// refused report becomes a failure with the refusal as its reason).
    async fn send_report(&self, key: RunKey, mut outcome: Outcome) -> (Sending, Outcome) {
        let mut tails = TAILS.iter().copied();
        let mut tail = tails.next().unwrap_or(0);
        let mut failure_sent = false;
        loop {
            let Some(report) = report_of(key, &outcome, tail) else { return (Sending::Done, outcome) };
            let succeeded = report.succeeded;
            let err = match self.cp.report(&report).await {
                Ok(()) => {
                    tracing::info!(id = key.0, attempt = key.1, succeeded, "reported");
                    return (Sending::Done, outcome);
                }
                Err(e) => e,
            };
            match (err.status(), err.code()) {
                (Some(413), _) => {
                    // too large for the control plane: a shorter tail (the whole output stays
                    // in the run's directory on the site)
                    if let Some(t) = tails.next() {
                        tracing::warn!(
                            id = key.0,
                            attempt = key.1,
                            tail,
                            next = t,
                            "report refused for size; trimming"
                        );
                        tail = t;
                        continue;
                    }
                    if failure_sent {
                        tracing::error!(id = key.0, attempt = key.1, error = %err, "even the shortest failure report was refused for size");
                        return (Sending::Done, outcome);
                    }
                    outcome = failure(outcome, &format!("the site's report was refused for size: {err}"));
                    failure_sent = true;
                    tail = 0;
                }
                (Some(409), _) => {
                    tracing::warn!(id = key.0, attempt = key.1, error = %err, "report refused as stale: the job moved on");
                    return (Sending::Done, outcome);
                }
                (Some(404), _) => {
                    // the control plane lost this site: it is registered again, then reported
                    tracing::warn!(id = key.0, attempt = key.1, error = %err, "report refused: site unknown; will retry");
                    return (Sending::Retry, outcome);
                }
                (Some(400 | 422), code) if !failure_sent => {
                    // implausible use (no control group held its CPU rate, say) or a body the
                    // control plane cannot take (a NaN measured): the run ends as failed with
                    // the reason, billed nothing
                    let why = if code == Some("implausible_report") {
                        format!("the site's usage report was refused: {err}")
                    } else {
                        format!("the site's report was refused as invalid: {err}")
                    };
                    tracing::warn!(id = key.0, attempt = key.1, reason = %why, "report refused; reporting a failure");
                    let keep_output = code == Some("implausible_report");
                    outcome = failure(outcome, &why);
                    if !keep_output {
                        outcome.stdout.clear();
                        outcome.stderr.clear();
                    }
                    failure_sent = true;
                }
                _ if err.is_final() => {
                    tracing::error!(id = key.0, attempt = key.1, error = %err, "report refused");
                    return (Sending::Done, outcome);
                }
                _ => {
                    tracing::warn!(id = key.0, attempt = key.1, error = %err, "report not sent; will retry");
                    return (Sending::Retry, outcome);
                }
            }
        }
    }

    /// Runs a blocking executor call on the blocking pool, so the runtime (the server's too,
    /// in `suanwang up`) keeps serving meanwhile.
    async fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Executor) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let e = Arc::clone(&self.executor);
        tokio::task::spawn_blocking(move || f(e.as_ref())).await
    }

    /// Registers, retrying while the server may still be starting (a refusal is final).
    async fn register_retrying(&self) -> Result<(), AgentError> {
        let mut tries = 0;
        loop {
            match self.register().await {
                Ok(()) => return Ok(()),
                Err(e @ (AgentError::Refused(_) | AgentError::Setup(_))) => return Err(e),
                Err(e) => {
                    tries += 1;
                    if tries > 100 {
                        return Err(AgentError::Unreachable(format!("cannot reach the server (tried for 20 s): {e}")));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn register(&self) -> Result<(), AgentError> {
        let site = &self.config.site;
        let answer = match self.cp.register(&self.config.registration).await {
            Ok(a) => a,
            Err(e) if e.is_final() => {
                let (status, message, hint) = match &e {
                    CpError::Refused { status, error } => (*status, error.message.clone(), error.hint.clone()),
                    _ => (0, e.to_string(), String::new()),
                };
                let hint = if hint.is_empty() { String::new() } else { format!(" ({hint})") };
                return Err(AgentError::Refused(format!(
                    "the server refused to register site {site}: {status} {message}{hint}"
                )));
            }
            Err(e) => return Err(AgentError::Unreachable(format!("registering site {site}: {e}"))),
        };
        let d = &self.config.registration.detected;
        tracing::info!(site, cores = d.cores, memory_mib = d.memory_mib, approval = ?answer.approval, "registered");
        if answer.approval == Approval::Pending {
            tracing::warn!(site, "the site is pending: it takes no work until the operator approves it");
        }
        self.serve_control_plane(&answer.control_plane).await
    }

    /// Records which control plane this data directory serves. Runs left by another one (a
    /// control plane with a fresh database numbers its jobs from 1 again) are stopped and their
    /// directories moved to `previous-<its id>/`: never adopted, never reported as this one's.
    async fn serve_control_plane(&self, id: &str) -> Result<(), AgentError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(AgentError::Refused(format!("the server named itself {id:?}, not a control-plane id")));
        }
        let data = &self.config.data;
        let io = |what: String, e: std::io::Error| AgentError::Setup(format!("{what}: {e}"));
        let file = data.join(CONTROL_PLANE_FILE);
        let before = std::fs::read_to_string(&file).ok().map(|s| s.trim().to_string());
        if before.as_deref() == Some(id) {
            return Ok(());
        }
        let runs = run_dirs(data);
        if !runs.is_empty() {
            let old = before.unwrap_or_else(|| "unknown".into());
            tracing::warn!(
                data = %data.display(), previous = %old, now = id,
                "this data directory served another control plane: its runs are stopped and set aside, not adopted"
            );
            let aside = data.join(format!("previous-{old}"));
            std::fs::create_dir_all(&aside).map_err(|e| io(format!("creating {}", aside.display()), e))?;
            for (key, dir) in runs {
                self.stop_left_run(key, &dir).await;
                let _ = std::fs::rename(&dir, aside.join(format!("{}-{}", key.0, key.1)));
            }
        }
        std::fs::write(&file, id).map_err(|e| io(format!("writing {}", file.display()), e))
    }

    /// Stops whatever still runs in the run directory `dir` (left by an earlier instance);
    /// a failed stop is returned, to be retried.
    async fn stop_left_run(&self, key: RunKey, dir: &Path) -> Option<Handle> {
        let run_id = run_id_in(dir)?;
        let spec = RunSpec {
            job_id: key.0,
            attempt: key.1,
            command: String::new(),
            args: vec![],
            env: vec![],
            dir: dir.to_path_buf(),
            run_id,
            user: None,
            // only adopted to be stopped: no limits apply
            memory_mib: u64::MAX,
            time_limit: Duration::MAX,
            cpus: 1,
        };
        let stopped = self
            .exec(move |e| {
                let Ok(Some(h)) = e.adopt(&spec) else { return Ok(None) };
                if matches!(e.poll(&h), Ok((ExecState::Running, _))) {
                    return match e.cancel(&h) {
                        Ok(()) => Ok(Some(h)),
                        Err(err) => Err((h, err)),
                    };
                }
                Ok(None)
            })
            .await;
        let (job, attempt) = key;
        match stopped {
            Ok(Ok(Some(h))) => {
                tracing::warn!(job, attempt, handle = %h.0, "stopped a run left by an earlier instance");
                None
            }
            Ok(Err((h, e))) => {
                tracing::warn!(job, attempt, error = %e, "could not stop a left run yet; will retry");
                Some(h)
            }
            Ok(Ok(None)) => None,
            Err(e) => {
                tracing::warn!(job, attempt, error = %e, "could not stop a left run");
                None
            }
        }
    }

    /// Stops the runs given up on (or whose cancel failed) once their executor answers again.
    async fn stop_abandoned(&mut self) {
        if self.abandoned.is_empty() {
            return;
        }
        let handles = std::mem::take(&mut self.abandoned);
        let left = self
            .exec(move |e| {
                handles
                    .into_iter()
                    .filter(|h| match e.cancel(h) {
                        Ok(()) => {
                            tracing::warn!(handle = %h.0, "stopped a run that had been left running");
                            false
                        }
                        Err(_) => true,
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        match left {
            Ok(left) => self.abandoned.extend(left),
            Err(e) => tracing::warn!(error = %e, "could not stop abandoned runs"),
        }
    }

    /// Fetches job `id`'s newest checkpoint into `dir` (a later attempt resumes from it);
    /// false when there is none.
    async fn restore_checkpoint(&self, id: u64, dir: &Path, user: Option<RunUser>) -> Result<bool, String> {
        let Some(data) = self.cp.get_checkpoint(id).await.map_err(|e| format!("fetching it: {e}"))? else {
            return Ok(false);
        };
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || checkpoint::restore(&data, &dir, user.as_ref()))
            .await
            .map_err(|e| format!("unpacking panicked: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Sends the checkpoint directories of running runs that changed since last sent, each at
    /// most every its `checkpoint_s` (the run should write each checkpoint atomically: to a
    /// temporary name, then rename).
    async fn keep_checkpoints(&mut self) {
        let due: Vec<RunKey> = self
            .runs
            .iter()
            .filter(|(_, r)| r.followed == Followed::Running)
            .filter(|(_, r)| r.checkpoint.as_ref().is_some_and(|s| s.looked.elapsed() >= s.every))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.keep_checkpoint(key).await;
        }
    }

    async fn keep_checkpoint(&mut self, key: RunKey) {
        let Some(sent) = self.runs.get_mut(&key).and_then(|r| r.checkpoint.as_mut()) else { return };
        sent.looked = Instant::now();
        let sig = checkpoint::signature(&sent.dir);
        if sig == sent.signature {
            return;
        }
        let (dir, user) = (sent.dir.clone(), sent.user.clone());
        let packed =
            tokio::task::spawn_blocking(move || checkpoint::tar(&["-czf", "-", "."], &[], user.as_ref(), &dir)).await;
        let data = match packed {
            Ok(Ok(d)) if d.len() <= checkpoint::MAX_CHECKPOINT => d,
            Ok(Ok(d)) => {
                tracing::warn!(
                    id = key.0,
                    bytes = d.len(),
                    "checkpoint over 64 MiB: not kept (keep large state in the job's own storage)"
                );
                self.set_signature(key, sig);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(id = key.0, error = %e, "could not pack the checkpoint");
                return;
            }
            Err(e) => {
                tracing::warn!(id = key.0, error = %e, "packing the checkpoint panicked");
                return;
            }
        };
        let bytes = data.len();
        let settled = match self.cp.put_checkpoint(key.0, key.1, data).await {
            Ok(()) => {
                tracing::info!(id = key.0, attempt = key.1, bytes, "checkpoint kept");
                true
            }
            Err(e) => {
                tracing::warn!(id = key.0, error = %e, "checkpoint not kept");
                // the same content would be refused again; a server error is worth a retry
                e.is_final()
            }
        };
        if settled {
            self.set_signature(key, sig);
        }
    }

    fn set_signature(&mut self, key: RunKey, sig: u64) {
        if let Some(sent) = self.runs.get_mut(&key).and_then(|r| r.checkpoint.as_mut()) {
            sent.signature = sig;
        }
    }
}

/// `outcome` as a failure for `why`, with no usage (billed nothing).
fn failure(outcome: Outcome, why: &str) -> Outcome {
    Outcome {
        state: ExecState::Failed { reason: why.trim().to_string(), exit_code: None },
        usage: Usage::default(),
        ..outcome
    }
}

/// Long-polls the assignments and hands every answer to the loop; also the heartbeat, which
/// stops while the loop is stuck (a wedged agent must not vouch for itself: its site is then
/// lost and its jobs move). A site the control plane does not know is reported on `lost`.
async fn poll_assignments<C: ControlPlane>(
    cp: Arc<C>,
    progress: Arc<AtomicI64>,
    wait: Duration,
    tx: watch::Sender<Option<AssignmentsAnswer>>,
    lost: mpsc::Sender<()>,
) {
    let mut known: Option<String> = None;
    let mut stuck = false;
    loop {
        let idle_ms = epoch_ms() - progress.load(Ordering::Relaxed);
        if u128::try_from(idle_ms).unwrap_or(0) > WATCHDOG.as_millis() {
            if !stuck {
                tracing::error!(idle_ms, "the agent loop is stuck: heartbeats stop");
                stuck = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        stuck = false;
        match cp.assignments(wait, known.as_deref()).await {
            Ok(answer) => {
                known = Some(answer.version.clone());
                if tx.send(Some(answer)).is_err() {
                    return;
                }
            }
            Err(e) if e.status() == Some(404) => {
                tracing::warn!(error = %e, "the control plane does not know this site: registering again");
                known = None;
                let _ = lost.try_send(());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "assignments: will retry");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
