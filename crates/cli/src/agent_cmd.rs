//! `suanwang agent`: connects this machine to the network as a site and runs the work the
//! control plane assigns to it, through the process or the Slurm executor. The loop lives in
//! `suanwang_agent` (`runner`, behind its `ControlPlane` trait); this is flag handling and wiring.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use suanwang_agent::{Agent, Config, Executor, HttpControlPlane, ProcessExecutor, Sandbox, SlurmExecutor, Users};

pub use suanwang_agent::RunOptions;

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
    let data = suanwang_agent::users::own_data_dir(&args.data, traversable)?;
    if traversable {
        for u in users.all() {
            if !suanwang_agent::users::reachable_by(&data, u) {
                bail!(
                    "--data {}: the run user {} cannot reach it (a parent directory is closed to it); choose a \
                     directory under one it may pass through",
                    data.display(),
                    u.name
                );
            }
        }
    }
    let registration = suanwang_agent::machine::registration(&args.site, &args.city, args.pools.as_deref())?;
    // a server that accepts but never answers must not stall the agent: long-polls last
    // at most 30 s, checkpoints are at most 64 MiB
    let http = crate::http::builder(&args.tls)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_mins(2))
        .build()
        .context("building the HTTP client")?;
    let cp = Arc::new(HttpControlPlane::new(http, &args.server, &args.token, &args.site));
    let config = Config {
        site: args.site,
        data,
        registration,
        lost_after: args.lost_after,
        users,
        traversable,
        poll_wait: Duration::from_secs(1),
        idle_check: Duration::from_secs(1),
    };
    Agent::new(cp, executor, config).run().await?;
    Ok(())
}
