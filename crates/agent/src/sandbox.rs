//! Running tenant code with less than the agent's privileges (R7 security, R2: a provider must
//! be able to trust what runs on its machines).
//!
//! Two layers, each used where the kernel allows it:
//! - **A user.** An agent running as root runs each job as an unprivileged [`RunUser`]
//!   (`setpriv --reuid --regid --clear-groups --no-new-privs`, every capability dropped). An
//!   agent that is not root runs jobs as its own user.
//! - **Namespaces.** A private mount namespace whose root is built afresh: the system
//!   directories (`/usr`, `/etc`, `/opt`, and the `/bin`, `/lib`… links) read-only, a private
//!   `/tmp`, `/dev/shm` and a minimal `/dev` (with the GPU, DRI and InfiniBand devices where the
//!   machine has them), `/sys` read-only, a fresh `/proc`, and the run's own
//!   work directory as the **only** writable path from the host — everything else (the agent's
//!   and the control plane's data directories, other runs, home directories) is simply absent.
//!   A private PID namespace (the run sees only its own processes, so it can neither find nor
//!   signal the agent or another run), and with `network = false` a private network namespace
//!   (no interfaces but a loopback). As root this is `unshare --mount --pid --fork`; as another
//!   user through a user namespace (`unshare --user --map-root-user`), which ends by mapping the
//!   run back to the agent's own uid in a nested user namespace.
//!
//! Fallbacks (`Isolation::Off`): where no namespace can be made (a kernel or container that
//! forbids them), runs still run as the run user when the agent is root; the agent's data
//! directory is then closed to them by its mode (0700/0711, secrets 0600). `describe` says
//! which layer is in force; the agent logs it at start.

use std::path::Path;
use std::process::{Command, Stdio};

/// The user a run executes as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("no user {0:?} on this machine")]
    NoUser(String),
    #[error("cannot create the system user {name:?}: {reason}")]
    CreateUser { name: String, reason: String },
}

/// The default user runs execute as when the agent is root.
pub const DEFAULT_RUN_USER: &str = "suanwang-run";

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, "--", name]).stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl RunUser {
    /// The user `name` (a name or a numeric uid), as the system knows it.
    pub fn lookup(name: &str) -> Result<RunUser, SandboxError> {
        let uid = id_of("-u", name).ok_or_else(|| SandboxError::NoUser(name.to_string()))?;
        let gid = id_of("-g", name).ok_or_else(|| SandboxError::NoUser(name.to_string()))?;
        let name = Command::new("id")
            .args(["-un", "--", name])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| name.to_string());
        Ok(RunUser { name, uid, gid })
    }

    /// The dedicated system user `name`, created (no home, no login shell, its own group)
    /// when it does not exist yet. Needs root to create.
    pub fn ensure_system(name: &str) -> Result<RunUser, SandboxError> {
        if let Ok(u) = RunUser::lookup(name) {
            return Ok(u);
        }
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                "--comment",
                "Suanwang job runs",
                "--",
                name,
            ])
            .output()
            .map_err(|e| SandboxError::CreateUser { name: name.to_string(), reason: e.to_string() })?;
        if !out.status.success() {
            return Err(SandboxError::CreateUser {
                name: name.to_string(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        tracing::info!(user = name, "created the system user that runs jobs");
        RunUser::lookup(name)
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// The uid and gid of this process (from /proc; no libc needed).
pub fn current_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok())
    };
    (field("Uid:").unwrap_or(u32::MAX), field("Gid:").unwrap_or(u32::MAX))
}

/// Whether this process runs as root.
pub fn agent_is_root() -> bool {
    current_ids().0 == 0
}

/// How runs are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Mount and PID namespaces made as root.
    Root,
    /// Mount and PID namespaces inside a user namespace (an agent that is not root).
    UserNs,
    /// No namespaces: runs see the host's filesystem and processes.
    Off,
}

/// How an executor confines its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub isolation: Isolation,
    /// Runs may use the network (`false`: a private network namespace with no interfaces).
    pub network: bool,
}

/// Builds the run's root and drops to the run user. Arguments: the mount point for the new
/// root (an empty directory of the agent's), the work directory, uid, gid, `root` or `user`
/// (how the namespaces were made), then the command. Every step must succeed (`set -e`): a run
/// is never started half-isolated.
const SCRIPT: &str = r#"set -eu
P=$PATH; export PATH=/usr/sbin:/usr/bin:/sbin:/bin
R=$1 W=$2 U=$3 G=$4 MODE=$5; shift 5
mount --make-rprivate /
mount -t tmpfs -o mode=0755,nosuid,nodev sw-root "$R"
for d in /usr /bin /sbin /lib /lib32 /lib64 /libx32 /etc /opt; do
  if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$R$d"
  elif [ -d "$d" ]; then mkdir -p "$R$d"; mount --rbind "$d" "$R$d"; mount -o remount,bind,ro,nosuid "$R$d"; fi
done
mkdir -p "$R/dev" "$R/proc" "$R/tmp" "$R/sys" "$R/.old"
mount -t tmpfs -o mode=0755,nosuid sw-dev "$R/dev"
for n in null zero full random urandom tty; do
  if [ -e "/dev/$n" ]; then touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; fi
