//! One window of candidates streamed through admitted pairs, and what it
//! shows: delivery, latency percentiles, and the CPU of the servers, of
//! this generator and of the whole machine.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::participants::{Control, Population};
use super::process::{MachineSample, ProcessSample};

/// Latency above which a saturation step failed.
pub const SATURATION_P99: Duration = Duration::from_millis(50);

/// Saturation steps halve the gap between the highest rate held and the
/// lowest that was not until it is at most this (msg/s).
pub const SATURATION_RESOLUTION: u32 = 2_500;
/// Share delivered below which a saturation step failed.
pub const SATURATION_DELIVERED: f64 = 99.0;

/// One window of streamed candidates.
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    pub target: u32,
    pub sent: u64,
    pub received: u64,
    pub late: u64,
    pub out_of_order: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub window: Duration,
    pub server_cpu: Duration,
    pub server_cpu_percent: f64,
    pub generator_cpu_percent: f64,
    /// The whole machine: busy and stolen, in % of all its cores.
    pub machine_busy_percent: f64,
    pub machine_steal_percent: f64,
}

impl Streamed {
    pub fn delivered_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.received as f64 * 100.0 / self.sent as f64
        }
    }

    pub fn achieved(&self) -> f64 {
        self.received as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn cpu_per_message_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.received.max(1) as f64
    }

    pub fn held(&self) -> bool {
        self.p99 <= SATURATION_P99 && self.delivered_percent() >= SATURATION_DELIVERED
    }

    /// The machine's CPU that neither the server nor the generator used,
    /// in % of all its cores (the kernel's own threads, or another job).
    pub fn others_percent(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        (self.machine_busy_percent - (self.server_cpu_percent + self.generator_cpu_percent) / cores)
            .max(0.0)
    }

    /// One line, `who` being the server or servers measured.
    pub fn print(&self, label: &str, who: &str) {
        println!(
            "  {label:<22} {:<7} {:>7}/s  achieved {:>8.0}/s  delivered {:>7.3} %  \
             p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.1} ms  server CPU {:>5.1} % = {:>6.1} µs/msg  \
             gen CPU {:>5.1} %  machine busy {:>3.0} % (others {:.0} %, steal {:.0} %)",
            who,
            self.target,
            self.achieved(),
            self.delivered_percent(),
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.server_cpu_percent,
            self.cpu_per_message_us(),
            self.generator_cpu_percent,
            self.machine_busy_percent,
            self.others_percent(),
            self.machine_steal_percent,
        );
        if self.others_percent() > 20.0 || self.machine_steal_percent > 10.0 {
            println!(
                "      WARNING: {:.0} % of the machine went to other processes and {:.0} % \
                 was stolen by the hypervisor in this window: its figures are disturbed",
                self.others_percent(),
                self.machine_steal_percent
            );
        }
        if self.late > 0 || self.out_of_order > 0 {
            println!(
                "      {} arrived after the window, {} out of order",
                self.late, self.out_of_order
            );
        }
    }
}

/// Streams candidates through every ready pair of `population` at `rate`
/// in all for `window`, then waits `drain` for the last ones; the server
/// CPU is that of the processes `servers` together.
pub async fn stream(
    population: &Population,
    servers: &[u32],
    phase: u32,
    rate: u32,
    window: Duration,
    drain: Duration,
) -> anyhow::Result<Streamed> {
    let shared = &population.shared;
    let senders = 2 * shared.ready_pairs.load(Relaxed);
    if senders == 0 {
        bail!("no pair is ready to stream");
    }
    let per_sender_hz = rate as f64 / senders as f64;
    shared.begin_phase(phase);
    let server_before = sample_all(servers)?;
    let generator_before = ProcessSample::read(0)?;
    let machine_before = MachineSample::read()?;
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + window;
    population.tell(Control::Stream {
        phase,
        per_sender_hz,
        start,
        until,
    });
    tokio::time::sleep_until((until + drain).into()).await;
    let mut latencies = population.report(Duration::from_secs(10)).await;
    let server_after = sample_all(servers)?;
    let generator_after = ProcessSample::read(0)?;
    let (machine_busy_percent, machine_steal_percent) =
        machine_before.busy_and_steal_until(&MachineSample::read()?);
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(*us)))
    };
    let streamed = Streamed {
        target: rate,
        sent: shared.sent.load(Relaxed),
        received: shared.received.load(Relaxed),
        late: shared.late.swap(0, Relaxed),
        out_of_order: shared.out_of_order.load(Relaxed),
        p50: at(0.50),
        p99: at(0.99),
        max: latencies
            .last()
            .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(*us))),
        window,
        server_cpu: server_after.cpu.saturating_sub(server_before.cpu),
        server_cpu_percent: server_before.cpu_percent_until(&server_after),
        generator_cpu_percent: generator_before.cpu_percent_until(&generator_after),
        machine_busy_percent,
        machine_steal_percent,
    };
    // Let every token bucket refill before the next window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(streamed)
}

/// The processes `pids` read together: their CPU time added up, their
/// memory added up.
fn sample_all(pids: &[u32]) -> anyhow::Result<ProcessSample> {
    let mut all: Option<ProcessSample> = None;
    for pid in pids {
        let one = ProcessSample::read(*pid)?;
        all = Some(match all {
            None => one,
            Some(sum) => ProcessSample {
                at: sum.at,
                cpu: sum.cpu + one.cpu,
                rss_kib: sum.rss_kib + one.rss_kib,
            },
        });
    }
    all.ok_or_else(|| anyhow::anyhow!("no server to sample"))
}

/// p50, p99 and max of `µs`, as durations.
pub fn percentiles(us: &mut [u32]) -> (Duration, Duration, Duration) {
    us.sort_unstable();
    let at = |q: f64| {
        us.get(((us.len() as f64 * q) as usize).min(us.len().saturating_sub(1)))
            .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(*us)))
    };
    (at(0.5), at(0.99), at(1.0))
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of `values` (NaN when there are none).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
