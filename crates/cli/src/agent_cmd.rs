//! `suanwang agent`: connects this machine to the network as a site and runs the work the
//! control plane assigns to it, through the process or the Slurm executor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use suanwang_agent::{ExecState, Executor, Handle, ProcessExecutor, RunSpec, RunUser, Sandbox, SlurmExecutor};
use suanwang_core::network::{AgentPool, AgentSite};

/// Whom runs execute as and how they are confined (R7): see `suanwang_agent::sandbox`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--run-as USER` (default: the dedicated system user, when the agent is root).
    pub run_as: Option<String>,
    /// `--run-as-map FILE`: `[users]` tenant = "user", per tenant.
    pub run_as_map: Option<PathBuf>,
    /// `--allow-root-runs`: a single-user laptop may run jobs as root.
    pub allow_root_runs: bool,
    /// `--run-network none` makes this `false`: runs get no network.
    pub network: bool,
}

/// The users runs execute as: one per mapped tenant, else the default (`None`: the agent's own
/// user, when it is not root).
#[derive(Debug, Clone, Default)]
struct Users {
    default: Option<RunUser>,
    by_tenant: HashMap<String, RunUser>,
}

impl Users {
    fn of(&self, tenant: &str) -> Option<RunUser> {
        self.by_tenant.get(tenant).or(self.default.as_ref()).cloned()
    }

    /// Resolves the users of `opts` on this machine: every name must exist, and none may be
    /// root unless `--allow-root-runs`.
    fn resolve(opts: &RunOptions) -> Result<Users> {
        let refuse_root = |u: &RunUser, flag: &str| -> Result<()> {
            if u.is_root() && !opts.allow_root_runs {
                bail!(
                    "{flag}: runs as root are refused (any tenant would own this machine and its agent); \
                     --allow-root-runs permits it on a single-user laptop"
                );
            }
            Ok(())
        };
        if !suanwang_agent::sandbox::agent_is_root() {
            let (uid, _) = suanwang_agent::sandbox::current_ids();
            if let Some(name) = &opts.run_as {
                let u = RunUser::lookup(name).map_err(|e| anyhow::anyhow!("--run-as {name}: {e}"))?;
                if u.uid != uid {
                    bail!(
                        "--run-as {name}: the agent runs as uid {uid}, not root, so it cannot run jobs as another user"
                    );
                }
            }
            if let Some(f) = &opts.run_as_map {
                bail!("--run-as-map {}: the agent is not root, so it cannot run jobs as other users", f.display());
            }
            return Ok(Users::default());
        }
        let default = match &opts.run_as {
            Some(name) => RunUser::lookup(name).map_err(|e| {
                anyhow::anyhow!(
                    "--run-as {name}: {e} (create it, or leave --run-as out for the dedicated user {}, which the agent creates)",
                    suanwang_agent::sandbox::DEFAULT_RUN_USER
                )
            })?,
            None => RunUser::ensure_system(suanwang_agent::sandbox::DEFAULT_RUN_USER)
                .context("the dedicated run user (or pass --run-as USER)")?,
        };
        refuse_root(&default, &format!("--run-as {}", default.name))?;
        let mut by_tenant = HashMap::new();
        if let Some(f) = &opts.run_as_map {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct MapFile {
                users: std::collections::BTreeMap<String, String>,
            }
            let text = std::fs::read_to_string(f).with_context(|| format!("--run-as-map: reading {}", f.display()))?;
            let map: MapFile = toml::from_str(&text).with_context(|| {
                format!("--run-as-map {}: expected [users] with tenant = \"user\" lines", f.display())
            })?;
            for (tenant, name) in map.users {
                let u = RunUser::lookup(&name)
                    .map_err(|e| anyhow::anyhow!("--run-as-map {}: users.{tenant}: {e}", f.display()))?;
                refuse_root(&u, &format!("--run-as-map {}: users.{tenant}", f.display()))?;
                by_tenant.insert(tenant, u);
            }
        }
        Ok(Users { default: Some(default), by_tenant })
    }
}

/// Makes the agent's data directory its own: mode 0700 (0711 when run users must pass through
/// it to their runs' directories: no listing), tightening a looser one with a warning.
fn own_data_dir(dir: &std::path::Path, traversable: bool) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    crate::serve_cmd::create_private_dir(dir)?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let want = if traversable { 0o711 } else { 0o700 };
    let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o777;
    if mode != want {
        if mode & 0o077 & !want != 0 {
            tracing::warn!(dir = %dir.display(), from = format!("{mode:o}"), to = format!("{want:o}"), "tightened the agent's data directory");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(want))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    Ok(dir)
}

