//! Whom runs execute as (R7: tenant code never has the agent's privileges), and the agent's
//! own data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::AgentError;
use crate::sandbox::{self, RunUser};

/// Whom runs execute as and how they are confined: see `sandbox`.
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
pub struct Users {
    pub default: Option<RunUser>,
    pub by_tenant: HashMap<String, RunUser>,
}

fn setup(msg: String) -> AgentError {
    AgentError::Setup(msg)
}

impl Users {
    /// The user `tenant`'s runs execute as.
    pub fn of(&self, tenant: &str) -> Option<RunUser> {
        self.by_tenant.get(tenant).or(self.default.as_ref()).cloned()
    }

    /// Every user runs may execute as.
    pub fn all(&self) -> impl Iterator<Item = &RunUser> {
        self.default.iter().chain(self.by_tenant.values())
    }

    /// Resolves the users of `opts` on this machine: every name must exist, and none may be
    /// root unless `--allow-root-runs`.
    pub fn resolve(opts: &RunOptions) -> Result<Users, AgentError> {
        let refuse_root = |u: &RunUser, flag: &str| -> Result<(), AgentError> {
            if u.is_root() && !opts.allow_root_runs {
                return Err(setup(format!(
                    "{flag}: runs as root are refused (any tenant would own this machine and its agent); \
                     --allow-root-runs permits it on a single-user laptop"
                )));
            }
            Ok(())
        };
        if !sandbox::agent_is_root() {
            let (uid, _) = sandbox::current_ids();
            if let Some(name) = &opts.run_as {
                let u = RunUser::lookup(name).map_err(|e| setup(format!("--run-as {name}: {e}")))?;
                if u.uid != uid {
                    return Err(setup(format!(
                        "--run-as {name}: the agent runs as uid {uid}, not root, so it cannot run jobs as another user"
                    )));
                }
            }
            if let Some(f) = &opts.run_as_map {
                return Err(setup(format!(
                    "--run-as-map {}: the agent is not root, so it cannot run jobs as other users",
                    f.display()
                )));
            }
            return Ok(Users::default());
        }
        let default = match &opts.run_as {
            Some(name) => RunUser::lookup(name).map_err(|e| {
                setup(format!(
                    "--run-as {name}: {e} (create it, or leave --run-as out for the dedicated user {}, which the agent creates)",
                    sandbox::DEFAULT_RUN_USER
                ))
            })?,
            None => RunUser::ensure_system(sandbox::DEFAULT_RUN_USER)
                .map_err(|e| setup(format!("the dedicated run user (or pass --run-as USER): {e}")))?,
        };
        refuse_root(&default, &format!("--run-as {}", default.name))?;
        let mut by_tenant = HashMap::new();
        if let Some(f) = &opts.run_as_map {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct MapFile {
                users: std::collections::BTreeMap<String, String>,
            }
            let text =
                std::fs::read_to_string(f).map_err(|e| setup(format!("--run-as-map: reading {}: {e}", f.display())))?;
            let map: MapFile = toml::from_str(&text).map_err(|e| {
                setup(format!("--run-as-map {}: expected [users] with tenant = \"user\" lines: {e}", f.display()))
            })?;
            for (tenant, name) in map.users {
                let u = RunUser::lookup(&name)
                    .map_err(|e| setup(format!("--run-as-map {}: users.{tenant}: {e}", f.display())))?;
                refuse_root(&u, &format!("--run-as-map {}: users.{tenant}", f.display()))?;
                by_tenant.insert(tenant, u);
            }
        }
        Ok(Users { default: Some(default), by_tenant })
    }
}

/// Makes the agent's data directory its own: mode 0700 (0711 when run users must pass through
/// it to their runs' directories: no listing), tightening a looser one with a warning. Returns
/// its canonical path (every path handed to runs must be absolute).
pub fn own_data_dir(dir: &Path, traversable: bool) -> Result<PathBuf, AgentError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let io = |what: &str, e: std::io::Error| setup(format!("--data {}: {what}: {e}", dir.display()));
    if !dir.is_dir() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io("creating it", e))?;
    }
    let dir = dir.canonicalize().map_err(|e| io("resolving it", e))?;
    let want = if traversable { 0o711 } else { 0o700 };
    let mode = std::fs::metadata(&dir).map_err(|e| io("reading it", e))?.permissions().mode() & 0o777;
    if mode != want {
        if mode & 0o077 & !want != 0 {
            tracing::warn!(dir = %dir.display(), from = format!("{mode:o}"), to = format!("{want:o}"), "tightened the agent's data directory");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(want)).map_err(|e| io("setting its mode", e))?;
    }
    Ok(dir)
}

/// Whether `user` can reach `dir` (every directory on the way lets it pass).
pub fn reachable_by(dir: &Path, user: &RunUser) -> bool {
    std::process::Command::new("setpriv")
        .args(&sandbox::setpriv(user)[1..])
        .args(["test", "-x"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}
