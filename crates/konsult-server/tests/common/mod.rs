//! Helpers shared by the integration tests: the app on port 0 with a fresh
//! database (SQLite in a tempdir, or a fresh PostgreSQL database when
//! `KONSULT_TEST_POSTGRES_URL` is set), an HTTP client that keeps the
//! session cookie and CSRF token, and fixtures. `signal` holds the
//! signaling (WebSocket and call) helpers.
//!
//! NOTE: this file was re-created by the signaling helper after it was
//! overwritten by mistake; the API is the one the api_* and health tests
//! use.
#![allow(dead_code)]

pub mod binary;
pub mod ports;
pub mod python;
pub mod signal;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use konsult_domain::{ClinicId, ConsultationId, Speciale};
use konsult_server::{AppState, Application, Clock, Settings};
use konsult_store::clinics::NewClinic;
use konsult_store::consultations::CallEvent;
use konsult_store::therapists::{NewTherapist, Role};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The password of every admin made by [`TestApp::setup_clinic`].
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// The instant the manual clock starts at: a Wednesday morning in
/// Copenhagen (09:00 local).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap()
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A fresh SQLite file in a tempdir.
    Sqlite,
    /// A fresh PostgreSQL database on `KONSULT_TEST_POSTGRES_URL`.
    Postgres,
}

/// Runs an `async fn(Db)` scenario as two tests, `sqlite` and `postgres`
/// (the latter skipped when `KONSULT_TEST_POSTGRES_URL` is unset).
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $scenario:path) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                $scenario($crate::common::Db::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                if std::env::var("KONSULT_TEST_POSTGRES_URL").is_err() {
                    eprintln!("KONSULT_TEST_POSTGRES_URL is not set: skipping");
                    return;
                }
                $scenario($crate::common::Db::Postgres).await
            }
        }
    };
}

/// A PostgreSQL database made for one test, dropped when the test's app is.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

/// A fresh, empty PostgreSQL database on the test server, and its URL
/// (for several nodes sharing one database); dropped with the guard.
pub async fn fresh_postgres() -> (PgDatabase, String) {
    use sqlx::Connection;
    let url = std::env::var("KONSULT_TEST_POSTGRES_URL").expect("KONSULT_TEST_POSTGRES_URL");
    let name = format!("konsult_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    conn.close().await.ok();
    let db_url = match url.rfind('/') {
        Some(i) if !url[..i].ends_with('/') => format!("{}/{name}", &url[..i]),
        _ => format!("{}/{name}", url.trim_end_matches('/')),
    };
    (
        PgDatabase {
            admin_url: url,
            name,
        },
        db_url,
    )
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The application, running on port 0.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The application state (store, clock, signaling).
    pub state: AppState,
    /// The data directory (removed on drop).
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// The test's PostgreSQL database, dropped with the app.
    pg: Option<PgDatabase>,
}

impl TestApp {
    /// Settings for a test app in `dir`: port 0 everywhere, the embedded
    /// relay on 127.0.0.1:0 allowing loopback peers.
    pub fn settings(dir: &std::path::Path) -> Settings {
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        };
        settings.turn.listen = "127.0.0.1:0".parse().unwrap();
        settings.turn.allow_loopback_peers = true;
        // Calls in tests are seconds long: two seconds of media each way
        // make the evidence (the default is RFC 7675's 30 s).
        settings.signaling.min_two_way_seconds = 2;
        settings.signaling.min_two_way_packets = 20;
        settings
    }

    /// Starts the app on `db` with the manual clock at [`t0`].
    pub async fn spawn(db: Db) -> Self {
        Self::spawn_at(db, t0()).await
    }

    /// Starts the app on `db` with the manual clock at `now`.
    pub async fn spawn_at(db: Db, now: DateTime<Utc>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Self::settings(dir.path());
        let mut pg = None;
        if db == Db::Postgres {
            let (database, url) = fresh_postgres().await;
            settings.database_url = Some(url);
            pg = Some(database);
        }
        let mut app = Self::spawn_with(settings, dir, now).await;
        app.pg = pg;
        app
    }

    /// Starts the app with the given settings (in `dir`).
    pub async fn spawn_with(
        settings: Settings,
        dir: tempfile::TempDir,
        now: DateTime<Utc>,
    ) -> Self {
        let clock = Clock::Manual(Arc::new(Mutex::new(now)));
        let app = Application::build_with_clock(settings, clock)
            .await
            .unwrap();
        let addr = app.local_addr();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            addr,
            state,
            dir,
            shutdown: Some(tx),
            server: Some(server),
            pg: None,
        }
    }

    /// The manual clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.clock.now()
    }

    /// Moves the manual clock.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.state.clock.set(t);
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), server).await;
        }
    }

    /// Shuts the server down gracefully and starts it again on the same data
    /// directory, database and clock, as a restart of the process would (on
    /// a new port: log in again).
    pub async fn restart(mut self) -> Self {
        let now = self.now();
        let settings = (*self.state.settings).clone();
        self.shut_down().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let pg = self.pg.take();
        let mut app = Self::spawn_with(settings, dir, now).await;
        app.pg = pg;
        app
    }

    /// Creates a clinic (specialer 51 and 62) with an admin account, and
    /// returns a client logged in as that admin.
    pub async fn setup_clinic(&self, name: &str, ydernummer: &str, email: &str) -> Client {
        let hash = konsult_server::auth::hash_password(ADMIN_PASSWORD).unwrap();
        self.state
            .store
            .create_clinic(
                NewClinic {
                    name: name.to_owned(),
                    ydernummer: ydernummer.to_owned(),
                    specialer: vec![Speciale::Almen, Speciale::Vederlagsfri],
                },
                NewTherapist {
                    name: format!("Admin {name}"),
                    email: email.to_owned(),
                    password_hash: hash,
                    role: Role::Admin,
                },
                self.now(),
            )
            .await
            .unwrap();
        let client = Client::new(&self.base);
        client.login(email, ADMIN_PASSWORD).await;
        client
    }
}

