//! Konsult as a cluster (issue 16): nodes on one PostgreSQL database and
//! one NATS, loaded by the `signaling_load` generator, every figure beside
//! its baseline from the same run.
//!
//! ```sh
//! cargo bench -p konsult-server --bench cluster_load              # full, ~6 min on 2 cores
//! cargo bench -p konsult-server --bench cluster_load -- --smoke   # every scenario, small
//! cargo test  -p konsult-server --bench cluster_load -- --smoke   # the same in the test profile
//! ```
//!
//! It needs PostgreSQL and NATS with JetStream: `KONSULT_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`) and
//! `KONSULT_TEST_NATS_URL` (default `nats://127.0.0.1:4222`). Each run makes
//! a database and a subject prefix of its own and removes both. The nodes
//! are the real `konsult` binary (`serve`, the first node with `--demo`,
//! which seeds the clinic into the shared database), on 127.0.0.1, with the
//! same data key and relay secret; the consultations are scheduled through
//! the HTTP API.
//!
//! 1. **Same node vs across nodes.** Two nodes. `--pairs` admitted pairs
//!    with both participants on one node (half the rooms on each), then as
//!    many with the therapist on one node and the patient on the other
//!    (every message crosses NATS: edge → owner → edge), candidates
//!    streamed both ways at `--rate` in all; the two take turns
//!    `--repeat` times. Latency p50/p99/max, medians, and the ratio; the
//!    goals are a cross-node p99 of at most 5 ms and 3× the same-node p99.
//! 2. **One node vs three.** Every node runs under the same CPU budget (a
//!    cgroup quota of `--node-cpus` cores with a 10 ms period, as if each
//!    had a machine of its own; the generator and NATS are outside it; set
//!    up without it, measured with it). One node carries `--scale-pairs`
//!    pairs, three nodes three times as many, twice: *by room*, both
//!    participants of a room on one node, as HAProxy sends the web
//!    client's WebSockets by their `?room=` (deploy/cluster/haproxy.cfg);
//!    and *spread*, every combination of nodes equally often, as for
//!    clients without it (two thirds of the pairs across nodes). The rate
//!    rises in steps (three nodes' steps three times one node's) until the
//!    p99 exceeds 50 ms or less than 99 % is delivered. The highest step
//!    held by each, and the ratios to one node (goal: ≥ 2.5).
//! 3. **Owner killed.** `--calls` admitted, negotiated calls spread over
//!    three nodes; one node is killed (SIGKILL). Every participant whose
//!    connection drops, or is closed with 1013 by its node because the
//!    room's node is gone, reconnects with `resume` to another node, as
//!    through a load balancer. Reported: participants that dropped,
//!    resumed and did not; resume time from the kill (median, max); then a
//!    window of candidates through every pair (each must arrive: no call
//!    lost), and after the therapists leave, every consultation `ended` in
//!    the API (none stuck).
//!
//! `--smoke` runs every scenario small and fails (exit 1) unless the
//! protocol worked: every participant welcomed, every pair admitted and
//! negotiated, every candidate delivered, and in scenario 3 every dropped
//! participant resumed, every call carried on and ended. `--only 1,3`
//! picks scenarios. The goals are printed as held or missed; they fail no
//! run (they are figures of a shared machine, not checks).

#[path = "signaling_load/mod.rs"]
#[allow(dead_code)] // the parts only `signaling_load` uses
mod load;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{bail, Context};
use load::args::{number, scenarios};
use load::participants::{Endpoint, Placement, Population};
use load::process::{machine, raise_open_files_limit, CpuBudget, ProcessSample};
use load::servers::{schedule_consultations, Api, Installation, Kind, Room, Server};
use load::streaming::{median, ms, percentiles, stream, Streamed};

/// Scheduling requests in flight while seeding: PostgreSQL serialises one
/// clinic's scheduling, and a node answers 503 when its requests wait for
/// a connection longer than the database timeout.
const SEED_CONCURRENCY: usize = 8;

/// What runs, and how much.
#[derive(Debug, Clone)]
struct Plan {
    smoke: bool,
    /// Scenarios to run, bit n for scenario n; 0: all.
    only: u8,
    repeat: usize,
    pairs: usize,
    rate: u32,
    window: Duration,
    drain: Duration,
    node_cpus: f64,
    scale_pairs: usize,
    /// One node's steps; three nodes run each three times over.
    scale_rates: Vec<u32>,
    scale_window: Duration,
    calls: usize,
}

