//! The billing ledger as a property, through the API on SQLite: for any sequence of
//! completions, reversals, fee-step additions, in-clinic visits, re-decisions, exports and days
//! passing, in any order,
//!
//! * each patient's Danish day has at most one active line of each service,
//! * every line's region and patient shares sum to its fee, and every page's totals are the
//!   sums of its lines,
//! * every exported period (CSV and JSON) is byte-identical when exported again at the end,
//! * no request fails with a server error.
//!
//! Cases default to 12 (a fresh server each); `PROPTEST_CASES` raises them.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use common::*;
use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One thing the clinic does.
#[derive(Debug, Clone)]
enum Op {
    /// The clock moves to 09:00 (Danish winter time) the next day.
    NextDay,
    /// A two-way call with patient `n` today, completed.
    Complete(usize),
    /// The `n`-th (modulo) active line is reversed.
    Reverse(usize),
    /// Patient `n` is seen in the clinic today.
    Visit(usize),
    /// A speciale 51 regulation step for the `n`-th missing date, of the `m`-th percentage.
    Step(usize, usize),
    /// The `n`-th (modulo) consultation is decided again.
    Redecide(usize),
    /// Every closed month not exported yet is exported.
    Export,
}

const PATIENTS: usize = 2;
const STEP_DATES: [&str; 4] = ["2023-10-01", "2024-10-01", "2025-04-01", "2025-10-01"];
const STEP_PERCENTS: [&str; 3] = ["0", "1,5", "-0,84"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::NextDay),
        5 => (0..PATIENTS).prop_map(Op::Complete),
        2 => any::<usize>().prop_map(Op::Reverse),
        2 => (0..PATIENTS).prop_map(Op::Visit),
        1 => (0..STEP_DATES.len(), 0..STEP_PERCENTS.len()).prop_map(|(d, p)| Op::Step(d, p)),
        1 => any::<usize>().prop_map(Op::Redecide),
        2 => Just(Op::Export),
    ]
}

/// What the run has done so far.
struct Run {
    app: TestApp,
    admin: Client,
    clinic: String,
    patients: Vec<EligiblePatient>,
    consultations: Vec<String>,
    /// Consultations held today, to space their start times.
    held_today: i64,
    /// Exported periods (first day of the month) and what the export said.
    exported: BTreeMap<NaiveDate, (String, Value)>,
}

fn start_of_run() -> DateTime<Utc> {
    // 28 January 2026, 09:00 in Copenhagen: the run crosses into February and March.
    Utc.with_ymd_and_hms(2026, 1, 28, 8, 0, 0).unwrap()
}

fn month_end(first: NaiveDate) -> NaiveDate {
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.unwrap().pred_opt().unwrap()
}

/// Fails on a server error; other refusals are part of the game (a second completion of a
/// patient's day is refused, a step may already be recorded).
fn no_server_error(what: &str, status: StatusCode, body: &Value) {
    assert!(!status.is_server_error(), "{what}: {status} {body}");
}

