//! Child processes the benchmark starts, and what `/proc` says about them.
//!
//! Every relay, echo peer and coturn tool runs as a child process, so its
//! CPU time and memory can be read from `/proc/<pid>` alone, apart from the
//! load generator's. Children must never outlive the benchmark: a
//! [`ChildGuard`] kills its child when dropped (also while unwinding from a
//! panic), and each child is asked by the kernel to die with the benchmark
//! (`PR_SET_PDEATHSIG`), which covers a benchmark killed with SIGKILL.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running child process, killed and reaped when dropped.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Starts `command`, its output going to `log` (a file, so a chatty
    /// child can never block on a full pipe nobody reads).
    ///
    /// Spawn from a thread that outlives the child: the kernel's parent-death
    /// signal follows the spawning thread, not the process.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let parent = std::process::id();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: between fork and exec the closure only makes two
        // async-signal-safe system calls (prctl, getppid) and allocates
        // nothing on the success path.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The benchmark may have died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("the benchmark is gone"));
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {name} ({:?})", command.get_program()))?;
        Ok(Self {
            child,
            name: name.to_owned(),
        })
    }

    /// The child's process id, for `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the child has already exited (a relay that died during a
    /// run must not be reported as a relay that dropped everything).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited early: {status}", self.name),
        }
    }

    /// Waits for the child to exit by itself, at most `limit`; kills it and
    /// fails past that.
    pub fn wait_at_most(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not finish within {limit:?}; killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of the benchmark's own (coturn's database, logs), removed
/// when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh directory under the system's temporary directory.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "konsult-relay-bench-{}-{label}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CPU time and memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    /// User plus system CPU time of all its threads so far.
    pub cpu: Duration,
    /// Resident set size (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

impl ProcessSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        // The command name (field 2) is in parentheses and may hold spaces;
        // utime and stime are fields 14 and 15, counted from the start.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("no ')' in stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // `after_name` starts at field 3 (the state).
        let ticks = |field: usize| -> anyhow::Result<u64> {
            fields
                .get(field - 3)
                .context("short stat line")?
                .parse::<u64>()
                .context("stat field is not a number")
        };
        let ticks_total = ticks(14)? + ticks(15)?;
        // SAFETY: sysconf has no preconditions.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let cpu = Duration::from_nanos(ticks_total * 1_000_000_000 / ticks_per_second);

        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let kib = |key: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .with_context(|| format!("no {key} in status"))
        };
        Ok(Self {
            cpu,
            rss_kib: kib("VmRSS:")?,
            peak_rss_kib: kib("VmHWM:")?,
        })
    }
}

/// The path of `name` on `PATH`, if it is there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A UDP port on 127.0.0.1 that was free a moment ago (coturn and its tools
/// take a port number, not a socket).
pub fn free_udp_port() -> anyhow::Result<u16> {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").context("bind a probe socket")?;
    Ok(probe.local_addr()?.port())
}
