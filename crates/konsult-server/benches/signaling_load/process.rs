//! Child processes the benchmark starts, what `/proc` says about them, and
//! the machine it runs on.
//!
//! Both servers under test run as child processes, so their CPU time and
//! memory are read from `/proc/<pid>` apart from the load generator's.
//! Children never outlive the benchmark: a [`ChildGuard`] kills its child
//! when dropped (also while unwinding from a panic), and each child is
//! asked by the kernel to die with the thread that started it
//! (`PR_SET_PDEATHSIG`), which covers a benchmark killed with SIGKILL.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running child process, killed and reaped when dropped.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Starts `command`, its output appended to `log` (a file, so a chatty
    /// child never blocks on a pipe nobody reads).
    ///
    /// Spawn from the main thread: the kernel's parent-death signal follows
    /// the spawning thread, not the process.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
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

    /// Fails when the child has already exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited early: {status}", self.name),
        }
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL after `patience`.
    pub fn stop(mut self, patience: Duration) {
        // SAFETY: kill(2) with a pid of our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills.
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CPU budget for child processes: a cgroup of the (v1) `cpu`
/// controller with a CFS quota, so that each server of a cluster gets the
/// same share of the machine as one server alone had (as if each ran on a
/// machine of its own). Removed when dropped, after its processes died.
pub struct CpuBudget {
    dir: std::path::PathBuf,
}

impl CpuBudget {
    /// Where the `cpu` controller is mounted (cgroup v1).
    const ROOT: &'static str = "/sys/fs/cgroup/cpu";

    /// A budget of `cpus` cores (0.5: half a core) named `name`; an error
    /// when this machine offers no writable `cpu` controller.
    pub fn new(name: &str, cpus: f64) -> anyhow::Result<Self> {
        let dir = Path::new(Self::ROOT).join(name);
        std::fs::create_dir(&dir).with_context(|| {
            format!("make the cgroup {} (cgroup v1 cpu, as root)", dir.display())
        })?;
        let budget = Self { dir };
        // A short period: a throttled process waits at most this long, not
        // the default 100 ms that would show in every p99.
        let period = 10_000u64;
        std::fs::write(budget.dir.join("cpu.cfs_period_us"), period.to_string())?;
        std::fs::write(
            budget.dir.join("cpu.cfs_quota_us"),
            ((cpus * period as f64) as u64).max(1000).to_string(),
        )?;
        Ok(budget)
    }

    /// Puts process `pid` (all its threads) under the budget.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("put {pid} into {}", self.dir.display()))
    }

    /// Time the budget's processes were throttled so far.
    pub fn throttled(&self) -> Duration {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        stat.lines()
            .find_map(|l| l.strip_prefix("throttled_time "))
            .and_then(|ns| ns.trim().parse().ok())
            .map_or(Duration::ZERO, Duration::from_nanos)
    }
}

impl Drop for CpuBudget {
    fn drop(&mut self) {
        // Whatever still lives in it goes back to the root first.
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(Path::new(Self::ROOT).join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// CPU time and memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    /// When it was read.
    pub at: Instant,
    /// User plus system CPU time of all its threads so far.
    pub cpu: Duration,
    /// Resident set size (`VmRSS`), in KiB.
    pub rss_kib: u64,
}

impl ProcessSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` 0: this
    /// process).
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let dir = if pid == 0 {
            "/proc/self".to_owned()
        } else {
            format!("/proc/{pid}")
        };
        let stat = std::fs::read_to_string(format!("{dir}/stat"))
            .with_context(|| format!("{dir}/stat"))?;
        // The command name (field 2) is in parentheses and may hold spaces;
        // utime and stime are fields 14 and 15.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("no ')' in stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |field: usize| -> anyhow::Result<u64> {
            fields
                .get(field - 3)
                .context("short stat line")?
                .parse::<u64>()
                .context("stat field is not a number")
        };
        let ticks_total = ticks(14)? + ticks(15)?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let cpu = Duration::from_nanos(ticks_total * 1_000_000_000 / per_second);
        let status = std::fs::read_to_string(format!("{dir}/status"))
            .with_context(|| format!("{dir}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .context("no VmRSS in status")?;
        Ok(Self {
            at: Instant::now(),
            cpu,
            rss_kib,
        })
    }

    /// CPU time between `self` and a later sample, in % of one core.
    pub fn cpu_percent_until(&self, later: &ProcessSample) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return f64::NAN;
        }
        later.cpu.saturating_sub(self.cpu).as_secs_f64() * 100.0 / wall
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (children inherit
/// it); returns the limit now in force.
pub fn raise_open_files_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error()).context("getrlimit");
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(io::Error::last_os_error()).context("setrlimit");
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// Ports below the ephemeral range, as the tests' servers get them.
#[path = "../../tests/common/ports.rs"]
mod ports;
pub use ports::free_port;

/// One line about the machine: cores, CPU model, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    format!("nproc {cores}, {cpu}{memory}, Linux {kernel}")
}

/// The last `bytes` of a log file.
pub fn log_tail(path: &Path, bytes: usize) -> String {
    let log = std::fs::read(path).unwrap_or_default();
    let start = log.len().saturating_sub(bytes);
    String::from_utf8_lossy(&log[start..]).into_owned()
}

/// The whole machine's CPU time at one instant (`/proc/stat`, all cores).
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    busy: u64,
    steal: u64,
    total: u64,
}

impl MachineSample {
    /// Reads the `cpu` line of `/proc/stat`.
    pub fn read() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("no cpu line in /proc/stat")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|t| t.parse().unwrap_or(0))
            .collect();
        let field = |n: usize| ticks.get(n).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is
        // already in user).
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        let steal = field(7);
        Ok(Self {
            busy,
            steal,
            total: busy + steal + field(3) + field(4),
        })
    }

    /// (busy, stolen by the hypervisor) between `self` and a later sample,
    /// in % of all the machine's cores.
    pub fn busy_and_steal_until(&self, later: &MachineSample) -> (f64, f64) {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        (
            later.busy.saturating_sub(self.busy) as f64 * 100.0 / total,
            later.steal.saturating_sub(self.steal) as f64 * 100.0 / total,
        )
    }
}