impl Run {
    async fn new() -> Run {
        let app = TestApp::spawn_at(Db::Sqlite, start_of_run()).await;
        let admin = app.setup_clinic("Klinik", "123456", "admin@k.dk").await;
        let clinic = admin.get_ok("/api/me").await["clinic_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut patients = Vec::new();
        for n in 0..PATIENTS {
            let cpr = format!("01017{n}-1234");
            patients
                .push(patient_with(&app, &admin, &format!("Patient {n}"), Some(&cpr), 51).await);
        }
        Run {
            app,
            admin,
            clinic,
            patients,
            consultations: Vec::new(),
            held_today: 0,
            exported: BTreeMap::new(),
        }
    }

    async fn apply(&mut self, op: &Op) {
        match op {
            Op::NextDay => {
                self.app.set_now(self.app.now() + Duration::days(1));
                self.admin.login("admin@k.dk", ADMIN_PASSWORD).await;
                self.held_today = 0;
            }
            Op::Complete(n) => {
                let start = self.app.now() + Duration::minutes(30 + 40 * self.held_today);
                self.held_today += 1;
                let (status, body) = schedule(&self.admin, &self.patients[*n], start).await;
                no_server_error("schedule", status, &body);
                if status != StatusCode::CREATED {
                    return;
                }
                let id = body["consultation"]["id"].as_str().unwrap().to_owned();
                simulate_call(&self.app, &self.clinic, &id, start, true).await;
                let (status, body) = self
                    .admin
                    .post(&format!("/api/consultations/{id}/complete"), journal())
                    .await;
                no_server_error("complete", status, &body);
                assert_eq!(status, StatusCode::OK, "complete: {body}");
                self.consultations.push(id);
            }
            Op::Reverse(n) => {
                let lines = self.lines().await;
                let active = active(&lines);
                if active.is_empty() {
                    return;
                }
                let line = active[n % active.len()]["line_id"].as_str().unwrap();
                let (status, body) = self
                    .admin
                    .post(
                        &format!("/api/billing/{line}/correction"),
                        json!({"note": "Egenskabstest"}),
                    )
                    .await;
                no_server_error("correction", status, &body);
                assert_eq!(
                    status,
                    StatusCode::CREATED,
                    "an active line can be reversed: {body}"
                );
            }
            Op::Visit(n) => {
                let (status, body) = self
                    .admin
                    .post(
                        &format!("/api/patients/{}/visits", self.patients[*n].patient_id),
                        json!({"at": self.app.now()}),
                    )
                    .await;
                no_server_error("visit", status, &body);
                assert_eq!(status, StatusCode::CREATED, "visit: {body}");
            }
            Op::Step(d, p) => {
                let (status, body) = self
                    .admin
                    .post(
                        "/api/fees/steps",
                        json!({"speciale": 51, "effective_from": STEP_DATES[*d], "percent": STEP_PERCENTS[*p], "source": "egenskabstest"}),
                    )
                    .await;
                no_server_error("fee step", status, &body);
            }
            Op::Redecide(n) => {
                if self.consultations.is_empty() {
                    return;
                }
                let id = &self.consultations[n % self.consultations.len()];
                let (status, body) = self
                    .admin
                    .post(&format!("/api/consultations/{id}/decision"), json!({}))
                    .await;
                no_server_error("decide again", status, &body);
                assert_eq!(status, StatusCode::OK, "decide again: {body}");
            }
            Op::Export => {
                let today = danish_today(self.app.now());
                let mut month = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
                while month_end(month) < today {
                    if !self.exported.contains_key(&month) {
                        let export = self.export(month).await;
                        self.exported.insert(month, export);
                    }
                    month = month_end(month).succ_opt().unwrap();
                }
            }
        }
    }

    /// Every line, by posting day.
    async fn lines(&self) -> Vec<Value> {
        let page = self
            .admin
            .get_ok("/api/billing?from=2026-01-01&to=2026-12-31&by=posting")
            .await;
        check_totals(&page);
        page["lines"].as_array().unwrap().clone()
    }

    async fn export(&self, month: NaiveDate) -> (String, Value) {
        let period = format!("from={month}&to={}", month_end(month));
        let (status, csv) = self
            .admin
            .get(&format!("/api/billing/export.csv?{period}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{csv}");
        let (status, json) = self
            .admin
            .get(&format!("/api/billing/export.json?{period}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        check_totals(&json);
        (csv.as_str().unwrap().to_owned(), json)
    }

    /// The invariants that hold after every step.
    async fn check(&self, after: &Op) {
        let lines = self.lines().await;
        for line in &lines {
            assert_eq!(
                line["region_share_ore"].as_i64().unwrap()
                    + line["patient_share_ore"].as_i64().unwrap(),
                line["fee_ore"].as_i64().unwrap(),
                "shares sum to the fee after {after:?}: {line}"
            );
        }
        let mut days = BTreeSet::new();
        for line in active(&lines) {
            let key = (
                line["patient_ref"].as_str().unwrap().to_owned(),
                line["calendar_day"].as_str().unwrap().to_owned(),
                line["service_number"].as_str().unwrap().to_owned(),
            );
            assert!(
                days.insert(key.clone()),
                "two active lines for {key:?} after {after:?}: {lines:#?}"
            );
        }
    }

    async fn finish(self) {
        for (month, (csv, json)) in &self.exported {
            let (again_csv, again_json) = self.export(*month).await;
            assert_eq!(&again_csv, csv, "the export of {month} changed");
            assert_eq!(&again_json, json, "the JSON export of {month} changed");
        }
        self.app.stop().await;
    }
}

fn danish_today(now: DateTime<Utc>) -> NaiveDate {
    konsult_domain::danish_day(now)
}

/// Lines neither reversed nor reversals.
fn active(lines: &[Value]) -> Vec<&Value> {
    let reversed: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["correction_of"].as_str())
        .collect();
    lines
        .iter()
        .filter(|l| {
            l["correction_of"].is_null() && !reversed.contains(l["line_id"].as_str().unwrap())
        })
        .collect()
}

/// A page's or export's totals are the sums of its lines.
fn check_totals(page: &Value) {
    let lines = page["lines"].as_array().unwrap();
    for (field, total) in [
        ("fee_ore", "fee_ore"),
        ("region_share_ore", "region_share_ore"),
        ("patient_share_ore", "patient_share_ore"),
    ] {
        let sum: i64 = lines.iter().map(|l| l[field].as_i64().unwrap()).sum();
        assert_eq!(
            page["totals"][total].as_i64().unwrap(),
            sum,
            "{total} of {page}"
        );
    }
    assert_eq!(
        page["totals"]["lines"].as_u64().unwrap() as usize,
        lines.len()
    );
}

async fn run(ops: Vec<Op>) {
    let mut run = Run::new().await;
    for op in &ops {
        run.apply(op).await;
        run.check(op).await;
    }
    // Whatever happened, the months that closed export the same again.
    run.apply(&Op::Export).await;
    run.finish().await;
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_holds_for_any_order_of_events(ops in prop::collection::vec(op(), 1..28)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}
