//! Konsult's embedded relay side by side with coturn (issue 13), in one run.
//!
//! ```sh
//! cargo bench -p konsult-relay --bench relay_vs_coturn              # full, ~8 min
//! cargo bench -p konsult-relay --bench relay_vs_coturn -- --smoke   # every scenario, small
//! cargo test  -p konsult-relay --bench relay_vs_coturn -- --smoke   # the same in the test profile
//! ```
//!
//! Both relays run as processes of their own on 127.0.0.1, with the same
//! TURN REST secret and realm, and get the same load in alternating rounds
//! (Konsult, coturn, Konsult, coturn, ...), so a machine that gets busier
//! during the run slows both alike. Konsult's relay is this binary run
//! again with [`relays::SERVE_ENV`] set. CPU time and memory are read from
//! each relay's `/proc/<pid>`, the load generators being other processes.
//!
//! The scenarios, each reported per relay and as a Konsult/coturn ratio:
//!
//! 1. `turnutils_uclient` round trips through the relay to an echo peer,
//!    with 120- and 1200-byte messages: round trips completed and the
//!    relay's CPU time per round trip.
//! 2. `turnutils_uclient` with 400 allocations sending to each other:
//!    packet loss.
//! 3. Video-like load (20 calls, 2.5 Mbit/s each way for 30 s, ChannelData
//!    as browsers send it): loss and p99 jitter.
//! 4. 300,000 unauthenticated Allocate requests: growth of the relay's
//!    resident memory.
//!
//! A bar that is missed is reported (FAIL), never a panic; the process
//! exits non-zero only when a scenario could not run. `--smoke` (or
//! `KONSULT_BENCH_SMOKE=1`) runs every scenario with small counts in one
//! round, to show that it runs; its figures mean nothing. `--rounds N` (or
//! `KONSULT_BENCH_ROUNDS`) sets the rounds of a full run. Without coturn's
//! programs a smoke run is skipped with a message naming the package; a
//! full run fails, unless `KONSULT_SKIP_COTURN=1` is set, as the coturn
//! interoperability tests do. The method and measured figures are in
//! `docs/benchmarks.md`.

mod relay_bench;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use relay_bench::flood::{self, FloodLoad, FloodOutcome};
use relay_bench::process::ScratchDir;
use relay_bench::relays::{serve_konsult, Programs, RelayKind, RunningRelay, SERVE_ENV};
use relay_bench::uclient::{self, UclientLoad, UclientOutcome};
use relay_bench::video::{self, VideoLoad, VideoOutcome};

/// The bars of issue 13, each relative to coturn in the same run, so that a
/// shared, busy machine moves both sides of each comparison.
mod bars {
    /// Round trips Konsult completes, at least coturn's.
    pub const ROUND_TRIPS_RATIO_MIN: f64 = 1.0;
    /// Konsult's relay CPU time per round trip, at most coturn's.
    pub const CPU_PER_ROUND_TRIP_RATIO_MAX: f64 = 1.0;
    /// Konsult's packet loss above coturn's, in percentage points: none
    /// ("0 % loss where coturn has 0 %").
    pub const LOSS_ABOVE_COTURN_MAX_POINTS: f64 = 0.0;
    /// Konsult's p99 jitter above coturn's, in milliseconds: none.
    pub const JITTER_ABOVE_COTURN_MAX_MS: f64 = 0.0;
    /// Growth of Konsult's resident memory over 300k unauthenticated
    /// Allocates.
    pub const FLOOD_GROWTH_MAX_MIB: f64 = 2.0;
}

/// How much each scenario sends.
#[derive(Debug, Clone, Copy)]
struct Plan {
    smoke: bool,
    /// The scenarios to run, bit n for scenario n (1–4); 0: all.
    only: u8,
    rounds: u32,
    round_trips: UclientLoad,
    round_trip_lengths: [u32; 2],
    many_allocations: UclientLoad,
    video: VideoLoad,
    flood: FloodLoad,
}

