//! Konsult's signaling server under load, beside a bare WebSocket forwarder
//! measured in the same run on the same machine (issue 14).
//!
//! ```sh
//! cargo bench -p konsult-server --bench signaling_load              # full, ~9 min on 2 cores
//! cargo bench -p konsult-server --bench signaling_load -- --smoke   # every scenario, small
//! cargo test  -p konsult-server --bench signaling_load -- --smoke   # the same in the test profile (~50 s)
//! ```
//!
//! Konsult is the real `konsult` binary (`serve --demo`, on a data
//! directory of its own, 127.0.0.1: plain HTTP and WebSocket); the bare
//! forwarder is this binary run again with `--bare-forwarder` (see
//! `signaling_load/bare.rs`: pairing, welcome, pong and forwarding, nothing
//! else). Each step starts both afresh, Konsult first, and gives them the
//! same load from this process; their CPU time and memory are read from
//! `/proc/<pid>`. Rooms are made as a practice would, through the HTTP API:
//! the demo therapist logs in, creates one eligible patient and schedules
//! every consultation of the run up front (overlapping, starting in five
//! minutes), so each step joins rooms nobody joined before.
//!
//! The scenarios, each per server and as a Konsult/bare ratio:
//!
//! 1. Idle: N participants in N/2 rooms (therapist and waiting patient),
//!    heartbeating. Join rate (welcomes a second, 64 joins in flight), join
//!    errors, resident memory per participant, CPU over an idle window
//!    that starts once the server is quiet after the joins (the readings
//!    until then are printed), and CPU per ping above the empty server's.
//! 2. Relay: admitted pairs (one real SDP offer and answer each, then
//!    trickled candidates) at 5,000 and 20,000 candidates a second, and at
//!    5,000 with `--waiting` other participants in waiting rooms: latency
//!    p50/p99/max, delivered, achieved rate, server CPU per message; and
//!    how long each admission took (`admit` to `peer_joined`).
//! 3. Saturation: 1,000 pairs, the rate raised step by step up to the
//!    per-connection limit (20 a second) until p99 > 50 ms or less than
//!    99 % is delivered, then halving the gap between the highest rate
//!    held and the lowest that was not down to 2,500 msg/s: the highest
//!    rate that held (`≥` when the top step held), and p99 and CPU at the
//!    highest step both servers ran.
//!
//! `--smoke` (or `KONSULT_BENCH_SMOKE=1`) runs every scenario small, once,
//! and fails (exit 1) unless the protocol worked: every participant
//! welcomed, every pair admitted and negotiated, every relayed candidate
//! delivered once and in order, no error from the server. `--only 1,3`,
//! `--participants 1000,5000`, `--repeat R` (each idle step R times, the
//! servers taking turns, medians in the summary), `--waiting N` and `--saturation-pairs N`
//! (steps up to 40 × N msg/s) change what runs; `--bare-nagle` leaves
//! Nagle's algorithm on in the forwarder (Konsult's sockets turn it off).
//!
//! `KONSULT_BENCH_MARK=1` writes `RAMP_START <server> <pid>` to standard
//! error before each idle ramp, then waits 1.5 s, and `RAMP_END` after it,
//! so a profiler can attach to the server for the joins alone (`perf
//! record -p <pid>`, stopped at `RAMP_END`).
//!
//! The load generator, both servers and the kernel's loopback work share
//! the machine: each window prints the generator's CPU and the whole
//! machine's (`/proc/stat`), and a window where other processes took more
//! than 20 % of the machine (or the hypervisor 10 %) is marked WARNING:
//! its figures are disturbed. Run it on an otherwise idle machine.

#[path = "signaling_load/mod.rs"]
#[allow(dead_code)] // the parts only `cluster_load` uses
mod load;

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use load::args::{number, scenarios};
use load::participants::{Control, Endpoint, Population};
use load::process::{machine, raise_open_files_limit, MachineSample, ProcessSample};
use load::servers::{
    schedule_consultations, Api, Installation, Kind, Room, Server, THERAPIST_EMAIL,
};
use load::streaming::{
    median, ms, percentiles, stream, Streamed, SATURATION_DELIVERED, SATURATION_P99,
    SATURATION_RESOLUTION,
};

/// A relay step: `pairs` admitted pairs at `rate` candidates a second in
/// all, with `waiting` more participants in waiting rooms.
#[derive(Debug, Clone, Copy)]
struct RelayStep {
    pairs: usize,
    rate: u32,
    waiting: usize,
}

/// What runs, and how much.
#[derive(Debug, Clone)]
struct Plan {
    smoke: bool,
    /// Scenarios to run, bit n for scenario n; 0: all.
    only: u8,
    idle_participants: Vec<usize>,
    /// Each idle step runs this often, the servers taking turns; the
    /// summary gives the median (a short ramp is at the mercy of the
    /// machine's neighbours).
    repeat: usize,
    idle_window: Duration,
    relay_steps: Vec<RelayStep>,
    relay_window: Duration,
    saturation_pairs: usize,
    saturation_rates: Vec<u32>,
    /// Time for messages in flight to arrive after a sending window.
    drain: Duration,
    /// The empty server's CPU is measured over this long.
    base_window: Duration,
    /// After a ramp, the server is given this long at least, and at most
    /// `settle_max`, to become quiet.
    settle_min: Duration,
    settle_max: Duration,
    /// The CPU readings of the settling are this long each.
    settle_step: Duration,
    /// Joins (connect, upgrade, hello, welcome) in flight.
    join_concurrency: usize,
    /// Scheduling requests in flight while seeding.
    seed_concurrency: usize,
    /// Most connections one step may hold (file descriptors).
    max_connections: usize,
    /// Why `max_connections` is what it is.
    cap_reason: String,
    /// The bare forwarder leaves Nagle's algorithm on, as Konsult does.
    bare_nagle: bool,
}