/// Whether `user` can reach `dir` (every directory on the way lets it pass).
fn reachable_by(dir: &std::path::Path, user: &RunUser) -> bool {
    std::process::Command::new("setpriv")
        .args(&suanwang_agent::sandbox::setpriv(user)[1..])
        .args(["test", "-x"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

/// The token in `file`, which must be its owner's alone (mode 0600 or stricter).
pub fn read_token_file(file: &std::path::Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(file).with_context(|| format!("--token-file {}", file.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "--token-file {}: mode {mode:o} lets other users read the token; `chmod 600 {}` first",
            file.display(),
            file.display()
        );
    }
    let token = std::fs::read_to_string(file).with_context(|| format!("--token-file {}", file.display()))?;
    let token = token.trim();
    if token.is_empty() {
        bail!("--token-file {}: the file is empty", file.display());
    }
    Ok(token.to_string())
}

#[derive(Debug, Clone)]
pub struct AgentArgs {
    pub server: String,
    pub token: String,
    pub site: String,
    pub city: String,
    pub executor: String,
    pub data: PathBuf,
    pub pools: Option<PathBuf>,
    /// How long a run may go unanswered by its executor before it is reported failed.
    pub lost_after: Duration,
    /// Whom runs execute as and how they are confined.
    pub run: RunOptions,
    /// How the agent trusts the server (`--ca`) and identifies itself (`--client-cert`).
    pub tls: crate::http::ClientTls,
}

/// Cores and memory (MiB) of this machine.
pub fn detect() -> (u64, u64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(1024 * 1024);
    (cores, mem_kb / 1024)
}

fn default_pools(cores: u64, memory_mib: u64) -> Vec<AgentPool> {
    let model = if cfg!(target_arch = "aarch64") { "generic-aarch64" } else { "generic-x86_64" };
    vec![AgentPool {
        name: "cpu".into(),
        model: model.into(),
        count: cores,
        memory_gib_per_unit: u32::try_from((memory_mib / 1024 / cores.max(1)).max(1)).unwrap_or(1),
        power_w_per_unit: 10.0,
        price_fen_per_unit_hour: 30,
    }]
}

/// GPU pools from `nvidia-smi --query-gpu=name,memory.total,power.limit
/// --format=csv,noheader,nounits` output: one pool per model in the device catalogue; models
/// the catalogue does not know are skipped with a warning (a pool must name a known device).
pub fn gpu_pools(nvidia_smi_csv: &str) -> Vec<AgentPool> {
    let known = [("H800", "h800"), ("A800", "a800"), ("H20", "h20"), ("L40S", "l40s")];
    let mut pools: Vec<AgentPool> = vec![];
    for line in nvidia_smi_csv.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let (name, mem_mib, watts) = match f[..] {
            [n, m, w, ..] => (n, m.parse::<f64>().unwrap_or(0.0), w.parse::<f64>().unwrap_or(0.0)),
            _ => continue,
        };
        let Some((_, model)) = known.iter().find(|(k, _)| name.to_ascii_uppercase().contains(k)) else {
            tracing::warn!(gpu = name, "GPU model not in the device catalogue; not declared");
            continue;
        };
        if let Some(p) = pools.iter_mut().find(|p| p.model == *model) {
            p.count += 1;
            continue;
        }
        pools.push(AgentPool {
            name: format!("gpu-{model}"),
            model: (*model).to_string(),
            count: 1,
            memory_gib_per_unit: u32::try_from((mem_mib / 1024.0).round() as u64).unwrap_or(1).max(1),
            power_w_per_unit: if watts > 0.0 { watts } else { 400.0 },
            price_fen_per_unit_hour: 1500,
        });
    }
    pools
}

/// This machine's GPUs, when `nvidia-smi` is installed and answers.
fn detect_gpus() -> Vec<AgentPool> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total,power.limit", "--format=csv,noheader,nounits"])
        .output();
    match out {
        Ok(o) if o.status.success() => gpu_pools(&String::from_utf8_lossy(&o.stdout)),
        _ => vec![],
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolsFile {
    pools: Vec<AgentPool>,
}

struct Agent {
    args: AgentArgs,
    http: reqwest::Client,
    executor: Arc<dyn Executor>,
    /// (job, attempt) → the executor's handle.
    runs: HashMap<(u64, u32), Handle>,
    /// Whether runs left by an earlier instance have been reconciled (first round).
    reconciled: bool,
    /// Since when the executor has failed to answer for a run (reset by an answer).
    unanswered: HashMap<(u64, u32), std::time::Instant>,
    /// Runs given up on while their executor did not answer: stopped once it answers again,
    /// so a run reported failed does not go on in the background.
    abandoned: Vec<Handle>,
    /// The version of the assignments last received (the long-poll waits for a change).
    version: Option<String>,
    /// Runs of checkpointing jobs → how their checkpoint directory was last sent.
    checkpoints: HashMap<(u64, u32), Sent>,
    /// When the loop last began a round (epoch ms), for the heartbeat's watchdog.
    progress: Arc<AtomicI64>,
    /// Whom runs execute as.
    users: Users,
}

/// The file in the agent's data directory naming the control plane its runs belong to.
const CONTROL_PLANE_FILE: &str = "control-plane";

/// The server answered a registration with a client error (bad token, a site not the
/// provider's, more capacity than detected): retrying cannot help.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// What became of a run's checkpoint directory at the control plane.
struct Sent {
    /// The directory's signature when last sent (or refused: the same content is not sent again).
    signature: u64,
    /// When it was last looked at: a run's checkpoints are sent at most every `every`.
    looked: std::time::Instant,
    every: Duration,
    /// The run's user (its checkpoint is packed with its rights).
    user: Option<RunUser>,
}

/// How much of each output stream a report carries (what the control plane keeps).
const LOG_TAIL: usize = 64 * 1024;

/// The largest checkpoint the control plane keeps (gzipped tar).
const MAX_CHECKPOINT: usize = 64 * 1024 * 1024;
/// The most a restored checkpoint may unpack to (a small archive can expand enormously).
const MAX_CHECKPOINT_UNPACKED: u64 = 8 * 1024 * 1024 * 1024;

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The total size of the files in a gzipped tar, from `tar -tvz` (the third column).
fn unpacked_size(data: &[u8]) -> Result<u64> {
    let listing = tar(&["-tvzf", "-"], data, None, std::path::Path::new("/"))?;
    Ok(String::from_utf8_lossy(&listing)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .fold(0u64, u64::saturating_add))
}

/// A cheap signature of a directory's files (names, sizes, modification times): it changes
/// when the run writes a new checkpoint.
fn signature(dir: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, u64, u128)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&e.path(), out);
            } else {
                let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                out.push((e.path().display().to_string(), meta.len(), mtime.map_or(0, |d| d.as_nanos())));
            }
        }
    }
    let mut files = vec![];
    walk(dir, &mut files);
    files.sort();
    files.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, (name, len, mtime)| {
        let mix =
            |h: u64, bytes: &[u8]| bytes.iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        mix(mix(mix(h, name.as_bytes()), &len.to_le_bytes()), &mtime.to_le_bytes())
    })
}

