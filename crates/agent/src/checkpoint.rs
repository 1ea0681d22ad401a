//! Checkpoints of real runs: a run's checkpoint directory packed as a gzipped tar (with the
//! run's rights), its signature, and the size an archive would unpack to.

use std::path::Path;

use crate::sandbox::{self, RunUser};

/// The largest checkpoint the control plane keeps (gzipped tar).
pub const MAX_CHECKPOINT: usize = suanwang_api::agent::MAX_CHECKPOINT_BYTES;
/// The most a restored checkpoint may unpack to (a small archive can expand enormously).
pub const MAX_CHECKPOINT_UNPACKED: u64 = 8 * 1024 * 1024 * 1024;

/// Why packing or unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("running tar (needed for checkpoints): {0}")]
    Run(#[from] std::io::Error),
    #[error("tar {args}: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("it would unpack to {0} bytes (more than {MAX_CHECKPOINT_UNPACKED})")]
    TooLarge(u64),
}

/// Runs `tar` with `args` (as `user`, when the agent is root: a run's checkpoint is the run's
/// to shape, so it is packed and unpacked with the run's rights, never root's), feeding it
/// `input`; its standard output. It works in `cwd` (entered with the agent's rights: the run's
/// user may not be able to pass through the agent's data directory to reach it).
pub fn tar(args: &[&str], input: &[u8], user: Option<&RunUser>, cwd: &Path) -> Result<Vec<u8>, TarError> {
    use std::io::Write as _;
    let mut cmd = match user {
        Some(u) if sandbox::agent_is_root() => {
            let mut c = std::process::Command::new("setpriv");
            c.args(&sandbox::setpriv(u)[1..]).arg("tar");
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
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("tar's stdin"))?;
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    if !out.status.success() {
        return Err(TarError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// The total size of the files in a gzipped tar, from `tar -tvz` (the third column).
pub fn unpacked_size(data: &[u8]) -> Result<u64, TarError> {
    let listing = tar(&["-tvzf", "-"], data, None, Path::new("/"))?;
    Ok(String::from_utf8_lossy(&listing)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .fold(0u64, u64::saturating_add))
}

/// Unpacks the gzipped tar `data` into `dir` as `user`, after checking what it would unpack to.
pub fn restore(data: &[u8], dir: &Path, user: Option<&RunUser>) -> Result<(), TarError> {
    let size = unpacked_size(data)?;
    if size > MAX_CHECKPOINT_UNPACKED {
        return Err(TarError::TooLarge(size));
    }
    std::fs::create_dir_all(dir)?;
    crate::executor::give(dir, user)?;
    // GNU tar refuses absolute names and `..`; owners are not restored; it runs as the run's
    // user, so an archive can write nothing that user could not
    tar(&["-xzf", "-", "--no-same-owner"], data, user, dir)?;
    Ok(())
}

/// A cheap signature of a directory's files (names, sizes, modification times): it changes
/// when the run writes a new checkpoint.
pub fn signature(dir: &Path) -> u64 {
    fn walk(dir: &Path, out: &mut Vec<(String, u64, u128)>) {
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