/// An HTTP client with a cookie store and the session's CSRF token.
pub struct Client {
    /// The reqwest client (keeps cookies).
    pub http: reqwest::Client,
    /// The server's base URL.
    pub base: String,
    /// The CSRF token from the last login.
    pub csrf: Mutex<Option<String>>,
}

impl Client {
    /// A client without a session.
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap(),
            base: base.to_owned(),
            csrf: Mutex::new(None),
        }
    }

    /// The CSRF token of the logged-in session (empty when logged out).
    pub fn csrf_token(&self) -> String {
        self.csrf.lock().unwrap().clone().unwrap_or_default()
    }

    /// Logs in (asserting success) and keeps the CSRF token.
    pub async fn login(&self, email: &str, password: &str) {
        let (status, me) = self
            .post("/api/login", json!({"email": email, "password": password}))
            .await;
        assert_eq!(status, StatusCode::OK, "login failed: {me}");
        *self.csrf.lock().unwrap() = me["csrf_token"].as_str().map(str::to_owned);
    }

    /// Any request; the body is JSON when it parses, else a JSON string.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(csrf) = self.csrf.lock().unwrap().clone() {
            req = req.header("x-csrf-token", csrf);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// GET, asserting 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// POST, asserting the status.
    pub async fn post_ok(&self, path: &str, body: Value, expected: StatusCode) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, expected, "POST {path}: {answer}");
        answer
    }
}

/// A patient with an in-clinic visit, a course (speciale 51) and a
/// standing assessment: eligible for video.
#[derive(Debug, Clone)]
pub struct EligiblePatient {
    /// Patient id.
    pub patient_id: String,
    /// Course id.
    pub course_id: String,
    /// Assessment id.
    pub assessment_id: String,
}

