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
//! The root is built by [`helper_main`], a few dozen system calls in one process: `unshare`
//! starts the agent's own binary with [`HELPER_ARG`] inside the new namespaces, it mounts, pivots
//! and executes the run (through `setpriv`). A shell script of `mount` and `mkdir` commands did
//! the same in about 70 ms, most of a short job's time from submission to completion (issue 11).
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
    /// The executable that builds a run's root: a binary that calls [`helper_main`] when its
    /// first argument is [`HELPER_ARG`] (`suanwang` does; by default the running executable).
    pub helper: std::path::PathBuf,
}

/// The first argument that makes a Suanwang binary act as the sandbox helper
/// ([`helper_main`]) instead of parsing its command line.
pub const HELPER_ARG: &str = "__sandbox-exec";

/// The sandbox helper, run by `unshare` inside the run's fresh namespaces. Arguments (after
/// [`HELPER_ARG`]): the mount point for the new root (an empty directory only the agent can
/// write), the work directory, uid, gid, `root` or `user` (how the namespaces were made), `net`
/// or `nonet`, `--`, then the command. It builds the root, pivots into it and executes the run
/// as the run user; it returns only when a step failed — every step must succeed, a run is never
/// started half-isolated — with the error naming the step.
pub fn helper_main(args: &[std::ffi::OsString]) -> String {
    match build_root(args) {
        Ok(never) => match never {},
        Err(e) => format!("sandbox: {e}"),
    }
}

/// One step of building the root that failed, and why (an I/O error or a system call's errno).
fn step<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