/// Runs `tar` with `args` (as `user`, when the agent is root: a run's checkpoint is the run's
/// to shape, so it is packed and unpacked with the run's rights, never root's), feeding it
/// `input`; its standard output.
/// It works in `cwd` (entered with the agent's rights: the run's user may not be able to pass
/// through the agent's data directory to reach it).
fn tar(args: &[&str], input: &[u8], user: Option<&RunUser>, cwd: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut cmd = match user {
        Some(u) if suanwang_agent::sandbox::agent_is_root() => {
            let mut c = std::process::Command::new("setpriv");
            c.args(&suanwang_agent::sandbox::setpriv(u)[1..]).arg("tar");
            c
        }
        _ => std::process::Command::new("tar"),
    };
    let mut child = cmd
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running tar (needed for checkpoints)")?;
    let mut stdin = child.stdin.take().context("tar's stdin")?;
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    if !out.status.success() {
        bail!("tar {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// `(job, attempt)` of a run directory's name (`<job>-<attempt>`).
fn run_dir_name(name: &str) -> Option<(u64, u32)> {
    let (id, attempt) = name.split_once('-')?;
    Some((id.parse().ok()?, attempt.parse().ok()?))
}

/// The run directories in `data`: `(job, attempt, path)`.
fn run_dirs(data: &std::path::Path) -> Vec<(u64, u32, PathBuf)> {
    std::fs::read_dir(data)
        .map(|d| {
            d.flatten()
                .filter_map(|e| run_dir_name(&e.file_name().to_string_lossy()).map(|(i, a)| (i, a, e.path())))
                .collect()
        })
        .unwrap_or_default()
}

impl Agent {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.args.server)).bearer_auth(&self.args.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let v = res.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    async fn register(&self) -> Result<()> {
        let (cores, memory_mib) = detect();
        let gpus = detect_gpus();
        let gpu_count: u64 = gpus.iter().map(|p| p.count).sum();
        let pools = match &self.args.pools {
            Some(f) => toml::from_str::<PoolsFile>(&std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?)
                .with_context(|| format!("{}: expected [[pools]] name, model, count, memory_gib_per_unit, power_w_per_unit, price_fen_per_unit_hour", f.display()))?
                .pools,
            None => {
                let mut pools = default_pools(cores, memory_mib);
                pools.extend(gpus.iter().cloned());
                pools
            }
        };
        let site = AgentSite { id: self.args.site.clone(), city: self.args.city.clone(), pue: 1.3, pools };
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/v1/agents/register",
                Some(json!({"site": site, "detected": {"cores": cores, "memory_mib": memory_mib, "gpus": gpu_count}})),
            )
            .await?;
        if status != 200 {
            let refused = Refused(format!(
                "the server refused to register site {}: {status} {}{}",
                self.args.site,
                v["message"].as_str().unwrap_or(""),
                v["hint"].as_str().map_or_else(String::new, |h| format!(" ({h})"))
            ));
            if (400..500).contains(&status) {
                return Err(refused.into());
            }
            bail!(refused.0);
        }
        tracing::info!(site = %self.args.site, cores, memory_mib, "registered");
        if let Some(cp) = v["control_plane"].as_str() {
            self.serve_control_plane(cp).await?;
        }
        Ok(())
    }

    /// Records which control plane this data directory serves. Runs left by another one (a
    /// control plane with a fresh database numbers its jobs from 1 again) are stopped and their
    /// directories moved to `previous-<its id>/`: never adopted, never reported as this one's.
    async fn serve_control_plane(&self, id: &str) -> Result<()> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("the server named itself {id:?}, not a control-plane id");
        }
        let file = self.args.data.join(CONTROL_PLANE_FILE);
        let before = std::fs::read_to_string(&file).ok().map(|s| s.trim().to_string());
        if before.as_deref() == Some(id) {
            return Ok(());
        }
        let runs = run_dirs(&self.args.data);
        if !runs.is_empty() {
            let old = before.unwrap_or_else(|| "unknown".into());
            tracing::warn!(
                data = %self.args.data.display(), previous = %old, now = id,
                "this data directory served another control plane: its runs are stopped and set aside, not adopted"
            );
            let aside = self.args.data.join(format!("previous-{old}"));
            std::fs::create_dir_all(&aside)?;
            for (job, attempt, dir) in runs {
                self.stop_left_run(job, attempt, &dir).await;
                let _ = std::fs::rename(&dir, aside.join(format!("{job}-{attempt}")));
            }
        }
        std::fs::write(&file, id).with_context(|| format!("writing {}", file.display()))?;
        Ok(())
    }

    /// Stops whatever still runs in the run directory `dir` (left by an earlier instance);
    /// a failed stop is retried later.
    async fn stop_left_run(&self, job: u64, attempt: u32, dir: &std::path::Path) -> Option<Handle> {
        let run_id = suanwang_agent::run_id_in(dir)?;
        let spec = RunSpec {
            job_id: job,
            attempt,
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

    async fn report(
        &self,
        id: u64,
        attempt: u32,
        state: &ExecState,
        usage: suanwang_agent::Usage,
        logs: (String, String),
    ) {
        // the control plane keeps the last 64 KiB of each stream: send no more (the full output
        // stays in the run's directory on the site), so a chatty job never makes a report too
        // large to be taken
        let logs = (suanwang_server::actor::tail(&logs.0, LOG_TAIL), suanwang_server::actor::tail(&logs.1, LOG_TAIL));
        let (succeeded, reason) = match state {
            ExecState::Succeeded => (true, None),
            ExecState::Failed { reason, .. } => (false, Some(reason.clone())),
            ExecState::Cancelled => (false, Some("cancelled at the site".to_string())),
            ExecState::Running => return,
        };
        let body = json!({
            "id": id, "attempt": attempt, "succeeded": succeeded, "reason": reason,
            "cpu_seconds": usage.cpu_seconds, "peak_memory_mib": usage.peak_memory_mib, "wall_seconds": usage.wall_seconds,
            "stdout": &logs.0, "stderr": &logs.1,
        });
        let path = format!("/v1/agents/{}/reports", self.args.site);
        match self.call(reqwest::Method::POST, &path, Some(body)).await {
            Ok((200, _)) => tracing::info!(id, attempt, succeeded, "reported"),
            Ok((422, v)) if v["code"] == "implausible_report" => {
                // the measured use is beyond what the run may have used (no control group held
                // its CPU rate, say): the run ends as failed with the reason, billed nothing
                let why = format!(
                    "the site's usage report was refused: {} {}",
                    v["message"].as_str().unwrap_or(""),
                    v["detail"].as_str().unwrap_or("")
                );
                tracing::warn!(id, attempt, reason = %why, "report refused as implausible; reporting a failure");
                let body = json!({
                    "id": id, "attempt": attempt, "succeeded": false, "reason": why.trim(),
                    "cpu_seconds": 0.0, "peak_memory_mib": 0.0, "wall_seconds": 0.0,
                    "stdout": logs.0, "stderr": logs.1,
                });
                if let Ok((status, v)) = self.call(reqwest::Method::POST, &path, Some(body)).await
                    && status != 200
                {
                    tracing::warn!(id, attempt, status, message = %v["message"], "failure report refused");
                }
            }
            Ok((status, v)) => tracing::warn!(id, attempt, status, message = %v["message"], "report refused"),
            Err(e) => tracing::warn!(id, attempt, error = %e, "report failed"),
        }
    }

    /// Runs a blocking executor call on the blocking pool, so the runtime (the server's too,
    /// in `suanwang up`) keeps serving meanwhile.
    async fn exec<T: Send + 'static>(&self, f: impl FnOnce(&dyn Executor) -> T + Send + 'static) -> Result<T> {
        let e = Arc::clone(&self.executor);
        tokio::task::spawn_blocking(move || f(e.as_ref())).await.context("an executor call panicked")
    }

    /// Fetches job `id`'s newest checkpoint into `dir` (a later attempt resumes from it);
    /// false when there is none.
    async fn restore_checkpoint(&self, id: u64, dir: &std::path::Path, user: Option<RunUser>) -> Result<bool> {
        let url = format!("{}/v1/agents/{}/checkpoints/{id}", self.args.server, self.args.site);
        let res = self.http.get(url).bearer_auth(&self.args.token).send().await?;
        if res.status().as_u16() == 404 {
            return Ok(false);
        }
        if !res.status().is_success() {
            bail!("fetching the checkpoint of job {id}: {}", res.status());
        }
        let data = res.bytes().await?.to_vec();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let size = unpacked_size(&data)?;
            if size > MAX_CHECKPOINT_UNPACKED {
                bail!("it would unpack to {size} bytes (more than {MAX_CHECKPOINT_UNPACKED})");
            }
            std::fs::create_dir_all(&dir)?;
            suanwang_agent::give(&dir, user.as_ref())?;
            // GNU tar refuses absolute names and `..`; owners are not restored; it runs as the
            // run's user, so an archive can write nothing that user could not
            tar(&["-xzf", "-", "--no-same-owner"], &data, user.as_ref(), &dir)?;
            Ok(())
        })
        .await
        .context("unpacking panicked")??;
        Ok(true)
    }

    /// Sends a run's checkpoint directory to the control plane when it changed since it was
    /// last sent, at most every `checkpoint_s` (the run should write each checkpoint
    /// atomically: to a temporary name, then rename).
    async fn keep_checkpoint(&mut self, key: (u64, u32)) {
        let dir = suanwang_agent::work_dir(&self.run_dir(key.0, key.1)).join("checkpoint");
        let Some(sent) = self.checkpoints.get_mut(&key) else { return };
        let user = sent.user.clone();
        if sent.looked.elapsed() < sent.every {
            return;
        }
        sent.looked = std::time::Instant::now();
        let sig = signature(&dir);
        if sig == sent.signature {
            return;
        }
        let packed = tokio::task::spawn_blocking(move || tar(&["-czf", "-", "."], &[], user.as_ref(), &dir))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        let data = match packed {
            Ok(d) if d.len() <= MAX_CHECKPOINT => d,
            Ok(d) => {
                tracing::warn!(
                    id = key.0,
                    bytes = d.len(),
                    "checkpoint over 64 MiB: not kept (keep large state in the job's own storage)"
                );
                if let Some(sent) = self.checkpoints.get_mut(&key) {
                    sent.signature = sig;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(id = key.0, error = %e, "could not pack the checkpoint");
                return;
            }
        };
        let url = format!("{}/v1/agents/{}/checkpoints/{}?attempt={}", self.args.server, self.args.site, key.0, key.1);
        let bytes = data.len();
        let refused = match self.http.put(url).bearer_auth(&self.args.token).body(data).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(id = key.0, attempt = key.1, bytes, "checkpoint kept");
                true
            }
            Ok(r) => {
                tracing::warn!(id = key.0, status = %r.status(), "checkpoint refused");
                // the same content would be refused again; a server error is worth a retry
                r.status().is_client_error()
            }
            Err(e) => {
                tracing::warn!(id = key.0, error = %e, "checkpoint not kept");
                false
            }
        };
        if refused && let Some(sent) = self.checkpoints.get_mut(&key) {
            sent.signature = sig;
        }
    }

    /// Where one attempt of a job keeps its files (`stop_orphans` parses these names back).
    fn run_dir(&self, id: u64, attempt: u32) -> PathBuf {
        self.args.data.join(format!("{id}-{attempt}"))
    }

    /// Once after (re)starting: runs left in the data directory by an earlier instance that
    /// the server no longer assigns here (the job was cancelled or moved while this agent was
    /// away) are stopped, so a superseded attempt never runs beside its successor.
    async fn stop_orphans(&mut self, list: &[suanwang_engine::Assignment]) {
        if self.reconciled {
            return;
        }
        self.reconciled = true;
        for (id, attempt, path) in run_dirs(&self.args.data) {
            if list.iter().any(|a| (a.id, a.attempt) == (id, attempt)) || path.join("reported").exists() {
                continue;
            }
            if let Some(h) = self.stop_left_run(id, attempt, &path).await {
                self.abandoned.push(h);
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

    /// One round: fetch the assignments (long-poll), start new ones, stop withdrawn ones,
    /// report finished ones.
    async fn round(&mut self) -> Result<()> {
        // long-poll for a change of assignments: up to a second when idle, the executor's
        // check interval while runs are in flight (they must be looked at)
        let wait = if self.runs.is_empty() { Duration::from_secs(1) } else { self.executor.check_interval() };
        let known = self.version.as_deref().map_or_else(String::new, |v| format!("&known={v}"));
        let path = format!("/v1/agents/{}/assignments?wait_ms={}{known}", self.args.site, wait.as_millis());
        let (status, v) = self.call(reqwest::Method::GET, &path, None).await?;
        if status == 404 {
            self.register().await?;
            return Ok(());
        }
        if status != 200 {
            bail!("assignments: {status} {}", v["message"].as_str().unwrap_or(""));
        }
        let list: Vec<suanwang_engine::Assignment> =
            serde_json::from_value(v["assignments"].clone()).unwrap_or_default();
        self.version = v["version"].as_str().map(str::to_string);
        // stop what is no longer ours before starting anything: a moved job's old attempt must
        // not run beside its new one, here or anywhere
        self.stop_orphans(&list).await;
        let withdrawn: Vec<(u64, u32)> =
            self.runs.keys().copied().filter(|k| !list.iter().any(|a| (a.id, a.attempt) == *k)).collect();
        for key in withdrawn {
            let Some(h) = self.runs.remove(&key) else { continue };
            self.checkpoints.remove(&key);
            self.unanswered.remove(&key);
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
        self.stop_abandoned().await;
        for a in &list {
            if self.runs.contains_key(&(a.id, a.attempt)) {
                continue;
            }
            let run_dir = self.run_dir(a.id, a.attempt);
            if run_dir.exists() && suanwang_agent::run_id_in(&run_dir).as_deref() != Some(a.run_id.as_str()) {
                // this job and attempt number's directory holds another run (of another
                // control plane, or from before its run ids): never adopted; set aside
                tracing::warn!(id = a.id, attempt = a.attempt, "the run directory holds another run: set aside");
                if let Some(h) = self.stop_left_run(a.id, a.attempt, &run_dir).await {
                    self.abandoned.push(h);
                }
                let aside = self.args.data.join("previous-unknown");
                let _ = std::fs::create_dir_all(&aside);
                let _ = std::fs::rename(&run_dir, aside.join(format!("{}-{}-{}", a.id, a.attempt, epoch_ms())));
            }
            let user = self.users.of(&a.tenant);
            let mut env: Vec<(String, String)> = a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let mut spec = RunSpec {
                job_id: a.id,
                attempt: a.attempt,
                command: a.command.clone(),
                args: a.args.clone(),
                env: vec![],
                dir: run_dir.clone(),
                run_id: a.run_id.clone(),
                user: user.clone(),
                memory_mib: a.memory_mib.max(64),
                time_limit: Duration::from_secs(a.time_limit_s.max(1)),
                cpus: a.cores,
            };
            if let Some(every) = a.checkpoint_s {
                // the run writes its checkpoints here; a later attempt finds the newest here
                let traversable = self.executor.name() == "slurm";
                let dir = match suanwang_agent::prepare(&spec, traversable) {
                    Ok(d) => suanwang_agent::work_dir(&d).join("checkpoint"),
                    Err(e) => {
                        tracing::warn!(id = a.id, error = %e, "cannot make the run's directory; will retry");
                        continue;
                    }
                };
                if !dir.exists() && a.attempt > 1 {
                    match self.restore_checkpoint(a.id, &dir, user.clone()).await {
                        Ok(true) => tracing::info!(id = a.id, attempt = a.attempt, "resuming from its checkpoint"),
                        Ok(false) => {
                            tracing::info!(id = a.id, attempt = a.attempt, "no checkpoint yet: from the start");
                        }
                        Err(e) => tracing::warn!(id = a.id, error = %e, "checkpoint not restored: from the start"),
                    }
                }
                if std::fs::create_dir_all(&dir).is_ok() {
                    let _ = suanwang_agent::give(&dir, user.as_ref());
                }
                let abs = dir.canonicalize().unwrap_or(dir);
                env.push(("SUANWANG_CHECKPOINT_DIR".into(), abs.display().to_string()));
                let sent = Sent {
                    signature: signature(&abs),
                    looked: std::time::Instant::now(),
                    every: Duration::from_secs(u64::from(every.max(1))),
                    user: user.clone(),
                };
                self.checkpoints.entry((a.id, a.attempt)).or_insert(sent);
            }
            spec.env = env;
            // a run this agent started before a restart: follow it instead of starting it
            // again; otherwise start it
            let started = self
                .exec(move |e| match e.adopt(&spec) {
                    Ok(Some(h)) => (Ok(h), true),
                    Ok(None) => (e.start(&spec), false),
                    Err(err) => {
                        tracing::warn!(id = spec.job_id, error = %err, "could not adopt; starting afresh");
                        (e.start(&spec), false)
                    }
                })
                .await;
            match started {
                Ok((Ok(h), adopted)) => {
                    let how = if adopted { "adopted a run from before a restart" } else { "started" };
                    tracing::info!(id = a.id, attempt = a.attempt, handle = %h.0, "{how}");
                    self.runs.insert((a.id, a.attempt), h);
                }
                Ok((Err(e), _)) => {
                    let state = ExecState::Failed { reason: e.to_string(), exit_code: None };
                    let usage = suanwang_agent::Usage::default();
                    self.report(a.id, a.attempt, &state, usage, (String::new(), e.to_string())).await;
                }
                Err(e) => tracing::warn!(id = a.id, error = %e, "could not start; will retry"),
            }
        }
        let keys: Vec<(u64, u32)> = self.runs.keys().copied().collect();
        for key in keys {
            let Some(h) = self.runs.get(&key).cloned() else { continue };
            let h2 = h.clone();
            let polled = self.exec(move |e| e.poll(&h2)).await?;
            let (state, usage) = match polled {
                Ok(x) => {
                    self.unanswered.remove(&key);
                    x
                }
                Err(e) => {
                    // the executor does not answer for this run (Slurm down, run vanished):
                    // keep serving the others, and give up on this one after `lost_after`
                    let since = *self.unanswered.entry(key).or_insert_with(std::time::Instant::now);
                    tracing::warn!(id = key.0, attempt = key.1, error = %e, for_s = since.elapsed().as_secs(), "cannot poll the run");
                    if since.elapsed() < self.args.lost_after {
                        continue;
                    }
                    self.unanswered.remove(&key);
                    self.abandoned.push(h.clone());
                    let reason = format!(
                        "the {} executor lost the run (no answer for {} s): {e}",
                        self.executor.name(),
                        since.elapsed().as_secs()
                    );
                    (ExecState::Failed { reason, exit_code: None }, suanwang_agent::Usage::default())
                }
            };
            if !state.is_done() {
                self.keep_checkpoint(key).await;
            }
            if state.is_done() {
                self.checkpoints.remove(&key);
                let h2 = h.clone();
                let logs = self.exec(move |e| e.logs(&h2)).await?.unwrap_or_default();
                self.report(key.0, key.1, &state, usage, logs).await;
                // reported: a later instance must not take this directory for a live run
                let _ = std::fs::write(self.run_dir(key.0, key.1).join("reported"), b"");
                self.runs.remove(&key);
            }
        }
        Ok(())
    }
}

/// How long the loop may go without beginning a round before the heartbeat stops vouching
/// for it (a wedged loop then loses its site, and its jobs move).
const WATCHDOG: Duration = Duration::from_mins(2);

/// Beats every 2 s on its own task while a round takes long, so a round that waits on a slow
/// executor (a Slurm cancel, a large checkpoint) does not look like a dead agent — but only
/// while the loop progresses.
fn heartbeat(agent: &Agent) {
    let http = agent.http.clone();
    let url = format!("{}/v1/agents/{}/assignments?wait_ms=0", agent.args.server, agent.args.site);
    let token = agent.args.token.clone();
    let progress = Arc::clone(&agent.progress);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let idle_ms = epoch_ms() - progress.load(Ordering::Relaxed);
            if idle_ms < 2000 {
                // the loop's own long-poll is beating
                continue;
            }
            if u128::try_from(idle_ms).unwrap_or(0) > WATCHDOG.as_millis() {
                tracing::error!(idle_ms, "the agent loop is stuck: heartbeats stop");
                continue;
            }
            if let Err(e) = http.get(&url).bearer_auth(&token).send().await {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        }
    });
}

/// Runs the agent until the process ends.
pub async fn run(args: AgentArgs) -> Result<()> {
    let users = Users::resolve(&args.run)?;
    if args.run.allow_root_runs {
        eprintln!(
            "WARNING: --allow-root-runs is on: jobs may run as root on this machine; use it only on a single-user laptop"
        );
        tracing::warn!("--allow-root-runs is on: jobs may run as root");
    }
    // namespaces where the kernel allows them (SUANWANG_SANDBOX=off turns them off, e.g. to
    // measure what they cost)
    let off = std::env::var("SUANWANG_SANDBOX").is_ok_and(|v| v == "off" || v == "0");
    let sandbox =
        if off { Sandbox { network: args.run.network, ..Sandbox::off() } } else { Sandbox::detect(args.run.network) };
    if !args.run.network && sandbox.isolation == suanwang_agent::Isolation::Off {
        bail!("--run-network none: this machine cannot make network namespaces for runs ({})", sandbox.describe());
    }
    let executor: Arc<dyn Executor> = match args.executor.as_str() {
        "process" => {
            let e = ProcessExecutor::new().with_sandbox(sandbox.clone());
            tracing::info!(limits = %e.limits(), isolation = %sandbox.describe(), "process executor");
            Arc::new(e)
        }
        "slurm" => {
            if !SlurmExecutor::available() {
                bail!("--executor slurm: no Slurm controller answers (sinfo)");
            }
            Arc::new(SlurmExecutor::new())
        }
        other => bail!("--executor: unknown {other:?}; process or slurm"),
    };
    if users.default.is_none() && sandbox.isolation == suanwang_agent::Isolation::Off {
        tracing::warn!(
            "runs execute as the agent's own user without namespaces: they can read the agent's data directory \
             (run the agent as root, or allow user namespaces)"
        );
    }
    let mut args = args;
    // Slurm's daemon enters a run's directory as the run user, who must pass through the data
    // directory; the process executor enters it with the agent's rights before dropping them
    // (without namespaces a run then works in its directory, though it could not walk there)
    let traversable = users.default.is_some() && args.executor == "slurm";
    if users.default.is_some() && sandbox.isolation == suanwang_agent::Isolation::Off {
        tracing::warn!(
            "no namespaces: runs start in their work directory as the run user, but absolute paths through the \
             agent's data directory (HOME, SUANWANG_CHECKPOINT_DIR) resolve only where its parents let them pass"
        );
    }
    // runs work in their own directories: every path handed to them must be absolute
    args.data = own_data_dir(&args.data, traversable)?;
    if traversable {
        for u in users.default.iter().chain(users.by_tenant.values()) {
            if !reachable_by(&args.data, u) {
                bail!(
                    "--data {}: the run user {} cannot reach it (a parent directory is closed to it); choose a \
                     directory under one it may pass through",
                    args.data.display(),
                    u.name
                );
            }
        }
    }
    // a server that accepts but never answers must not stall the agent: long-polls last
    // at most 30 s, checkpoints are at most 64 MiB
    let http = crate::http::builder(&args.tls)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_mins(2))
        .build()
        .context("building the HTTP client")?;
    let mut agent = Agent {
        args,
        http,
        executor,
        runs: HashMap::new(),
        reconciled: false,
        unanswered: HashMap::new(),
        abandoned: vec![],
        checkpoints: HashMap::new(),
        version: None,
        progress: Arc::new(AtomicI64::new(epoch_ms())),
        users,
    };
    // the server may still be starting: retry registration for a while (a refusal is final)
    let mut tries = 0;
    while let Err(e) = agent.register().await {
        tries += 1;
        if e.downcast_ref::<Refused>().is_some() {
            return Err(e);
        }
        if tries > 100 {
            return Err(e.context(format!("cannot reach the server at {} (tried for 20 s)", agent.args.server)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    heartbeat(&agent);
    loop {
        agent.progress.store(epoch_ms(), Ordering::Relaxed);
        if let Err(e) = agent.round().await {
            tracing::warn!(error = %e, "agent round failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gpu_pools;

    #[test]
    fn nvidia_smi_output_becomes_one_pool_per_known_model() {
        let csv = "NVIDIA H800, 81559, 700.00\nNVIDIA H800, 81559, 700.00\nNVIDIA L40S, 46068, [N/A]\n\
                   Tesla T4, 15360, 70.00\ngarbage\n";
        let pools = gpu_pools(csv);
        let got: Vec<(&str, u64, u32, f64)> =
            pools.iter().map(|p| (p.model.as_str(), p.count, p.memory_gib_per_unit, p.power_w_per_unit)).collect();
        assert_eq!(got, vec![("h800", 2, 80, 700.0), ("l40s", 1, 45, 400.0)]);
    }
}