done
for n in /dev/nvidia* /dev/dri /dev/infiniband; do
  if [ -d "$n" ]; then mkdir -p "$R$n"; mount --rbind "$n" "$R$n"
  elif [ -c "$n" ]; then touch "$R$n"; mount --bind "$n" "$R$n"; fi
done
if [ -d /run/systemd/resolve ]; then
  mkdir -p "$R/run/systemd/resolve"; mount --bind /run/systemd/resolve "$R/run/systemd/resolve"
  mount -o remount,bind,ro "$R/run/systemd/resolve"
fi
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mkdir "$R/dev/shm"; mount -t tmpfs -o mode=1777,nosuid,nodev sw-shm "$R/dev/shm"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t tmpfs -o mode=1777,nosuid,nodev sw-tmp "$R/tmp"
mount --rbind /sys "$R/sys"; mount -o remount,bind,ro "$R/sys" 2>/dev/null || true
d=$R; IFS=/; for c in $W; do if [ -n "$c" ]; then d=$d/$c; [ -d "$d" ] || mkdir -m 0711 "$d"; fi; done; unset IFS
mount --bind "$W" "$R$W"
if command -v ip >/dev/null 2>&1; then ip link set lo up 2>/dev/null || true; fi
cd "$R"; pivot_root . .old; umount -l /.old; rmdir /.old
cd "$W"; export PATH="$P"; unset OLDPWD
if [ "$MODE" = root ]; then
  exec setpriv --reuid="$U" --regid="$G" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
fi
exec unshare --map-user="$U" --map-group="$G" -- setpriv --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
"#;

/// The command prefix that drops root to `user` (no supplementary groups, no capabilities,
/// `no_new_privs`): for a run when no namespace is made, and for the agent's own work with a
/// run's files (its checkpoints).
pub fn setpriv(user: &RunUser) -> Vec<String> {
    vec![
        "setpriv".into(),
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--clear-groups".into(),
        "--no-new-privs".into(),
        "--inh-caps=-all".into(),
        "--bounding-set=-all".into(),
        "--".into(),
    ]
}

impl Sandbox {
    /// No namespaces (runs may still be dropped to a run user).
    pub fn off() -> Sandbox {
        Sandbox { isolation: Isolation::Off, network: true }
    }

    /// The strongest isolation this machine allows, found by trying it once.
    pub fn detect(network: bool) -> Sandbox {
        let root = agent_is_root();
        let isolation = if Sandbox::probe(root, network) {
            if root { Isolation::Root } else { Isolation::UserNs }
        } else {
            Isolation::Off
        };
        Sandbox { isolation, network }
    }

    /// Runs `true` in a throw-away sandbox; whether that worked.
    fn probe(root: bool, network: bool) -> bool {
        let Ok(dir) = tempdir_for_probe() else { return false };
        let work = dir.join("work");
        let mnt = dir.join("root");
        let ok = std::fs::create_dir_all(&work).is_ok() && std::fs::create_dir_all(&mnt).is_ok() && {
            let (uid, gid) = current_ids();
            let me = RunUser { name: String::new(), uid, gid };
            let sandbox = Sandbox { isolation: if root { Isolation::Root } else { Isolation::UserNs }, network };
            let argv = sandbox.wrap(&mnt, &work, Some(&me), vec!["true".into()]);
            Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .is_ok_and(|o| {
                    if !o.status.success() {
                        tracing::info!(stderr = %String::from_utf8_lossy(&o.stderr).trim(), "namespaces unavailable");
                    }
                    o.status.success()
                })
        };
        let _ = std::fs::remove_dir_all(&dir);
        ok
    }

    /// What confines runs, for logs and the README.
    pub fn describe(&self) -> String {
        let net = if self.network { "network allowed" } else { "no network" };
        match self.isolation {
            Isolation::Root => format!("mount + PID namespaces (as root), {net}"),
            Isolation::UserNs => format!("mount + PID namespaces in a user namespace, {net}"),
            Isolation::Off => "no namespaces (the kernel or container forbids them)".into(),
        }
    }

    /// The argument vector that runs `cmd` in this sandbox as `user` (when given; the agent's
    /// user otherwise), in `work`, using `mount_point` (an empty directory only the agent can
    /// write) for the new root.
    pub fn wrap(&self, mount_point: &Path, work: &Path, user: Option<&RunUser>, cmd: Vec<String>) -> Vec<String> {
        let (uid, gid) = current_ids();
        let (run_uid, run_gid) = user.map_or((uid, gid), |u| (u.uid, u.gid));
        let mut argv: Vec<String> = vec!["unshare".into()];
        let mode = match self.isolation {
            Isolation::Off => {
                return match user {
                    Some(u) if agent_is_root() && !u.is_root() => setpriv(u).into_iter().chain(cmd).collect(),
                    _ => cmd,
                };
            }
            Isolation::Root => "root",
            Isolation::UserNs => {
                argv.push("--map-root-user".into());
                "user"
            }
        };
        argv.extend(["--mount", "--pid", "--fork", "--kill-child"].map(String::from));
        if !self.network {
            argv.push("--net".into());
        }
        argv.extend(["--".into(), "sh".into(), "-c".into(), SCRIPT.into(), "sw-sandbox".into()]);
        argv.extend([
            mount_point.display().to_string(),
            work.display().to_string(),
            run_uid.to_string(),
            run_gid.to_string(),
            mode.into(),
        ]);
        argv.extend(cmd);
        argv
    }
}

fn tempdir_for_probe() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("suanwang-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