fn build_root(args: &[std::ffi::OsString]) -> Result<std::convert::Infallible, String> {
    use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags, mount, mount_bind, mount_bind_recursive};
    use std::os::unix::fs::{DirBuilderExt as _, symlink};
    use std::os::unix::process::CommandExt as _;
    use std::path::PathBuf;

    let [root, work, uid, gid, mode, net, sep, cmd @ ..] = args else {
        return Err("usage: ROOT WORK UID GID root|user net|nonet -- COMMAND…".into());
    };
    if sep != "--" || cmd.is_empty() {
        return Err("usage: ROOT WORK UID GID root|user net|nonet -- COMMAND…".into());
    }
    // the first step changes how mounts propagate: never on the host's own mount namespace
    if rustix::process::getpid().as_raw_nonzero().get() != 1 {
        return Err("not the first process of a new PID namespace (run under `unshare --mount --pid --fork`)".into());
    }
    let (root, work) = (PathBuf::from(root), PathBuf::from(work));
    let (uid, gid) = (uid.to_string_lossy().into_owned(), gid.to_string_lossy().into_owned());
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let tmpfs = |name: &str, at: &Path, flags: MountFlags, opts: &std::ffi::CStr| {
        mount(name, at, "tmpfs", flags, opts).map_err(step(format!("tmpfs on {}", at.display())))
    };
    // read-only, keeping the flags the mount already has (in a user namespace the kernel refuses
    // a remount that would clear a locked nodev or noexec)
    let read_only = |at: &Path| -> Result<(), String> {
        let have = rustix::fs::statvfs(at).map_err(step(format!("statvfs {}", at.display())))?.f_flag;
        let mut flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID;
        for (st, ms) in [
            (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
            (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
            (rustix::fs::StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
            (rustix::fs::StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
            (rustix::fs::StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
        ] {
            if have.contains(st) {
                flags |= ms;
            }
        }
        rustix::mount::mount_remount(at, flags, "").map_err(step(format!("read-only {}", at.display())))
    };
    let touch = |p: &Path| std::fs::File::create(p).map(drop).map_err(step(format!("creating {}", p.display())));
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(step(format!("mkdir {}", p.display())));

    // mounts made in the new namespace stay in it
    rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(step("making / private"))?;
    tmpfs("sw-root", &root, MountFlags::NOSUID | MountFlags::NODEV, c"mode=0755")?;
    for d in ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"] {
        let d = Path::new(d);
        let Ok(meta) = std::fs::symlink_metadata(d) else { continue };
        if meta.file_type().is_symlink() {
            let to = std::fs::read_link(d).map_err(step(format!("readlink {}", d.display())))?;
            symlink(&to, inside(d)).map_err(step(format!("symlink {}", d.display())))?;
        } else if meta.is_dir() {
            mkdir(&inside(d))?;
            mount_bind_recursive(d, inside(d)).map_err(step(format!("bind {}", d.display())))?;
            read_only(&inside(d))?;
        }
    }
    for d in ["/dev", "/proc", "/tmp", "/sys", "/.old"] {
        mkdir(&inside(Path::new(d)))?;
    }
    let dev = inside(Path::new("/dev"));
    tmpfs("sw-dev", &dev, MountFlags::NOSUID, c"mode=0755")?;
    for n in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(n);
        if host.exists() {
            touch(&dev.join(n))?;
            mount_bind(&host, dev.join(n)).map_err(step(format!("bind {}", host.display())))?;
        }
    }
    // accelerators: GPUs, DRI and InfiniBand devices where the machine has them
    let mut devices: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nvidia")))
                .collect()
        })
        .unwrap_or_default();
    devices.extend([PathBuf::from("/dev/dri"), PathBuf::from("/dev/infiniband")]);
    for host in devices {
        let Ok(meta) = std::fs::metadata(&host) else { continue };
        if meta.is_dir() {
            mkdir(&inside(&host))?;
            mount_bind_recursive(&host, inside(&host)).map_err(step(format!("bind {}", host.display())))?;
        } else if std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()) {
            touch(&inside(&host))?;
            mount_bind(&host, inside(&host)).map_err(step(format!("bind {}", host.display())))?;
        }
    }
    let resolve = Path::new("/run/systemd/resolve");
    if resolve.is_dir() {
        mkdir(&inside(resolve))?;
        mount_bind(resolve, inside(resolve)).map_err(step("bind /run/systemd/resolve"))?;
        read_only(&inside(resolve))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).map_err(step(format!("symlink /dev/{link}")))?;
    }
    mkdir(&dev.join("shm"))?;
    tmpfs("sw-shm", &dev.join("shm"), MountFlags::NOSUID | MountFlags::NODEV, c"mode=1777")?;
    let proc = inside(Path::new("/proc"));
    mount("proc", &proc, "proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None)
        .map_err(step("mounting /proc"))?;
    tmpfs("sw-tmp", &inside(Path::new("/tmp")), MountFlags::NOSUID | MountFlags::NODEV, c"mode=1777")?;
    let sys = inside(Path::new("/sys"));
    mount_bind_recursive("/sys", &sys).map_err(step("bind /sys"))?;
    let _ = read_only(&sys); // best effort, as before: some kernels refuse it in a user namespace
    // the work directory: the only writable path from the host
    let mut d = root.clone();
    for c in work.components().skip(1) {
        d.push(c);
        if !d.is_dir() {
            std::fs::DirBuilder::new().mode(0o711).create(&d).map_err(step(format!("mkdir {}", d.display())))?;
        }
    }
    mount_bind(&work, inside(&work)).map_err(step(format!("bind {}", work.display())))?;
    if net == "nonet" {
        // a private network namespace has a loopback that is down
        let _ = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stderr(std::process::Stdio::null())
            .status();
    }
    rustix::process::chdir(&root).map_err(step("chdir to the new root"))?;
    rustix::process::pivot_root(".", ".old").map_err(step("pivot_root"))?;
    rustix::mount::unmount("/.old", UnmountFlags::DETACH).map_err(step("detaching the old root"))?;
    std::fs::remove_dir("/.old").map_err(step("rmdir /.old"))?;
    rustix::process::chdir(&work).map_err(step(format!("chdir {}", work.display())))?;
    let drop_caps = ["--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"];
    let mut exec = if mode == "root" {
        let mut c = std::process::Command::new(tool("setpriv"));
        c.args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into()]).args(drop_caps);
        c
    } else {
        let mut c = std::process::Command::new(tool("unshare"));
        c.args([format!("--map-user={uid}"), format!("--map-group={gid}"), "--".into(), tool("setpriv")])
            .args(drop_caps);
        c
    };
    let err = exec.args(cmd).env_remove("OLDPWD").exec();
    Err(format!("executing the run: {err}"))
}