impl Plan {
    /// The full benchmark: a few minutes per scenario on two cores.
    fn full(rounds: u32) -> Self {
        Self {
            smoke: false,
            only: 0,
            rounds,
            // 20 allocations × one message every 2 ms: 10,000 round trips
            // (20,000 relayed datagrams) a second for 4 s.
            round_trips: UclientLoad {
                allocations: 20,
                messages: 2_000,
                length: 0, // set per run from round_trip_lengths
                interval_ms: 2,
                client_to_client: false,
            },
            round_trip_lengths: [120, 1200],
            // 400 allocations, 200 pairs, each a 50 packets/s audio-like
            // stream for 5 s: 20,000 relayed datagrams a second.
            many_allocations: UclientLoad {
                allocations: 400,
                messages: 250,
                length: 120,
                interval_ms: 20,
                client_to_client: true,
            },
            video: VideoLoad {
                calls: 20,
                bitrate_bps: 2_500_000,
                packet_bytes: 1200,
                duration: Duration::from_secs(30),
            },
            flood: FloodLoad {
                requests: 300_000,
                sockets: 4,
            },
        }
    }

    /// Every scenario, small, once: shows that it all runs.
    fn smoke() -> Self {
        let full = Self::full(1);
        Self {
            smoke: true,
            only: 0,
            rounds: 1,
            round_trips: UclientLoad {
                allocations: 2,
                messages: 20,
                interval_ms: 20,
                ..full.round_trips
            },
            many_allocations: UclientLoad {
                allocations: 8,
                messages: 10,
                ..full.many_allocations
            },
            video: VideoLoad {
                calls: 2,
                duration: Duration::from_secs(2),
                ..full.video
            },
            flood: FloodLoad {
                requests: 4_000,
                sockets: 4,
            },
            ..full
        }
    }
}