impl Plan {
    fn full(waiting: usize) -> Self {
        Self {
            smoke: false,
            only: 0,
            idle_participants: vec![1000, 5000, 10_000],
            repeat: 1,
            idle_window: Duration::from_secs(30),
            relay_steps: vec![
                RelayStep {
                    pairs: 250,
                    rate: 5000,
                    waiting: 0,
                },
                RelayStep {
                    pairs: 1000,
                    rate: 20_000,
                    waiting: 0,
                },
                RelayStep {
                    pairs: 250,
                    rate: 5000,
                    waiting,
                },
            ],
            relay_window: Duration::from_secs(10),
            saturation_pairs: 1000,
            saturation_rates: vec![5000, 10_000, 20_000, 30_000, 40_000],
            drain: Duration::from_secs(1),
            base_window: Duration::from_secs(3),
            settle_min: Duration::from_secs(2),
            settle_max: Duration::from_secs(60),
            settle_step: Duration::from_secs(1),
            join_concurrency: 64,
            seed_concurrency: 32,
            max_connections: 0,
            cap_reason: String::new(),
            bare_nagle: false,
        }
    }

    fn smoke() -> Self {
        Self {
            smoke: true,
            idle_participants: vec![100],
            idle_window: Duration::from_secs(3),
            relay_steps: vec![
                RelayStep {
                    pairs: 25,
                    rate: 500,
                    waiting: 0,
                },
                RelayStep {
                    pairs: 25,
                    rate: 500,
                    waiting: 200,
                },
            ],
            relay_window: Duration::from_secs(2),
            saturation_pairs: 50,
            saturation_rates: vec![500, 2000],
            drain: Duration::from_millis(500),
            base_window: Duration::from_secs(1),
            settle_min: Duration::from_secs(1),
            settle_max: Duration::from_secs(10),
            settle_step: Duration::from_millis(500),
            ..Self::full(0)
        }
    }

    fn runs(&self, scenario: u8) -> bool {
        self.only == 0 || self.only & (1 << scenario) != 0
    }

    /// Consultations the run joins, each once.
    fn rooms_needed(&self) -> usize {
        let mut rooms = 0;
        if self.runs(1) {
            rooms += self.repeat * self.idle_participants.iter().map(|n| n / 2).sum::<usize>();
        }
        if self.runs(2) {
            rooms += self
                .relay_steps
                .iter()
                .map(|s| s.pairs + s.waiting / 2)
                .sum::<usize>();
        }
        if self.runs(3) {
            rooms += self.saturation_pairs;
        }
        rooms
    }