impl Plan {
    fn full() -> Self {
        Self {
            smoke: false,
            only: 0,
            repeat: 3,
            pairs: 250,
            rate: 5000,
            window: Duration::from_secs(10),
            drain: Duration::from_secs(1),
            node_cpus: 0.15,
            scale_pairs: 400,
            scale_rates: vec![
                1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 10_000, 12_000,
            ],
            scale_window: Duration::from_secs(5),
            calls: 100,
        }
    }

    fn smoke() -> Self {
        Self {
            smoke: true,
            repeat: 1,
            pairs: 20,
            rate: 400,
            window: Duration::from_secs(2),
            drain: Duration::from_millis(500),
            scale_pairs: 20,
            scale_rates: vec![200, 400],
            scale_window: Duration::from_secs(1),
            calls: 12,
            ..Self::full()
        }
    }

    fn runs(&self, scenario: u8) -> bool {
        self.only == 0 || self.only & (1 << scenario) != 0
    }

    fn from_args(args: &[String]) -> anyhow::Result<Self> {
        let mut plan = if args.iter().any(|a| a == "--smoke")
            || std::env::var("KONSULT_BENCH_SMOKE").is_ok_and(|v| v == "1")
        {
            Self::smoke()
        } else {
            Self::full()
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--smoke" | "--bench" => {}
                "--only" => plan.only |= scenarios(args.next())?,
                "--repeat" => plan.repeat = number::<usize>(args.next(), "--repeat")?.max(1),
                "--pairs" => plan.pairs = number::<usize>(args.next(), "--pairs")?.max(2),
                "--rate" => plan.rate = number(args.next(), "--rate")?,
                "--node-cpus" => plan.node_cpus = number(args.next(), "--node-cpus")?,
                "--scale-pairs" => {
                    plan.scale_pairs = number::<usize>(args.next(), "--scale-pairs")?.max(1)
                }
                "--calls" => plan.calls = number::<usize>(args.next(), "--calls")?.max(3),
                other => bail!(
                    "unknown argument {other:?} (known: --smoke, --only 1,3, --repeat R, \
                     --pairs N, --rate R, --node-cpus C, --scale-pairs N, --calls N)"
                ),
            }
        }
        Ok(plan)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = match Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("cluster_load: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = raise_open_files_limit() {
        eprintln!("cluster_load: {e:#}");
        return ExitCode::FAILURE;
    }
    // The load generator: two workers, as in signaling_load.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cluster_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Servers are spawned from this thread (their parent-death signal
    // follows it): `block_on` runs the scenarios here.
    match runtime.block_on(run(&plan)) {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("cluster_load: {} check(s) failed:", failures.len());
            for failure in failures {
                eprintln!("  - {failure}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cluster_load: a scenario could not run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the shared services are.
struct Services {
    postgres: String,
    nats: String,
}

/// A database and a subject prefix of the run's own, removed when dropped.
struct Namespace {
    services: std::sync::Arc<Services>,
    database: String,
    prefix: String,
}

impl Namespace {
    async fn new(services: std::sync::Arc<Services>) -> anyhow::Result<Self> {
        use sqlx::Connection;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("konsult_bench_{}", &suffix[..12]);
        let mut conn = sqlx::PgConnection::connect(&services.postgres)
            .await
            .with_context(|| format!("connect to PostgreSQL at {}", services.postgres))?;
        sqlx::query(&format!("CREATE DATABASE \"{database}\""))
            .execute(&mut conn)
            .await?;
        conn.close().await.ok();
        Ok(Self {
            services,
            prefix: format!("konsult_bench_{}", &suffix[..12]),
            database,
        })
    }

    fn database_url(&self) -> String {
        let admin = &self.services.postgres;
        match admin.rfind('/') {
            Some(i) if !admin[..i].ends_with('/') => format!("{}/{}", &admin[..i], self.database),
            _ => format!("{}/{}", admin.trim_end_matches('/'), self.database),
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let (postgres, nats) = (self.services.postgres.clone(), self.services.nats.clone());
        let (database, prefix) = (self.database.clone(), self.prefix.clone());
        // Drop may run inside the runtime: a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres).await {
                    let _ = sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    ))
                    .execute(&mut conn)
                    .await;
                }
                // The nodes' room-lease bucket (a JetStream stream).
                if let Ok(client) = async_nats::connect(&nats).await {
                    let _ = client
                        .request(
                            format!("$JS.API.STREAM.DELETE.KV_{prefix}_rooms"),
                            Vec::new().into(),
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

/// Nodes of one cluster, the therapist logged in, one eligible patient.
struct Cluster {
    nodes: Vec<Option<Server>>,
    budgets: Vec<CpuBudget>,
    api: Api,
    patient: (String, String),
    // Dropped last: the nodes die first.
    installations: Vec<Installation>,
    namespace: Namespace,
}

impl Cluster {
    /// Starts `n` nodes on a fresh namespace.
    async fn start(services: &std::sync::Arc<Services>, n: usize) -> anyhow::Result<Self> {
        let namespace = Namespace::new(services.clone()).await?;
        let database_url = namespace.database_url();
        let env = [
            ("KONSULT_DATABASE_URL", database_url.as_str()),
            ("KONSULT_CLUSTER__NATS_URL", services.nats.as_str()),
            ("KONSULT_CLUSTER__SUBJECT_PREFIX", namespace.prefix.as_str()),
        ];
        let mut installations = vec![Installation::clustered(&env)?];
        let mut nodes = vec![Some(Server::konsult(&mut installations[0]).await?)];
        for _ in 1..n {
            let mut node = Installation::node_of(&installations[0])?;
            nodes.push(Some(Server::konsult(&mut node).await?));
            installations.push(node);
        }
        let password = installations[0]
            .password
            .clone()
            .context("the first node printed no demo password")?;
        let first = nodes[0].as_ref().map(|s| s.addr).context("a node")?;
        let api = Api::login(first, load::servers::THERAPIST_EMAIL, &password).await?;
        let patient = api.eligible_patient().await?;
        Ok(Self {
            nodes,
            budgets: Vec::new(),
            api,
            patient,
            installations,
            namespace,
        })
    }

    /// Puts every node under a budget of `cpus` cores.
    fn budget(&mut self, cpus: f64) -> anyhow::Result<()> {
        for (i, pid) in self.pids().into_iter().enumerate() {
            let budget = CpuBudget::new(&format!("{}-{i}", self.namespace.prefix), cpus)?;
            budget.add(pid)?;
            self.budgets.push(budget);
        }
        Ok(())
    }

    /// How long the budgets held the nodes back so far.
    fn throttled(&self) -> Duration {
        self.budgets.iter().map(CpuBudget::throttled).sum()
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().flatten().map(|s| s.addr).collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().flatten().map(Server::pid).collect()
    }

    async fn rooms(&self, count: usize) -> anyhow::Result<Vec<Room>> {
        let scheduled = schedule_consultations(
            &self.api,
            &self.patient.0,
            &self.patient.1,
            count,
            SEED_CONCURRENCY,
        )
        .await;
        match scheduled {
            Ok((rooms, _)) => Ok(rooms),
            Err(e) => {
                let log = self.nodes[0].as_ref().map(|n| n.log_tail(6000));
                Err(e.context(format!(
                    "the first node's log:\n{}",
                    log.unwrap_or_default()
                )))
            }
        }
    }

    /// Admitted, negotiated pairs in `count` new rooms, placed by
    /// `placement`.
    async fn calls(
        &self,
        count: usize,
        placement: Placement,
        resume: bool,
        first_source: usize,
        checks: &mut Checks,
    ) -> anyhow::Result<(Population, Vec<Room>)> {
        let rooms = self.rooms(count).await?;
        let endpoint = Endpoint {
            kind: Kind::Konsult,
            addrs: self.addrs(),
            placement,
            cookie: Some(self.api.cookie.clone()),
            resume,
        };
        let population = Population::join(&endpoint, &rooms, true, 64, first_source);
        population.joined().await;
        let patience = Duration::from_secs(30) + Duration::from_millis(20 * count as u64);
        population
            .wait_for(patience, |s| s.ready_pairs.load(Relaxed) >= count)
            .await;
        let shared = &population.shared;
        for (why, n) in shared.join_failures() {
            println!("      join failed ×{n}: {why}");
        }
        let (welcomed, ready) = (
            shared.welcomed.load(Relaxed),
            shared.ready_pairs.load(Relaxed),
        );
        checks.check(welcomed == 2 * count, || {
            format!(
                "{placement:?}: {welcomed}/{} participants welcomed",
                2 * count
            )
        });
        checks.check(ready == count, || {
            format!("{placement:?}: {ready}/{count} pairs admitted and negotiated")
        });
        // Joins leave writes behind: stream once they are done.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok((population, rooms))
    }
}

/// The protocol checks of a run, and the summary.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    summary: Vec<String>,
}

impl Checks {
    fn check(&mut self, held: bool, what: impl FnOnce() -> String) {
        if !held {
            let what = what();
            println!("      CHECK FAILED: {what}");
            self.failures.push(what);
        }
    }

    /// Whether every candidate of `streamed` arrived, once and in order.
    fn delivered(&mut self, label: &str, streamed: &Streamed) {
        self.check(
            streamed.received == streamed.sent && streamed.out_of_order == 0,
            || {
                format!(
                    "{label}: {}/{} candidates delivered, {} out of order",
                    streamed.received, streamed.sent, streamed.out_of_order
                )
            },
        );
    }
}

async fn run(plan: &Plan) -> anyhow::Result<Vec<String>> {
    let services = std::sync::Arc::new(Services {
        postgres: std::env::var("KONSULT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        nats: std::env::var("KONSULT_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
    });
    println!(
        "cluster_load: {} run, {} build; machine: {}",
        if plan.smoke { "smoke" } else { "full" },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine()
    );
    println!(
        "  nodes: the konsult binary on PostgreSQL {} and NATS {}",
        services.postgres, services.nats
    );
    let began = std::time::Instant::now();
    let mut checks = Checks::default();
    if plan.runs(1) {
        same_vs_cross(plan, &services, &mut checks).await?;
    }
    if plan.runs(2) {
        scale(plan, &services, &mut checks).await?;
    }
    if plan.runs(3) {
        failover(plan, &services, &mut checks).await?;
    }
    println!();
    println!("== Summary ==");
    if plan.smoke {
        println!("(smoke run: counts far too small to judge; it shows that everything runs)");
    }
    for line in &checks.summary {
        println!("  {line}");
    }
    println!(
        "all scenarios ran in {:.0} s",
        began.elapsed().as_secs_f64()
    );
    Ok(checks.failures)
}

fn goal(held: bool) -> &'static str {
    if held {
        "goal held"
    } else {
        "goal MISSED"
    }
}

/// Scenario 1.
async fn same_vs_cross(
    plan: &Plan,
    services: &std::sync::Arc<Services>,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    println!();
    println!(
        "== 1. Same node vs across nodes: 2 nodes, {} pairs, {} candidates/s in all for {} s, \
         {} turn(s) each ==",
        plan.pairs,
        plan.rate,
        plan.window.as_secs(),
        plan.repeat
    );
    let cluster = Cluster::start(services, 2).await?;
    let mut p99 = [Vec::new(), Vec::new()];
    let mut phase = 0;
    for turn in 0..plan.repeat {
        for (i, placement) in [Placement::Same, Placement::Cross].into_iter().enumerate() {
            let (population, _) = cluster
                .calls(plan.pairs, placement, false, 0, checks)
                .await?;
            phase += 1;
            let streamed = stream(
                &population,
                &cluster.pids(),
                phase,
                plan.rate,
                plan.window,
                plan.drain,
            )
            .await?;
            let label = format!("{placement:?} #{}", turn + 1);
            streamed.print(&label, "2 nodes");
            checks.delivered(&label, &streamed);
            p99[i].push(ms(streamed.p99));
            population.leave(Duration::from_secs(20)).await;
        }
    }
    let (same, cross) = (
        median(p99[0].iter().copied()),
        median(p99[1].iter().copied()),
    );
    let ratio = cross / same.max(1e-9);
    checks.summary.push(format!(
        "1. relay p99 at {}/s, median of {}: same node {same:.2} ms, across nodes {cross:.2} ms, \
         ratio {ratio:.2} ({}: ≤ 5 ms and ≤ 3×)",
        plan.rate,
        plan.repeat,
        goal(cross <= 5.0 && ratio <= 3.0)
    ));
    Ok(())
}

/// Scenario 2.
async fn scale(
    plan: &Plan,
    services: &std::sync::Arc<Services>,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    println!();
    println!(
        "== 2. One node vs three: each node under a budget of {} core(s); {} pairs a node; \
         the rate raised until p99 > 50 ms or < 99 % delivered ==",
        plan.node_cpus, plan.scale_pairs
    );
    let mut budgeted = true;
    // One node; three with each room's participants on one node, as
    // HAProxy sends the web client's WebSockets by their `?room=`; three
    // with every combination of nodes, as for clients without it.
    let runs = [
        (1usize, Placement::Same, "1 node"),
        (3, Placement::Same, "3 nodes, by room"),
        (3, Placement::Spread, "3 nodes, spread"),
    ];
    let mut highest = [0u32; 3];
    for (i, (n, placement, label)) in runs.into_iter().enumerate() {
        let mut cluster = Cluster::start(services, n).await?;
        let pairs = plan.scale_pairs * n;
        let (population, _) = cluster.calls(pairs, placement, false, 0, checks).await?;
        // The budget holds for the measured windows (the set-up above ran
        // without it).
        if budgeted {
            if let Err(e) = cluster.budget(plan.node_cpus) {
                println!("  note: no CPU budget ({e:#}); the nodes share the machine unbudgeted");
                budgeted = false;
            }
        }
        println!("  -- {label}: {pairs} pairs ({} participants)", 2 * pairs);
        let limit = population.shared.rate_per_second.load(Relaxed);
        for (step, rate) in plan.scale_rates.iter().map(|r| r * n as u32).enumerate() {
            let per_sender = rate as f64 / (2 * pairs) as f64;
            if limit > 0 && per_sender > limit as f64 {
                println!("  {rate}/s is above the per-connection limit ({limit}/s): stop");
                break;
            }
            let throttled_before = cluster.throttled();
            let streamed = stream(
                &population,
                &cluster.pids(),
                step as u32 + 1,
                rate,
                plan.scale_window,
                plan.drain,
            )
            .await?;
            let throttled = cluster.throttled().saturating_sub(throttled_before);
            streamed.print(&format!("{rate}/s"), label);
            if !cluster.budgets.is_empty() {
                println!(
                    "      throttled by the budget: {:.0} ms in all",
                    ms(throttled)
                );
            }
            if plan.smoke {
                checks.delivered(&format!("{label} at {rate}/s"), &streamed);
            }
            if !streamed.held() {
                break;
            }
            highest[i] = rate;
        }
        population.leave(Duration::from_secs(20)).await;
    }
    let budget = if budgeted {
        format!(", each node ≤ {} core(s)", plan.node_cpus)
    } else {
        ", no CPU budget".to_owned()
    };
    let ratio = |three: u32| f64::from(three) / f64::from(highest[0].max(1));
    let (by_room, spread) = (ratio(highest[1]), ratio(highest[2]));
    checks.summary.push(format!(
        "2. highest rate held (p99 ≤ 50 ms, ≥ 99 % delivered){budget}: 1 node {}/s with {} \
         participants; 3 nodes {}/s by room (ratio {by_room:.2}, {}: ≥ 2.5) and {}/s spread \
         (ratio {spread:.2}), with {} participants",
        highest[0],
        2 * plan.scale_pairs,
        highest[1],
        goal(by_room >= 2.5),
        highest[2],
        6 * plan.scale_pairs,
    ));
    Ok(())
}

/// Scenario 3.
async fn failover(
    plan: &Plan,
    services: &std::sync::Arc<Services>,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    println!();
    println!(
        "== 3. Owner killed: {} calls spread over 3 nodes, one node killed (SIGKILL) ==",
        plan.calls
    );
    let mut cluster = Cluster::start(services, 3).await?;
    let (population, rooms) = cluster
        .calls(plan.calls, Placement::Spread, true, 0, checks)
        .await?;
    let shared = population.shared.clone();
    // The API through a node that stays.
    let survivor = cluster.nodes[1]
        .as_ref()
        .map(|s| s.addr)
        .context("node 2")?;
    let password = cluster.installations[0]
        .password
        .clone()
        .unwrap_or_default();
    let api = Api::login(survivor, load::servers::THERAPIST_EMAIL, &password).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = cluster.nodes[0].take().context("node 1")?;
    let killed_pid = killed.pid();
    shared.mark_kill();
    killed.kill();
    println!("  node 1 (pid {killed_pid}) killed");
    // Everyone who dropped comes back, or gives up (30 s).
    let settled = population
        .wait_for(Duration::from_secs(40), |s| {
            let dropped = s.dropped.load(Relaxed);
            dropped > 0
                && s.resumed.load(Relaxed) + s.not_resumed.load(Relaxed) + s.gave_up.load(Relaxed)
                    >= dropped
        })
        .await;
    // Late drops (a heartbeat timeout) would show here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dropped = shared.dropped.load(Relaxed);
    let resumed = shared.resumed.load(Relaxed);
    let not_resumed = shared.not_resumed.load(Relaxed);
    let gave_up = shared.gave_up.load(Relaxed);
    let mut resumes = shared.resumes();
    let (p50, _, max) = percentiles(&mut resumes);
    println!(
        "  {dropped} participants dropped (or were closed for a resume); {resumed} resumed, \
         {not_resumed} welcomed without resume, {gave_up} found no node; resume after the kill: \
         median {:.0} ms, max {:.0} ms",
        ms(p50),
        ms(max)
    );
    checks.check(settled && dropped > 0, || {
        format!("the dropped participants did not all come back ({dropped} dropped)")
    });
    checks.check(
        resumed == dropped && not_resumed == 0 && gave_up == 0,
        || format!("{resumed}/{dropped} resumed, {not_resumed} not resumed, {gave_up} gave up"),
    );
    // Every call carries on: candidates through every pair, each arriving.
    let rate = (plan.calls as u32 * 2 * 2).max(10);
    let streamed = stream(
        &population,
        &cluster.pids(),
        1000,
        rate,
        Duration::from_secs(3),
        plan.drain,
    )
    .await?;
    streamed.print("after the kill", "2 nodes");
    checks.delivered("after the kill", &streamed);
    let events = shared.events();
    for (event, count) in &events {
        println!("      ×{count}: {event}");
    }
    // The therapists end every call; no consultation may stay open.
    population.leave(Duration::from_secs(20)).await;
    let mut ended = 0;
    let mut stuck = Vec::new();
    for room in &rooms {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = api
                .get(&format!("/api/consultations/{}", room.consultation))
                .await?;
            if state["state"] == "ended" {
                ended += 1;
                break;
            }
            if std::time::Instant::now() > deadline {
                stuck.push(format!("{} {}", room.consultation, state["state"]));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "  after the therapists left: {ended}/{} consultations ended, {} stuck{}",
        rooms.len(),
        stuck.len(),
        if stuck.is_empty() {
            String::new()
        } else {
            format!(": {}", stuck.join(", "))
        }
    );
    // A call is lost when a participant of it could not resume, or when
    // candidates stopped going through it.
    let carried_on = streamed.received == streamed.sent && streamed.out_of_order == 0;
    let lost = match (not_resumed + gave_up, carried_on) {
        (0, true) => "0 calls lost".to_owned(),
        (n, _) => format!(
            "calls LOST: {n} participants did not resume, {}/{} candidates delivered",
            streamed.received, streamed.sent
        ),
    };
    checks.check(stuck.is_empty(), || {
        format!("{} consultations stuck: {}", stuck.len(), stuck.join(", "))
    });
    let survivors: Vec<ProcessSample> = cluster
        .pids()
        .into_iter()
        .filter_map(|pid| ProcessSample::read(pid).ok())
        .collect();
    checks.check(survivors.len() == 2, || "a surviving node died".to_owned());
    checks.summary.push(format!(
        "3. one of 3 nodes killed during {} calls: {dropped} participants resumed elsewhere \
         ({resumed} resumed, {not_resumed} without resume), resume after the kill median \
         {:.0} ms, max {:.0} ms; {}/{} candidates after it delivered; {lost}, {} \
         consultations stuck",
        plan.calls,
        ms(p50),
        ms(max),
        streamed.received,
        streamed.sent,
        stuck.len()
    ));
    drop(cluster);
    Ok(())
}