fn main() -> ExitCode {
    // Re-executed as the Konsult relay under test.
    if let Ok(listen) = std::env::var(SERVE_ENV) {
        return match serve_konsult(&listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("konsult relay: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let plan = match plan_from_command_line() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("relay_vs_coturn: {e:#}");
            return ExitCode::from(2);
        }
    };
    let programs = match Programs::find() {
        Ok(programs) => programs,
        // The test suite's smoke run skips on a machine where coturn could
        // not be installed; a full run, asked for by hand, fails instead.
        Err(e) if plan.smoke || std::env::var("KONSULT_SKIP_COTURN").as_deref() == Ok("1") => {
            println!("SKIPPED relay_vs_coturn: {e:#}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "relay_vs_coturn: {e:#}, or set KONSULT_SKIP_COTURN=1 to skip this benchmark"
            );
            return ExitCode::FAILURE;
        }
    };
    match run(&plan, &programs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_vs_coturn: a scenario could not run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--smoke` and `--rounds N`, or their environment variables. `--bench`,
/// which `cargo bench` passes to every benchmark binary, is accepted.
fn plan_from_command_line() -> anyhow::Result<Plan> {
    let mut smoke = std::env::var("KONSULT_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let mut rounds: u32 = match std::env::var("KONSULT_BENCH_ROUNDS") {
        Ok(v) => v.parse().context("KONSULT_BENCH_ROUNDS is not a number")?,
        Err(_) => 2,
    };
    let mut only: u8 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--rounds" => {
                rounds = args
                    .next()
                    .context("--rounds needs a number")?
                    .parse()
                    .context("--rounds needs a number")?;
            }
            "--only" => {
                let list = args
                    .next()
                    .context("--only needs scenario numbers, e.g. 1,3")?;
                for n in list.split(',') {
                    let n: u8 = n.trim().parse().context("--only takes 1, 2, 3 and 4")?;
                    if !(1..=4).contains(&n) {
                        bail!("--only takes 1, 2, 3 and 4");
                    }
                    only |= 1 << n;
                }
            }
            "--bench" => {}
            other => bail!("unknown argument {other:?} (known: --smoke, --rounds N, --only 1,3)"),
        }
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut plan = if smoke {
        Plan::smoke()
    } else {
        Plan::full(rounds)
    };
    plan.only = only;
    Ok(plan)
}

fn run(plan: &Plan, programs: &Programs) -> anyhow::Result<()> {
    let started = Instant::now();
    print_header(plan);
    // The load generator's runtime (scenarios 3 and 4). Two workers pace
    // and receive the video streams with room to spare; more would only
    // take cores from the relay under test on a small machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let runs = |n: u8| plan.only == 0 || plan.only & (1 << n) != 0;
    let round_trips = if runs(1) {
        round_trips(plan, programs)?
    } else {
        Vec::new()
    };
    let many = if runs(2) {
        many_allocations(plan, programs)?
    } else {
        Vec::new()
    };
    let videos = if runs(3) {
        video_calls(plan, programs, &runtime)?
    } else {
        Vec::new()
    };
    let floods = if runs(4) {
        unauthenticated_flood(plan, programs, &runtime)?
    } else {
        Vec::new()
    };

    println!();
    println!("== Summary (Konsult / coturn) ==");
    if plan.smoke {
        println!(
            "(smoke run: counts far too small to judge; the bars are printed to show they work)"
        );
    }
    for length in plan.round_trip_lengths.into_iter().filter(|_| runs(1)) {
        let of = |kind| {
            sum_uclient(
                round_trips
                    .iter()
                    .filter(|r| r.0 == length && r.1 == kind)
                    .map(|r| &r.2),
            )
        };
        summarise_round_trips(length, &of(RelayKind::Konsult), &of(RelayKind::Coturn));
    }
    if runs(2) {
        let of = |kind| sum_uclient(many.iter().filter(|r| r.0 == kind).map(|r| &r.1));
        summarise_many_allocations(
            plan.many_allocations.allocations,
            &of(RelayKind::Konsult),
            &of(RelayKind::Coturn),
        );
    }
    if runs(3) {
        let of = |kind| worst_video(videos.iter().filter(|r| r.0 == kind).map(|r| r.1));
        summarise_video(&of(RelayKind::Konsult), &of(RelayKind::Coturn));
    }
    if runs(4) {
        let of = |kind| worst_flood(floods.iter().filter(|r| r.0 == kind).map(|r| r.1));
        summarise_flood(
            plan.flood.requests,
            &of(RelayKind::Konsult),
            &of(RelayKind::Coturn),
        );
    }
    println!();
    println!(
        "all scenarios ran in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_header(plan: &Plan) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    println!(
        "relay_vs_coturn: {} run, {} round(s), relays alternating konsult, coturn",
        if plan.smoke { "smoke" } else { "full" },
        plan.rounds
    );
    println!("machine: {cores} cores, {cpu}; all traffic on 127.0.0.1");
}

/// One scenario's runs in alternating order: round 1 Konsult then coturn,
/// round 2 the same, and so on; `jobs_per_relay` lists the runs of one
/// relay in a round. In a smoke run a round's jobs run at once (their
/// figures do not count, and `turnutils_uclient` waits up to 6 s before it
/// sends, every run).
fn alternating<T: Send, J: Fn(RelayKind) -> anyhow::Result<T> + Sync>(
    plan: &Plan,
    jobs_per_relay: &[J],
) -> anyhow::Result<Vec<(RelayKind, T)>> {
    let mut results = Vec::new();
    for _ in 0..plan.rounds {
        let round: Vec<(RelayKind, &J)> = jobs_per_relay
            .iter()
            .flat_map(|job| RelayKind::BOTH.map(|kind| (kind, job)))
            .collect();
        if plan.smoke {
            // Each thread waits for its own children (their parent-death
            // signal follows the thread that started them).
            let outcomes = std::thread::scope(|scope| {
                let handles: Vec<_> = round
                    .iter()
                    .map(|(kind, job)| scope.spawn(move || job(*kind)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a benchmark job panicked"))
                    .collect::<Vec<_>>()
            });
            for ((kind, _), outcome) in round.iter().zip(outcomes) {
                results.push((*kind, outcome?));
            }
        } else {
            for (kind, job) in round {
                results.push((kind, job(kind)?));
            }
        }
    }
    Ok(results)
}

/// Scenario 1: round trips through the relay to coturn's echo peer.
fn round_trips(
    plan: &Plan,
    programs: &Programs,
) -> anyhow::Result<Vec<(u32, RelayKind, UclientOutcome)>> {
    let load = plan.round_trips;
    println!();
    println!(
        "== 1. Round trips: turnutils_uclient, {} allocations × {} messages, one every {} ms each, via turnutils_peer ==",
        load.allocations, load.messages, load.interval_ms
    );
    let scratch = ScratchDir::new("echo")?;
    let (_peer, echo_port) = uclient::start_echo_peer(&programs.peer, &scratch)?;
    let jobs: Vec<_> = plan
        .round_trip_lengths
        .iter()
        .map(|&length| {
            move |kind| {
                let mut relay = RunningRelay::start(kind, programs)?;
                let load = UclientLoad { length, ..load };
                let outcome = uclient::run(&programs.uclient, &mut relay, load, echo_port)?;
                println!(
                    "  {length:>4} B  {kind:<7}  round trips {:>7}/{:<7} lost {:>6.2} %  relay CPU {:>6.3} s = {:>6.1} µs per round trip  ({:.1} s)",
                    outcome.received,
                    outcome.sent,
                    outcome.loss_percent(),
                    outcome.relay_cpu.as_secs_f64(),
                    cpu_per_round_trip_us(&outcome),
                    outcome.wall.as_secs_f64()
                );
                Ok((length, outcome))
            }
        })
        .collect();
    Ok(alternating(plan, &jobs)?
        .into_iter()
        .map(|(kind, (length, outcome))| (length, kind, outcome))
        .collect())
}

/// Scenario 2: many allocations at once, relaying to each other.
fn many_allocations(
    plan: &Plan,
    programs: &Programs,
) -> anyhow::Result<Vec<(RelayKind, UclientOutcome)>> {
    let load = plan.many_allocations;
    println!();
    println!(
        "== 2. Many allocations: turnutils_uclient -y, {} allocations in pairs × {} messages of {} B, one every {} ms each ==",
        load.allocations, load.messages, load.length, load.interval_ms
    );
    let job = |kind| {
        let mut relay = RunningRelay::start(kind, programs)?;
        let outcome = uclient::run(&programs.uclient, &mut relay, load, 0)?;
        println!(
            "  {kind:<7}  received {:>7}/{:<7} lost {:>6.2} %  relay CPU {:>6.3} s  ({:.1} s)",
            outcome.received,
            outcome.sent,
            outcome.loss_percent(),
            outcome.relay_cpu.as_secs_f64(),
            outcome.wall.as_secs_f64()
        );
        Ok(outcome)
    };
    alternating(plan, &[job])
}

/// Scenario 3: video calls.
fn video_calls(
    plan: &Plan,
    programs: &Programs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Vec<(RelayKind, VideoOutcome)>> {
    let load = plan.video;
    println!();
    println!(
        "== 3. Video: {} calls × {:.1} Mbit/s each way in {} B ChannelData, {} s ==",
        load.calls,
        load.bitrate_bps as f64 / 1e6,
        load.packet_bytes,
        load.duration.as_secs()
    );
    let mut results = Vec::new();
    for _ in 0..plan.rounds {
        for kind in RelayKind::BOTH {
            let mut relay = RunningRelay::start(kind, programs)?;
            let outcome = runtime.block_on(video::run(&mut relay, load))?;
            println!(
                "  {kind:<7}  received {:>7}/{:<7} lost {:>6.3} %  p99 jitter {:>6.3} ms  worst RFC 3550 jitter {:>6.3} ms  sent {:.2} Mbit/s each way  relay CPU {:>5.1} %",
                outcome.received,
                outcome.sent,
                outcome.loss_percent(),
                ms(outcome.p99_jitter),
                ms(outcome.worst_rfc3550_jitter),
                outcome.sent_bps_per_direction / 1e6,
                outcome.relay_cpu.as_secs_f64() * 100.0 / outcome.duration.as_secs_f64()
            );
            results.push((kind, outcome));
        }
    }
    Ok(results)
}

/// Scenario 4: unauthenticated Allocate requests.
fn unauthenticated_flood(
    plan: &Plan,
    programs: &Programs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Vec<(RelayKind, FloodOutcome)>> {
    let load = plan.flood;
    println!();
    println!(
        "== 4. Memory: {} unauthenticated Allocate requests from {} sockets ==",
        load.requests, load.sockets
    );
    let mut results = Vec::new();
    for _ in 0..plan.rounds {
        for kind in RelayKind::BOTH {
            let mut relay = RunningRelay::start(kind, programs)?;
            let outcome = runtime.block_on(flood::run(&mut relay, load))?;
            println!(
                "  {kind:<7}  answered {:>7}/{:<7} in {:.1} s  RSS {:.1} → {:.1} MiB (growth {:+.2} MiB, peak {:.1} MiB)",
                outcome.answered.min(outcome.sent),
                outcome.sent,
                outcome.duration.as_secs_f64(),
                outcome.rss_before_kib as f64 / 1024.0,
                outcome.rss_after_kib as f64 / 1024.0,
                outcome.growth_mib(),
                outcome.peak_rss_kib as f64 / 1024.0
            );
            results.push((kind, outcome));
        }
    }
    Ok(results)
}

/// The runs of one relay added up.
fn sum_uclient<'a>(runs: impl Iterator<Item = &'a UclientOutcome>) -> UclientOutcome {
    runs.fold(UclientOutcome::default(), |total, run| UclientOutcome {
        sent: total.sent + run.sent,
        received: total.received + run.received,
        relay_cpu: total.relay_cpu + run.relay_cpu,
        wall: total.wall + run.wall,
    })
}

/// One relay's video figures at their worst over the rounds (a bar must
/// hold in every round).
#[derive(Debug, Clone, Copy, Default)]
struct VideoWorst {
    loss_percent: f64,
    p99_jitter_ms: f64,
    rfc3550_jitter_ms: f64,
    cpu_percent: f64,
}

fn worst_video(runs: impl Iterator<Item = VideoOutcome>) -> VideoWorst {
    runs.fold(VideoWorst::default(), |worst, run| VideoWorst {
        loss_percent: worst.loss_percent.max(run.loss_percent()),
        p99_jitter_ms: worst.p99_jitter_ms.max(ms(run.p99_jitter)),
        rfc3550_jitter_ms: worst.rfc3550_jitter_ms.max(ms(run.worst_rfc3550_jitter)),
        cpu_percent: worst
            .cpu_percent
            .max(run.relay_cpu.as_secs_f64() * 100.0 / run.duration.as_secs_f64()),
    })
}

/// The round of one relay whose memory grew most.
fn worst_flood(runs: impl Iterator<Item = FloodOutcome>) -> FloodOutcome {
    runs.max_by(|a, b| a.growth_mib().total_cmp(&b.growth_mib()))
        .unwrap_or_default()
}

fn summarise_round_trips(length: u32, konsult: &UclientOutcome, coturn: &UclientOutcome) {
    let completed = ratio(konsult.received as f64, coturn.received as f64);
    let cpu = ratio(
        cpu_per_round_trip_us(konsult),
        cpu_per_round_trip_us(coturn),
    );
    println!(
        "1. round trips, {length} B: completed konsult {} coturn {} → ratio {completed:.3}; \
         CPU per round trip konsult {:.1} µs coturn {:.1} µs → ratio {cpu:.2}",
        konsult.received,
        coturn.received,
        cpu_per_round_trip_us(konsult),
        cpu_per_round_trip_us(coturn),
    );
    bar(
        &format!(
            "1. {length} B round trips completed ≥ {:.2} × coturn's",
            bars::ROUND_TRIPS_RATIO_MIN
        ),
        completed >= bars::ROUND_TRIPS_RATIO_MIN,
    );
    bar(
        &format!(
            "1. {length} B CPU per round trip ≤ {:.1} × coturn's",
            bars::CPU_PER_ROUND_TRIP_RATIO_MAX
        ),
        cpu <= bars::CPU_PER_ROUND_TRIP_RATIO_MAX,
    );
}

fn summarise_many_allocations(allocations: u32, konsult: &UclientOutcome, coturn: &UclientOutcome) {
    println!(
        "2. {allocations} allocations: loss konsult {:.3} % coturn {:.3} %; CPU konsult {:.2} s coturn {:.2} s → ratio {:.2}",
        konsult.loss_percent(),
        coturn.loss_percent(),
        konsult.relay_cpu.as_secs_f64(),
        coturn.relay_cpu.as_secs_f64(),
        ratio(konsult.relay_cpu.as_secs_f64(), coturn.relay_cpu.as_secs_f64()),
    );
    bar(
        &format!(
            "2. {allocations} allocations: loss ≤ coturn's + {} points",
            bars::LOSS_ABOVE_COTURN_MAX_POINTS
        ),
        konsult.loss_percent() <= coturn.loss_percent() + bars::LOSS_ABOVE_COTURN_MAX_POINTS,
    );
}

fn summarise_video(konsult: &VideoWorst, coturn: &VideoWorst) {
    println!(
        "3. video (worst round): loss konsult {:.3} % coturn {:.3} %; \
         p99 jitter konsult {:.3} ms coturn {:.3} ms → ratio {:.2}; \
         worst RFC 3550 jitter konsult {:.3} ms coturn {:.3} ms; \
         relay CPU konsult {:.1} % coturn {:.1} % → ratio {:.2}",
        konsult.loss_percent,
        coturn.loss_percent,
        konsult.p99_jitter_ms,
        coturn.p99_jitter_ms,
        ratio(konsult.p99_jitter_ms, coturn.p99_jitter_ms),
        konsult.rfc3550_jitter_ms,
        coturn.rfc3550_jitter_ms,
        konsult.cpu_percent,
        coturn.cpu_percent,
        ratio(konsult.cpu_percent, coturn.cpu_percent),
    );
    bar(
        &format!(
            "3. video loss ≤ coturn's + {} points",
            bars::LOSS_ABOVE_COTURN_MAX_POINTS
        ),
        konsult.loss_percent <= coturn.loss_percent + bars::LOSS_ABOVE_COTURN_MAX_POINTS,
    );
    bar(
        &format!(
            "3. video p99 jitter ≤ coturn's + {} ms",
            bars::JITTER_ABOVE_COTURN_MAX_MS
        ),
        konsult.p99_jitter_ms <= coturn.p99_jitter_ms + bars::JITTER_ABOVE_COTURN_MAX_MS,
    );
}

fn summarise_flood(requests: u64, konsult: &FloodOutcome, coturn: &FloodOutcome) {
    println!(
        "4. {requests} unauthenticated Allocates: RSS growth konsult {:+.2} MiB coturn {:+.2} MiB",
        konsult.growth_mib(),
        coturn.growth_mib(),
    );
    bar(
        &format!("4. RSS growth ≤ {} MiB", bars::FLOOD_GROWTH_MAX_MIB),
        konsult.growth_mib() <= bars::FLOOD_GROWTH_MAX_MIB,
    );
}

fn bar(name: &str, held: bool) {
    println!("   {} {name}", if held { "PASS" } else { "FAIL" });
}

fn cpu_per_round_trip_us(outcome: &UclientOutcome) -> f64 {
    outcome.relay_cpu.as_secs_f64() * 1e6 / outcome.received.max(1) as f64
}

/// `konsult / coturn`, NaN when coturn's figure is 0.
fn ratio(konsult: f64, coturn: f64) -> f64 {
    if coturn == 0.0 {
        f64::NAN
    } else {
        konsult / coturn
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