    /// From the command line (`--bench`, which `cargo bench` passes, is
    /// accepted) and the open-files limit.
    fn from_args(args: &[String], open_files: u64) -> anyhow::Result<Self> {
        let mut smoke = std::env::var("KONSULT_BENCH_SMOKE").is_ok_and(|v| v == "1");
        let mut only = 0u8;
        let mut participants: Option<Vec<usize>> = None;
        let mut waiting: Option<usize> = None;
        let mut saturation_pairs: Option<usize> = None;
        let mut bare_nagle = false;
        let mut repeat = 1;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--smoke" => smoke = true,
                "--bench" => {}
                "--bare-nagle" => bare_nagle = true,
                "--only" => only |= scenarios(args.next())?,
                "--participants" => {
                    let list = args.next().context("--participants needs counts")?;
                    let mut counts = Vec::new();
                    for n in list.split(',') {
                        let n: usize = number(Some(&n.to_owned()), "--participants")?;
                        if n < 2 {
                            bail!("--participants: at least 2 (a therapist and a patient)");
                        }
                        counts.push(n / 2 * 2);
                    }
                    participants = Some(counts);
                }
                "--repeat" => repeat = number::<usize>(args.next(), "--repeat")?.max(1),
                "--waiting" => waiting = Some(number::<usize>(args.next(), "--waiting")? / 2 * 2),
                "--saturation-pairs" => {
                    saturation_pairs = Some(number::<usize>(args.next(), "--saturation-pairs")?.max(1))
                }
                other => bail!(
                    "unknown argument {other:?} (known: --smoke, --only 1,3, \
                     --participants 1000,5000, --repeat R, --waiting N, --saturation-pairs N, --bare-nagle)"
                ),
            }
        }
        // Each connection is a descriptor in the server and one in this
        // process: leave room for the database, the relay, the log files
        // and the HTTP clients.
        let max_connections = (open_files as usize).saturating_sub(1500).max(100);
        let cap_reason = format!(
            "RLIMIT_NOFILE is {open_files} (the hard limit; raising it needs CAP_SYS_RESOURCE) \
             for the server and for this process alike, less 1500 for the database, relay, \
             logs and HTTP clients"
        );
        let mut plan = if smoke {
            Self::smoke()
        } else {
            let relay_pairs = 250;
            let default_waiting = 16_000.min(max_connections.saturating_sub(2 * relay_pairs));
            Self::full(waiting.unwrap_or(default_waiting))
        };
        plan.only = only;
        plan.bare_nagle = bare_nagle;
        plan.repeat = repeat;
        plan.max_connections = max_connections;
        plan.cap_reason = cap_reason;
        if let Some(participants) = participants {
            plan.idle_participants = participants;
        }
        if let Some(waiting) = waiting {
            for step in plan.relay_steps.iter_mut().filter(|s| s.waiting > 0) {
                step.waiting = waiting;
            }
        }
        if let Some(pairs) = saturation_pairs {
            plan.saturation_pairs = pairs;
        }
        if !plan.smoke {
            // 5k, 10k, then steps of 10k up to the per-connection limit
            // (20 a second per sender, two senders a pair).
            let ceiling = 40 * plan.saturation_pairs as u32;
            plan.saturation_rates = [5000, 10_000]
                .into_iter()
                .chain((20_000..).step_by(10_000))
                .take_while(|rate| *rate <= ceiling)
                .collect();
        }
        plan.cap_to_connections();
        Ok(plan)
    }

    /// Caps every step at `max_connections`, saying so.
    fn cap_to_connections(&mut self) {
        let max = self.max_connections / 2 * 2;
        for n in self.idle_participants.iter_mut() {
            if *n > max {
                println!(
                    "note: {n} idle participants capped at {max}: {}",
                    self.cap_reason
                );
                *n = max;
            }
        }
        for step in self.relay_steps.iter_mut() {
            if 2 * step.pairs + step.waiting > max {
                let waiting = max.saturating_sub(2 * step.pairs) / 2 * 2;
                println!(
                    "note: {} waiting participants beside {} pairs capped at {waiting}: {}",
                    step.waiting, step.pairs, self.cap_reason
                );
                step.waiting = waiting;
            }
        }
        if 2 * self.saturation_pairs > max {
            println!(
                "note: {} saturation pairs capped at {}: {}",
                self.saturation_pairs,
                max / 2,
                self.cap_reason
            );
            self.saturation_pairs = max / 2;
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Re-executed as the bare forwarder.
    if args.first().map(String::as_str) == Some("--bare-forwarder") {
        let listen = match args.get(1..3) {
            Some([flag, addr]) if flag == "--listen" => addr.clone(),
            _ => {
                eprintln!("usage: --bare-forwarder --listen ADDR [--nagle]");
                return ExitCode::from(2);
            }
        };
        let nagle = args.get(3).is_some_and(|a| a == "--nagle");
        return match load::bare::serve(&listen, nagle) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bare forwarder: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let open_files = match raise_open_files_limit() {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("signaling_load: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let plan = match Plan::from_args(&args, open_files) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("signaling_load: {e:#}");
            return ExitCode::from(2);
        }
    };
    // The load generator: two workers (this machine's cores are shared
    // with the server under test).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("signaling_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let outcome = runtime.block_on(run(&plan, open_files));
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(failures) => {
            println!();
            println!(
                "all scenarios ran in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            if failures.is_empty() {
                println!("protocol checks: all passed");
                ExitCode::SUCCESS
            } else {
                println!("protocol checks FAILED:");
                for failure in &failures {
                    println!("  - {failure}");
                }
                if plan.smoke {
                    ExitCode::FAILURE
                } else {
                    // Under full load a failed check is a result, reported.
                    ExitCode::SUCCESS
                }
            }
        }
        Err(e) => {
            eprintln!("signaling_load: a scenario could not run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the scenarios share.
struct Run {
    plan: Plan,
    installation: Installation,
    scratch: tempfile::TempDir,
    cookie: String,
    rooms: VecDeque<Room>,
    bare_rooms: usize,
    /// Protocol checks that failed.
    failures: Vec<String>,
    /// Rows of the summary: (metric, konsult, bare, ratio) as printed.
    summary: Vec<(String, String, String, String)>,
}

impl Run {
    /// `count` rooms nobody joined before.
    fn rooms(&mut self, kind: Kind, count: usize) -> anyhow::Result<Vec<Room>> {
        match kind {
            Kind::Konsult => {
                if self.rooms.len() < count {
                    bail!(
                        "only {} seeded consultations left, {count} needed",
                        self.rooms.len()
                    );
                }
                Ok(self.rooms.drain(..count).collect())
            }
            Kind::Bare => {
                let first = self.bare_rooms;
                self.bare_rooms += count;
                Ok((first..first + count)
                    .map(|n| Room {
                        consultation: format!("pair-{n}"),
                        token: format!("pair-{n}"),
                    })
                    .collect())
            }
        }
    }

    fn endpoint(&self, server: &Server) -> Endpoint {
        Endpoint::single(
            server.kind,
            server.addr,
            (server.kind == Kind::Konsult).then(|| self.cookie.clone()),
        )
    }

    fn check(&mut self, held: bool, what: impl FnOnce() -> String) {
        if !held {
            let what = what();
            println!("   CHECK FAILED: {what}");
            self.failures.push(what);
        }
    }

    fn row(&mut self, metric: String, konsult: f64, bare: f64) {
        let ratio = if bare == 0.0 {
            if konsult == 0.0 { "-" } else { "∞" }.to_owned()
        } else {
            format!("{:.2}", konsult / bare)
        };
        self.summary
            .push((metric, figure(konsult), figure(bare), ratio));
    }
}

async fn run(plan: &Plan, open_files: u64) -> anyhow::Result<Vec<String>> {
    print_header(plan, open_files);
    let mut installation = Installation::new()?;
    let scratch = tempfile::Builder::new()
        .prefix("konsult-signaling-load-bare-")
        .tempdir()?;

    // Seeding, through the API of a first Konsult start.
    let needed = plan.rooms_needed();
    println!();
    println!(
        "== Seeding: the demo therapist logs in, creates one eligible patient and schedules \
         {needed} consultations (POST /api/consultations, allow_overlap, {} in flight) ==",
        plan.seed_concurrency
    );
    let server = Server::konsult(&mut installation).await?;
    let password = installation.password.clone().context("the demo password")?;
    let api = Api::login(server.addr, THERAPIST_EMAIL, &password).await?;
    let began = Instant::now();
    let (patient, course) = api.eligible_patient().await?;
    println!(
        "  1 eligible patient (visit, course, assessment) in {:.2} s",
        began.elapsed().as_secs_f64()
    );
    let (rooms, seeding) =
        schedule_consultations(&api, &patient, &course, needed, plan.seed_concurrency).await?;
    println!(
        "  {} consultations in {:.1} s = {:.0}/s; request p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
         {} answered 429 (rate-limited){}",
        seeding.scheduled,
        seeding.elapsed.as_secs_f64(),
        seeding.scheduled as f64 / seeding.elapsed.as_secs_f64().max(1e-9),
        ms(seeding.p50),
        ms(seeding.p99),
        ms(seeding.max),
        seeding.rate_limited,
        if seeding.rate_limited > 0 {
            " — POST /api/consultations IS RATE-LIMITED"
        } else if seeding.p99 > Duration::from_millis(500) {
            " — POST /api/consultations IS SLOW under concurrency"
        } else {
            ""
        }
    );
    let seeded_rss = server.sample()?.rss_kib;
    println!(
        "  konsult RSS after seeding {:.1} MiB",
        seeded_rss as f64 / 1024.0
    );
    server.stop();

    let mut cx = Run {
        plan: plan.clone(),
        installation,
        scratch,
        cookie: api.cookie.clone(),
        rooms: rooms.into(),
        bare_rooms: 0,
        failures: Vec::new(),
        summary: Vec::new(),
    };
    let outcome = async {
        if plan.runs(1) {
            idle(&mut cx).await?;
        }
        if plan.runs(2) {
            relay(&mut cx).await?;
        }
        if plan.runs(3) {
            saturation(&mut cx).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = outcome {
        bail!(
            "{e:#}\nkonsult's log (last 3000 bytes):\n{}",
            load::process::log_tail(&cx.installation.log(), 3000)
        );
    }
    print_summary(&cx);
    Ok(cx.failures)
}

fn print_header(plan: &Plan, open_files: u64) {
    let profile = if cfg!(debug_assertions) {
        "debug (test profile: figures mean little)"
    } else {
        "release"
    };
    println!(
        "signaling_load: {} run, {profile} build; scenarios {}",
        if plan.smoke { "smoke" } else { "full" },
        (1..=3u8)
            .filter(|n| plan.runs(*n))
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    println!("machine: {}", machine());
    println!(
        "open files: soft limit raised to {open_files} (children inherit it); \
         at most {} connections a step",
        plan.max_connections
    );
    println!(
        "konsult: {} serve --demo on 127.0.0.1 (plain HTTP/WS), fresh process each step",
        env!("CARGO_BIN_EXE_konsult")
    );
    println!(
        "bare: this binary --bare-forwarder (Tokio multi-thread, tokio-tungstenite, 4 KiB read \
         buffer, no write buffer, {}), fresh process each step",
        if plan.bare_nagle {
            "Nagle on (--bare-nagle), unlike Konsult's sockets"
        } else {
            "TCP_NODELAY, as Konsult's sockets"
        }
    );
    println!(
        "load generator: this process, 2 Tokio workers, sockets from 127.0.0.2–254; \
         servers and generator share the machine's cores"
    );
}

/// Scenario 1.
async fn idle(cx: &mut Run) -> anyhow::Result<()> {
    let plan = cx.plan.clone();
    println!();
    println!(
        "== 1. Idle: N participants in N/2 rooms (therapist + waiting patient, not admitted), \
         heartbeating; {} joins in flight; {} s idle window ==",
        plan.join_concurrency,
        plan.idle_window.as_secs()
    );
    println!(
        "  {:>6}  {:<7}  {:>13}  {:>8}  {:>7}  {:>6}  {:>20}  {:>8}  {:>8}  {:>9}  {:>6}",
        "N",
        "server",
        "welcomed",
        "ramp s",
        "join/s",
        "errors",
        "RSS before→after MiB",
        "KiB/part",
        "idle CPU",
        "µs/ping",
        "gen CPU"
    );
    let of = if plan.repeat > 1 {
        format!(", median of {}", plan.repeat)
    } else {
        String::new()
    };
    for &n in &plan.idle_participants {
        let (mut konsult, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..plan.repeat {
            konsult.push(idle_step(cx, Kind::Konsult, n).await?);
            bare.push(idle_step(cx, Kind::Bare, n).await?);
        }
        let metrics: [(&str, IdleMetric); 4] = [
            ("join rate (welcomes/s)", IdleResult::join_rate),
            ("join errors", |r| r.failed as f64),
            ("RSS per participant (KiB)", IdleResult::kib_per_participant),
            ("idle CPU (% of one core)", |r| r.cpu_percent),
        ];
        for (name, metric) in metrics {
            cx.row(
                format!("1. idle N={n}: {name}{of}"),
                median(konsult.iter().map(metric)),
                median(bare.iter().map(metric)),
            );
        }
    }
    Ok(())
}

/// One figure of an idle step.
type IdleMetric = fn(&IdleResult) -> f64;

/// The median (the mean of the middle two of an even count).
struct IdleResult {
    n: usize,
    welcomed: usize,
    failed: usize,
    ramp: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
    cpu_percent: f64,
}

impl IdleResult {
    fn join_rate(&self) -> f64 {
        self.welcomed as f64 / self.ramp.as_secs_f64().max(1e-9)
    }

    fn kib_per_participant(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.n.max(1) as f64
    }
}

async fn idle_step(cx: &mut Run, kind: Kind, n: usize) -> anyhow::Result<IdleResult> {
    let plan = cx.plan.clone();
    let mut server = Server::start(
        kind,
        &mut cx.installation,
        cx.scratch.path(),
        plan.bare_nagle,
    )
    .await?;
    // What the server costs with nobody connected.
    let empty = server.sample()?;
    tokio::time::sleep(plan.base_window).await;
    let before = server.sample()?;
    let base_cpu_percent = empty.cpu_percent_until(&before);
    let rooms = cx.rooms(kind, n / 2)?;
    let marked = std::env::var_os("KONSULT_BENCH_MARK").is_some();
    if marked {
        eprintln!("RAMP_START {kind:?} {}", server.pid());
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let population = Population::join(
        &cx.endpoint(&server),
        &rooms,
        false,
        plan.join_concurrency,
        0,
    );
    let ramp = population.joined().await;
    if marked {
        eprintln!("RAMP_END");
    }
    let shared = population.shared.clone();
    let welcomed = shared.welcomed.load(Relaxed);
    let failed = shared.join_failed.load(Relaxed);
    if kind == Kind::Konsult {
        population
            .wait_for(Duration::from_secs(30), |s| {
                s.waiting.load(Relaxed) >= n / 2 - failed.min(n / 2)
            })
            .await;
    }
    // The joins leave work behind (Konsult writes each waiting room):
    // the idle window starts once the server is quiet.
    let (settled, readings) = settle(&server, &plan).await?;
    let after = server.sample()?;
    let generator_before = ProcessSample::read(0)?;
    let machine_before = MachineSample::read()?;
    let pongs_before = shared.pongs.load(Relaxed);
    tokio::time::sleep(plan.idle_window).await;
    let end = server.sample()?;
    let generator_after = ProcessSample::read(0)?;
    let (machine_busy, machine_steal) =
        machine_before.busy_and_steal_until(&MachineSample::read()?);
    let pongs = shared.pongs.load(Relaxed) - pongs_before;
    server.ensure_running()?;
    let cpu_percent = after.cpu_percent_until(&end);
    let cpu_per_ping_us =
        end.cpu.saturating_sub(after.cpu).as_secs_f64() * 1e6 / pongs.max(1) as f64;
    let result = IdleResult {
        n,
        welcomed,
        failed,
        ramp,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        cpu_percent,
    };
    println!(
        "  {:>6}  {:<7}  {:>13}  {:>8.2}  {:>7.0}  {:>6}  {:>20}  {:>8.1}  {:>7.2}%  {:>9.1}  {:>5.1}%",
        n,
        kind.to_string(),
        format!("{welcomed}/{n}"),
        ramp.as_secs_f64(),
        result.join_rate(),
        failed,
        format!(
            "{:.1} → {:.1}",
            before.rss_kib as f64 / 1024.0,
            after.rss_kib as f64 / 1024.0
        ),
        result.kib_per_participant(),
        cpu_percent,
        cpu_per_ping_us,
        generator_before.cpu_percent_until(&generator_after),
    );
    println!(
        "      empty server {base_cpu_percent:.2} % CPU; after the ramp quiet in {:.0} s \
         (CPU % each {} ms: {})",
        settled.as_secs_f64(),
        plan.settle_step.as_millis(),
        percents(&readings)
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let others =
        machine_busy - (cpu_percent + generator_before.cpu_percent_until(&generator_after)) / cores;
    if others > 20.0 || machine_steal > 10.0 {
        println!(
            "      WARNING: {others:.0} % of the machine went to other processes and \
             {machine_steal:.0} % was stolen by the hypervisor in the idle window: \
             its figures are disturbed"
        );
    }
    for (why, count) in shared.join_failures() {
        println!("      join failed ×{count}: {why}");
    }
    let events = shared.events();
    for (what, count) in &events {
        println!("      ×{count}: {what}");
    }
    let waiting = shared.waiting.load(Relaxed);
    let left = population.leave(Duration::from_secs(60)).await;
    let left_count = shared.left.load(Relaxed);
    if !plan.smoke || left > Duration::from_secs(5) {
        println!(
            "      {left_count} left in {:.1} s; {pongs} pongs in the window",
            left.as_secs_f64()
        );
    }
    server.ensure_running()?;
    cx.check(welcomed == n, || {
        format!("1. {kind} N={n}: {welcomed}/{n} participants welcomed")
    });
    if kind == Kind::Konsult {
        cx.check(waiting == n / 2, || {
            format!(
                "1. {kind} N={n}: {waiting}/{} patients told `waiting`",
                n / 2
            )
        });
        cx.check(shared.not_all_policy.load(Relaxed) == 0, || {
            format!("1. {kind}: candidate_policy is not `all`")
        });
    }
    cx.check(events.is_empty(), || {
        format!("1. {kind} N={n}: unexpected server messages or closes: {events:?}")
    });
    cx.check(left_count == welcomed, || {
        format!("1. {kind} N={n}: {left_count}/{welcomed} left cleanly")
    });
    server.stop();
    Ok(result)
}

/// Waits until the server's CPU has settled after a burst of joins: two
/// consecutive readings (`plan.settle_step` each) alike (within 2 points
/// and 20 %) and under half a core, at least `plan.settle_min`, at most
/// `plan.settle_max`. Returns how long it took and the readings (% of one
/// core).
async fn settle(server: &Server, plan: &Plan) -> anyhow::Result<(Duration, Vec<f64>)> {
    let began = Instant::now();
    let mut readings: Vec<f64> = Vec::new();
    let mut last = server.sample()?;
    loop {
        tokio::time::sleep(plan.settle_step).await;
        let now = server.sample()?;
        readings.push(last.cpu_percent_until(&now));
        last = now;
        let elapsed = began.elapsed();
        if elapsed >= plan.settle_max {
            return Ok((elapsed, readings));
        }
        if let [.., a, b] = readings[..] {
            let alike = (a - b).abs() <= 2.0 + 0.2 * a.max(b);
            if elapsed >= plan.settle_min && alike && b < 50.0 {
                return Ok((elapsed, readings));
            }
        }
    }
}

/// Admitted, negotiated pairs (and waiting rooms beside them) on a fresh
/// server.
struct Calls {
    server: Server,
    waiting: Option<Population>,
    pairs: Population,
}

async fn calls(cx: &mut Run, kind: Kind, pairs: usize, waiting: usize) -> anyhow::Result<Calls> {
    let plan = cx.plan.clone();
    let server = Server::start(
        kind,
        &mut cx.installation,
        cx.scratch.path(),
        plan.bare_nagle,
    )
    .await?;
    let endpoint = cx.endpoint(&server);
    let background = if waiting > 0 {
        let rooms = cx.rooms(kind, waiting / 2)?;
        let population = Population::join(&endpoint, &rooms, false, plan.join_concurrency, 0);
        let ramp = population.joined().await;
        let shared = &population.shared;
        let welcomed = shared.welcomed.load(Relaxed);
        if kind == Kind::Konsult {
            population
                .wait_for(Duration::from_secs(30), |s| {
                    s.waiting.load(Relaxed) >= waiting / 2
                })
                .await;
        }
        println!(
            "    {kind}: {welcomed}/{waiting} waiting participants joined in {:.1} s ({:.0}/s)",
            ramp.as_secs_f64(),
            welcomed as f64 / ramp.as_secs_f64().max(1e-9)
        );
        for (why, count) in shared.join_failures() {
            println!("      join failed ×{count}: {why}");
        }
        cx.check(welcomed == waiting, || {
            format!("{kind}: {welcomed}/{waiting} waiting participants welcomed")
        });
        Some(population)
    } else {
        None
    };
    let rooms = cx.rooms(kind, pairs)?;
    let population = Population::join(&endpoint, &rooms, true, plan.join_concurrency, waiting);
    population.joined().await;
    if kind == Kind::Bare {
        population.tell(Control::Negotiate);
    }
    let patience = Duration::from_secs(60) + Duration::from_millis(20 * pairs as u64);
    population
        .wait_for(patience, |s| s.ready_pairs.load(Relaxed) >= pairs)
        .await;
    let setup = population.began.elapsed();
    // Joins and admissions leave writes behind: stream once the server is
    // quiet.
    let (settled, readings) = settle(&server, &plan).await?;
    let shared = &population.shared;
    let mut admissions = shared.admissions();
    let (p50, p99, max) = percentiles(&mut admissions);
    println!(
        "      {kind}: {} pairs joined, admitted and negotiated in {:.1} s{}",
        shared.ready_pairs.load(Relaxed),
        setup.as_secs_f64(),
        if admissions.is_empty() {
            String::new()
        } else {
            format!(
                "; admission (admit → peer_joined) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                ms(p50),
                ms(p99),
                ms(max)
            )
        }
    );
    println!(
        "      {kind}: quiet {:.0} s later (CPU % each {} ms: {})",
        settled.as_secs_f64(),
        plan.settle_step.as_millis(),
        percents(&readings)
    );
    let welcomed = shared.welcomed.load(Relaxed);
    let ready = shared.ready_pairs.load(Relaxed);
    for (why, count) in shared.join_failures() {
        println!("      join failed ×{count}: {why}");
    }
    cx.check(welcomed == 2 * pairs, || {
        format!(
            "{kind}: {welcomed}/{} call participants welcomed",
            2 * pairs
        )
    });
    cx.check(ready == pairs, || {
        format!("{kind}: {ready}/{pairs} pairs admitted and negotiated (offer answered)")
    });
    if kind == Kind::Konsult {
        let admitted = shared.admitted.load(Relaxed);
        cx.check(admitted == pairs, || {
            format!("{kind}: {admitted}/{pairs} patients told `admitted`")
        });
        cx.check(shared.not_all_policy.load(Relaxed) == 0, || {
            format!("{kind}: candidate_policy is not `all`")
        });
    }
    Ok(Calls {
        server,
        waiting: background,
        pairs: population,
    })
}

impl Calls {
    /// Everyone leaves; the server stops. Checks that nothing unexpected
    /// happened to anyone.
    async fn end(self, cx: &mut Run, label: &str) -> anyhow::Result<()> {
        let Calls {
            mut server,
            waiting,
            pairs,
            ..
        } = self;
        let kind = server.kind;
        let mut populations = vec![pairs];
        populations.extend(waiting);
        for population in populations {
            let shared = population.shared.clone();
            population.leave(Duration::from_secs(60)).await;
            let events = shared.events();
            for (what, count) in &events {
                println!("      {kind} ×{count}: {what}");
            }
            cx.check(events.is_empty(), || {
                format!("{label} {kind}: unexpected server messages or closes: {events:?}")
            });
            let (left, welcomed) = (shared.left.load(Relaxed), shared.welcomed.load(Relaxed));
            cx.check(left == welcomed, || {
                format!("{label} {kind}: {left}/{welcomed} left cleanly")
            });
        }
        server.ensure_running()?;
        server.stop();
        Ok(())
    }
}

/// Scenario 2.
async fn relay(cx: &mut Run) -> anyhow::Result<()> {
    let plan = cx.plan.clone();
    println!();
    println!(
        "== 2. Relay: admitted pairs (one SDP offer/answer each), candidates streamed both ways \
         for {} s; latency = send → receipt by the peer ==",
        plan.relay_window.as_secs()
    );
    for step in &plan.relay_steps {
        let label = if step.waiting > 0 {
            format!("{}/s + {} waiting", step.rate, step.waiting)
        } else {
            format!("{}/s", step.rate)
        };
        println!(
            "  -- {} pairs ({} connections), {} msg/s in all = {:.1}/s per sender{}",
            step.pairs,
            2 * step.pairs + step.waiting,
            step.rate,
            step.rate as f64 / (2 * step.pairs) as f64,
            if step.waiting > 0 {
                format!(", beside {} participants in waiting rooms", step.waiting)
            } else {
                String::new()
            }
        );
        let mut results = Vec::new();
        for kind in Kind::BOTH {
            let calls = calls(cx, kind, step.pairs, step.waiting).await?;
            let limit = calls.pairs.shared.rate_per_second.load(Relaxed);
            let per_sender = step.rate as f64 / (2 * step.pairs) as f64;
            if limit > 0 && per_sender > limit as f64 / 2.0 {
                println!(
                    "      note: {per_sender:.1}/s per sender is above half the announced limit \
                     ({limit}/s)"
                );
            }
            let idle_before = calls.server.sample()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle_cpu = idle_before.cpu_percent_until(&calls.server.sample()?);
            let streamed = stream(
                &calls.pairs,
                &[calls.server.pid()],
                1,
                step.rate,
                plan.relay_window,
                plan.drain,
            )
            .await?;
            streamed.print(&label, &kind.to_string());
            println!("      {kind}: server CPU before streaming {idle_cpu:.1} %");
            cx.check(
                streamed.sent > 0
                    && streamed.received == streamed.sent
                    && streamed.late == 0
                    && streamed.out_of_order == 0,
                || {
                    format!(
                        "2. {label} {kind}: {}/{} candidates delivered ({} late, {} out of order)",
                        streamed.received, streamed.sent, streamed.late, streamed.out_of_order
                    )
                },
            );
            calls.end(cx, &format!("2. {label}")).await?;
            results.push(streamed);
        }
        let (k, b) = (&results[0], &results[1]);
        cx.row(format!("2. relay {label}: p50 (ms)"), ms(k.p50), ms(b.p50));
        cx.row(format!("2. relay {label}: p99 (ms)"), ms(k.p99), ms(b.p99));
        cx.row(format!("2. relay {label}: max (ms)"), ms(k.max), ms(b.max));
        cx.row(
            format!("2. relay {label}: delivered (%)"),
            k.delivered_percent(),
            b.delivered_percent(),
        );
        cx.row(
            format!("2. relay {label}: achieved (msg/s)"),
            k.achieved(),
            b.achieved(),
        );
        cx.row(
            format!("2. relay {label}: server CPU per message (µs)"),
            k.cpu_per_message_us(),
            b.cpu_per_message_us(),
        );
    }
    Ok(())
}

/// Scenario 3.
async fn saturation(cx: &mut Run) -> anyhow::Result<()> {
    let plan = cx.plan.clone();
    let pairs = plan.saturation_pairs;
    println!();
    println!(
        "== 3. Saturation: {pairs} pairs ({} connections); the rate raised step by step \
         ({} s each) until p99 > {} ms or delivered < {} % ==",
        2 * pairs,
        plan.relay_window.as_secs(),
        SATURATION_P99.as_millis(),
        SATURATION_DELIVERED
    );
    let mut highest = BTreeMap::new();
    let mut steps: BTreeMap<Kind, Vec<Streamed>> = BTreeMap::new();
    for kind in Kind::BOTH {
        let calls = calls(cx, kind, pairs, 0).await?;
        let limit = calls.pairs.shared.rate_per_second.load(Relaxed);
        let mut held = 0u32;
        let mut failed = None;
        let mut step = 0u32;
        let mut rates = plan.saturation_rates.clone().into_iter();
        loop {
            // The steps of the plan, then halving the gap between the
            // highest rate held and the lowest that was not, down to
            // SATURATION_RESOLUTION: steps of 10,000 msg/s alone left
            // both ceilings within 25 % of each other.
            let rate = match failed {
                None => match rates.next() {
                    Some(rate) => rate,
                    None => break,
                },
                Some(f) if !plan.smoke && f - held > SATURATION_RESOLUTION => {
                    (held + (f - held) / 2) / 500 * 500
                }
                Some(_) => break,
            };
            let per_sender = rate as f64 / (2 * pairs) as f64;
            if limit > 0 && per_sender > limit as f64 {
                println!(
                    "  {rate}/s would be {per_sender:.1}/s per sender, above the announced \
                     limit of {limit}/s: not run (--saturation-pairs raises the ceiling)"
                );
                break;
            }
            step += 1;
            let streamed = stream(
                &calls.pairs,
                &[calls.server.pid()],
                step,
                rate,
                plan.relay_window,
                plan.drain,
            )
            .await?;
            streamed.print(&format!("{rate}/s"), &kind.to_string());
            steps.entry(kind).or_default().push(streamed.clone());
            if streamed.held() {
                held = held.max(rate);
            } else {
                println!(
                    "      did not hold (p99 {:.1} ms, delivered {:.3} %)",
                    ms(streamed.p99),
                    streamed.delivered_percent()
                );
                failed = Some(failed.map_or(rate, |f: u32| f.min(rate)));
            }
            if plan.smoke && step == 1 {
                cx.check(
                    streamed.received == streamed.sent && streamed.sent > 0,
                    || {
                        format!(
                            "3. {kind} {rate}/s: {}/{} candidates delivered",
                            streamed.received, streamed.sent
                        )
                    },
                );
            }
        }
        let top = plan.saturation_rates.last().copied().unwrap_or(0);
        println!(
            "  {kind}: highest rate held {held}/s{}{}",
            failed.map_or(String::new(), |f| format!(", not {f}/s")),
            if held == top && top > 0 {
                " (the highest step: the real ceiling is above)"
            } else {
                ""
            }
        );
        highest.insert(kind, held);
        calls.end(cx, "3. saturation").await?;
    }
    let top = plan.saturation_rates.last().copied().unwrap_or(0);
    let held = |kind| {
        let rate = highest[&kind];
        if rate == top {
            format!("≥{rate}")
        } else {
            rate.to_string()
        }
    };
    let (k, b) = (highest[&Kind::Konsult], highest[&Kind::Bare]);
    let ratio = if k == top && b == top {
        "?".to_owned()
    } else if b == 0 {
        "-".to_owned()
    } else {
        format!(
            "{}{:.2}",
            if k == top { "≥" } else { "" },
            f64::from(k) / f64::from(b)
        )
    };
    cx.summary.push((
        format!("3. saturation {pairs} pairs: highest rate held (msg/s)"),
        held(Kind::Konsult),
        held(Kind::Bare),
        ratio,
    ));
    // The highest step both servers ran.
    let common = steps[&Kind::Konsult]
        .iter()
        .filter_map(|k| {
            steps[&Kind::Bare]
                .iter()
                .find(|b| b.target == k.target)
                .map(|b| (k, b))
        })
        .max_by_key(|(k, _)| k.target);
    if let Some((k, b)) = common {
        cx.row(
            format!("3. saturation {pairs} pairs: p99 at {}/s (ms)", k.target),
            ms(k.p99),
            ms(b.p99),
        );
        cx.row(
            format!(
                "3. saturation {pairs} pairs: server CPU at {}/s (%)",
                k.target
            ),
            k.server_cpu_percent,
            b.server_cpu_percent,
        );
    }
    Ok(())
}

fn print_summary(cx: &Run) {
    println!();
    println!("== Summary (ratio = Konsult / bare) ==");
    if cx.plan.smoke {
        println!("(smoke run: counts far too small to judge; it shows that everything runs)");
    }
    println!(
        "  {:<58} {:>12} {:>12} {:>8}",
        "metric", "konsult", "bare", "ratio"
    );
    for (metric, konsult, bare, ratio) in &cx.summary {
        println!("  {metric:<58} {konsult:>12} {bare:>12} {ratio:>8}");
    }
    if cx.summary.iter().any(|row| row.1.starts_with('≥')) {
        println!(
            "  (≥: the highest step held, so the ceiling is above it; \
             --saturation-pairs N raises the steps to 40 × N msg/s)"
        );
    }
}

/// A figure with as many decimals as it needs.
fn figure(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// CPU readings as printed: whole percents, space-separated.
fn percents(readings: &[f64]) -> String {
    readings
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(" ")
}