/// A system tool by its full path (the run's `PATH` is left as the job gave it).
fn tool(name: &str) -> String {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| name.to_string())
}

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
        Sandbox { isolation: Isolation::Off, network: true, helper: std::path::PathBuf::new() }
    }

    /// The strongest isolation this machine allows, found by trying it once, with the running
    /// executable as the helper.
    pub fn detect(network: bool) -> Sandbox {
        match std::env::current_exe() {
            Ok(helper) => Sandbox::detect_with(network, helper),
            Err(e) => {
                tracing::warn!(error = %e, "the running executable is unknown: no namespaces");
                Sandbox { network, ..Sandbox::off() }
            }
        }
    }

    /// As [`Sandbox::detect`], with `helper` building the runs' roots.
    pub fn detect_with(network: bool, helper: std::path::PathBuf) -> Sandbox {
        let root = agent_is_root();
        let isolation = if Sandbox::probe(root, network, &helper) {
            if root { Isolation::Root } else { Isolation::UserNs }
        } else {
            Isolation::Off
        };
        Sandbox { isolation, network, helper }
    }

    /// Runs `true` in a throw-away sandbox; whether that worked.
    fn probe(root: bool, network: bool, helper: &Path) -> bool {
        let Ok(dir) = tempdir_for_probe() else { return false };
        let work = dir.join("work");
        let mnt = dir.join("root");
        let ok = std::fs::create_dir_all(&work).is_ok() && std::fs::create_dir_all(&mnt).is_ok() && {
            let (uid, gid) = current_ids();
            let me = RunUser { name: String::new(), uid, gid };
            let isolation = if root { Isolation::Root } else { Isolation::UserNs };
            let sandbox = Sandbox { isolation, network, helper: helper.to_path_buf() };
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
        argv.extend(["--".into(), self.helper.display().to_string(), HELPER_ARG.into()]);
        argv.extend([
            mount_point.display().to_string(),
            work.display().to_string(),
            run_uid.to_string(),
            run_gid.to_string(),
            mode.into(),
            if self.network { "net" } else { "nonet" }.into(),
            "--".into(),
        ]);
        argv.extend(cmd);
        argv
    }
}

fn tempdir_for_probe() -> std::io::Result<std::path::PathBuf> {
    // one directory per probe: two probes of one process (tests) must not remove each other's
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("suanwang-probe-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(|s| std::ffi::OsString::from(*s)).collect()
    }

    #[test]
    fn the_helper_refuses_bad_arguments_and_the_hosts_namespaces() {
        assert!(helper_main(&args(&["/r", "/w"])).contains("usage"));
        assert!(helper_main(&args(&["/r", "/w", "1", "1", "root", "net", "true"])).contains("usage"), "no --");
        assert!(helper_main(&args(&["/r", "/w", "1", "1", "root", "net", "--"])).contains("usage"), "no command");
        // a test process is not PID 1: nothing is mounted
        let e = helper_main(&args(&["/r", "/w", "1", "1", "root", "net", "--", "true"]));
        assert!(e.starts_with("sandbox: not the first process of a new PID namespace"), "{e}");
    }

    #[test]
    fn wrap_starts_the_helper_inside_unshare() {
        let s = Sandbox { isolation: Isolation::Root, network: false, helper: "/opt/suanwang".into() };
        let argv = s.wrap(Path::new("/m"), Path::new("/w"), None, vec!["echo".into(), "hi".into()]);
        let at = argv.iter().position(|a| a == "/opt/suanwang").expect("helper in argv");
        assert_eq!(argv[0], "unshare");
        assert!(argv[..at].contains(&"--net".to_string()), "{argv:?}");
        assert_eq!(argv[at + 1], HELPER_ARG);
        assert_eq!(&argv[at + 2..at + 4], ["/m", "/w"]);
        assert_eq!(&argv[at + 6..], ["root", "nonet", "--", "echo", "hi"]);
    }
}
