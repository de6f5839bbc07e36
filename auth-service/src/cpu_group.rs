//! A CPU cgroup that threads of this process move into one by one (`AUTH_ARGON2_CGROUP`, for the
//! password-hashing threads).

use std::path::PathBuf;

/// Why a cgroup of its own: `SCHED_IDLE` only yields to threads of the same scheduling group. When
/// auth-service is a group of its own (a container, a systemd unit, or a session under the
/// kernel's autogroup), its hashing competes with the other services' groups as a full group, and
/// a woken thread of theirs can wait up to a scheduler tick behind it. A cgroup with
/// `cpu.idle = 1` makes the hashing idle at that level too (measured in docs/performance.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuGroup {
    pub dir: PathBuf,
    /// `cgroup.threads` (cgroup v2, threaded) or `tasks` (v1): where a thread id is written.
    threads_file: PathBuf,
}

impl CpuGroup {
    /// A cgroup directory that takes thread ids; `Err` says what is wrong with it.
    pub fn open(dir: PathBuf) -> Result<Self, String> {
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        let threads_file = ["cgroup.threads", "tasks"]
            .iter()
            .map(|name| dir.join(name))
            .find(|file| file.is_file())
            .ok_or_else(|| {
                format!(
                    "{} holds neither cgroup.threads nor tasks: not a cgroup",
                    dir.display()
                )
            })?;
        Ok(CpuGroup { dir, threads_file })
    }

    /// Moves the calling thread (not its process) into the group.
    pub fn admit_this_thread(&self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        #[cfg(not(target_os = "linux"))]
        let tid = 0;
        std::fs::write(&self.threads_file, tid.to_string())
    }
}