/// Creates an eligible patient through the API.
pub async fn eligible_patient(app: &TestApp, client: &Client, name: &str) -> EligiblePatient {
    let patient = client
        .post_ok(
            "/api/patients",
            json!({"name": name, "phone": "20304050"}),
            StatusCode::CREATED,
        )
        .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    client
        .post_ok(
            &format!("/api/patients/{pid}/visits"),
            json!({"at": app.now() - Duration::days(2)}),
            StatusCode::CREATED,
        )
        .await;
    let course = client
        .post_ok(
            &format!("/api/patients/{pid}/courses"),
            json!({"speciale": 51, "referral_date": "2026-11-01"}),
            StatusCode::CREATED,
        )
        .await;
    let cid = course["id"].as_str().unwrap().to_owned();
    let assessment = client
        .post_ok(
            &format!("/api/courses/{cid}/assessments"),
            json!({"cognitively_able": true, "technically_able": true, "clinically_relevant": true, "patient_safe": true, "patient_prefers_video": true}),
            StatusCode::CREATED,
        )
        .await;
    EligiblePatient {
        patient_id: pid,
        course_id: cid,
        assessment_id: assessment["id"].as_str().unwrap().to_owned(),
    }
}

/// A patient with a CPR number, seen in the clinic ten days ago, with a course of `speciale` and
/// a standing assessment.
pub async fn patient_with(
    app: &TestApp,
    client: &Client,
    name: &str,
    cpr: Option<&str>,
    speciale: u16,
) -> EligiblePatient {
    let mut body = json!({"name": name, "phone": "20304050"});
    if let Some(cpr) = cpr {
        body["cpr"] = json!(cpr);
    }
    let patient = client
        .post_ok("/api/patients", body, StatusCode::CREATED)
        .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    client
        .post_ok(
            &format!("/api/patients/{pid}/visits"),
            json!({"at": app.now() - Duration::days(10)}),
            StatusCode::CREATED,
        )
        .await;
    let mut course = json!({"speciale": speciale, "referral_date": (app.now() - Duration::days(20)).date_naive()});
    if speciale == 62 {
        course["diagnosis_group"] = json!("erhvervet_neurologisk_lidelse");
    }
    let course = client
        .post_ok(
            &format!("/api/patients/{pid}/courses"),
            course,
            StatusCode::CREATED,
        )
        .await;
    let cid = course["id"].as_str().unwrap().to_owned();
    let assessment = client
        .post_ok(
            &format!("/api/courses/{cid}/assessments"),
            json!({"cognitively_able": true, "technically_able": true, "clinically_relevant": true, "patient_safe": true, "patient_prefers_video": true}),
            StatusCode::CREATED,
        )
        .await;
    EligiblePatient {
        patient_id: pid,
        course_id: cid,
        assessment_id: assessment["id"].as_str().unwrap().to_owned(),
    }
}

/// Schedules a 30-minute consultation for `p` at `start`.
pub async fn schedule(
    client: &Client,
    p: &EligiblePatient,
    start: DateTime<Utc>,
) -> (StatusCode, Value) {
    client
        .post(
            "/api/consultations",
            json!({"patient_id": p.patient_id, "course_id": p.course_id, "start": start, "length_minutes": 30}),
        )
        .await
}

/// A journal note for `/complete`.
pub fn journal() -> Value {
    json!({"journal": {
        "status_since_last": "Øvelserne udført dagligt.",
        "evaluation": "Bedre bevægelighed i lænden.",
        "exercises_and_instruction": "Bækkenvip, 3 x 10.",
        "goal_reached_discharge": false
    }})
}

/// Records a call's events in the store as signaling would: the patient
/// waits, is admitted at `start`, media flows both ways (if `two_way`), the
/// call ends.
pub async fn simulate_call(
    app: &TestApp,
    clinic: &str,
    consultation: &str,
    start: DateTime<Utc>,
    two_way: bool,
) {
    let clinic = ClinicId::from_uuid(clinic.parse().unwrap());
    let id = ConsultationId::from_uuid(consultation.parse().unwrap());
    let store = &app.state.store;
    let mut events = vec![
        (CallEvent::PatientWaiting, start - Duration::minutes(2)),
        (CallEvent::Admitted, start),
    ];
    if two_way {
        events.push((
            CallEvent::TwoWayEstablished {
                evidence: konsult_domain::Evidence::RelayObserved,
            },
            start + Duration::seconds(35),
        ));
    }
    events.push((
        CallEvent::Ended {
            reason: konsult_domain::EndReason::TherapistEnded,
        },
        start + Duration::minutes(25),
    ));
    for (event, at) in events {
        store
            .record_call_event(clinic, id, event, at)
            .await
            .unwrap();
    }
}
