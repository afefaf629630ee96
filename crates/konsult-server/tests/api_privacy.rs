//! Personal data is sealed at rest (the database holds none of it in clear)
//! and the logs carry ids only, never names, CPR numbers, contact data or
//! journal text. The audit chain detects tampering.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

const NAME: &str = "Frederikke Hemmeligsen";
const CPR: &str = "241160-4321";
const PHONE: &str = "+45 61 72 83 94";
const EMAIL: &str = "frederikke@hemmelig.dk";
const JOURNAL: &str = "Knæet er hævet efter gåturen";
const LOCATION: &str = "Sommerhuset i Hornbæk";

/// A full scenario that writes every kind of personal data.
async fn write_personal_data(app: &TestApp) -> (Client, String) {
    let client = app
        .setup_clinic("Fysio Privat", "123456", "chef@privat.dk")
        .await;
    let clinic = client.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patient = client
        .post_ok(
            "/api/patients",
            json!({"name": NAME, "cpr": CPR, "phone": PHONE, "email": EMAIL}),
            StatusCode::CREATED,
        )
        .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    client
        .post_ok(
            &format!("/api/patients/{pid}/visits"),
            json!({"at": app.now() - Duration::days(1)}),
            StatusCode::CREATED,
        )
        .await;
    let course = client
        .post_ok(&format!("/api/patients/{pid}/courses"), json!({"speciale": 62, "diagnosis_group": "erhvervet_neurologisk_lidelse", "structured": "parkinson", "referral_date": "2026-11-01"}), StatusCode::CREATED)
        .await;
    let cid = course["id"].as_str().unwrap().to_owned();
    client
        .post_ok(&format!("/api/courses/{cid}/assessments"), json!({"cognitively_able": true, "technically_able": true, "clinically_relevant": true, "patient_safe": true, "patient_prefers_video": true}), StatusCode::CREATED)
        .await;
    let start = app.now() + Duration::hours(1);
    let scheduled = client
        .post_ok(
            "/api/consultations",
            json!({"patient_id": pid, "course_id": cid, "start": start, "length_minutes": 30}),
            StatusCode::CREATED,
        )
        .await;
    let id = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    client
        .post_ok(
            &format!("/api/consultations/{id}/safety"),
            json!({"patient_location": LOCATION, "callback_phone": PHONE}),
            StatusCode::NO_CONTENT,
        )
        .await;
    simulate_call(app, &clinic, &id, start, true).await;
    let mut note = journal();
    note["journal"]["evaluation"] = json!(JOURNAL);
    let done = client
        .post_ok(
            &format!("/api/consultations/{id}/complete"),
            note,
            StatusCode::OK,
        )
        .await;
    assert_eq!(done["line"]["fee"]["text"], "332,40 kr", "sp. 62");
    assert_eq!(done["line"]["patient_share"]["ore"], 0);
    // Reads, too.
    client.get_ok(&format!("/api/patients/{pid}")).await;
    client
        .get_ok(&format!("/api/consultations/{id}/journal"))
        .await;
    (client, clinic)
}

fn secrets() -> Vec<&'static str> {
    vec![
        NAME,
        "Frederikke",
        "Hemmeligsen",
        CPR,
        "2411604321",
        PHONE,
        "61 72 83 94",
        EMAIL,
        JOURNAL,
        "hævet",
        LOCATION,
        "Hornbæk",
        "chef@privat.dk",
    ]
}

#[tokio::test]
async fn sqlite_file_holds_no_personal_data_in_clear() {
    let app = TestApp::spawn(Db::Sqlite).await;
    write_personal_data(&app).await;
    // Read the database file and its write-ahead log while the server runs.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("konsult.db")
        {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    app.stop().await;
    assert!(bytes.len() > 10_000, "read the database files");
    for secret in secrets() {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} is in the database file in clear"
        );
    }
    // The control: ids and pseudonymous data are there.
    assert!(
        bytes.windows(6).any(|w| w == b"123456"),
        "ydernummer is stored in clear"
    );
}

#[tokio::test]
async fn postgres_tables_hold_no_personal_data_in_clear() {
    if std::env::var("KONSULT_TEST_POSTGRES_URL").is_err() {
        eprintln!("KONSULT_TEST_POSTGRES_URL not set: skipping");
        return;
    }
    use sqlx::{Connection, Row};
    let app = TestApp::spawn(Db::Postgres).await;
    write_personal_data(&app).await;
    let mut conn = sqlx::PgConnection::connect(&app.state.settings.database_url())
        .await
        .unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut dump = String::new();
    for t in &tables {
        for row in sqlx::query(&format!("SELECT row_to_json(x)::text AS j FROM \"{t}\" x"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
        {
            dump.push_str(&row.get::<String, _>("j"));
        }
    }
    assert!(dump.contains("123456"));
    for secret in secrets() {
        // bytea is rendered as hex: also check the hex form.
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !dump.contains(secret) && !dump.contains(&hex),
            "{secret:?} is stored in clear"
        );
    }
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn audit_chain_detects_tampering() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let (client, _) = write_personal_data(&app).await;
    let audit = client.get_ok("/api/audit?limit=1000").await;
    assert_eq!(audit["chain"]["status"], "intact");
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "patient.read"));
    assert!(
        entries
            .iter()
            .all(|e| !e.to_string().contains("Frederikke")),
        "the audit log holds ids only"
    );
    // Someone with file access rewrites history.
    {
        use sqlx::Connection;
        let path = app.dir.path().join("konsult.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET action = 'patient.nothing' WHERE seq = 5")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let audit = client.get_ok("/api/audit?limit=1000").await;
    assert_eq!(audit["chain"]["status"], "broken");
    assert_eq!(audit["chain"]["at_seq"], 5);
    app.stop().await;
}

#[tokio::test]
async fn a_patient_can_get_all_their_data() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let (client, _) = write_personal_data(&app).await;
    let pid = client.get_ok("/api/patients").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let export = client.get_ok(&format!("/api/patients/{pid}/export")).await;
    assert_eq!(export["patient"]["name"], NAME);
    assert_eq!(export["patient"]["cpr"], CPR);
    assert_eq!(export["in_clinic_visits"].as_array().unwrap().len(), 1);
    assert_eq!(
        export["courses"][0]["assessments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(export["consultations"][0]["journal"]["evaluation"], JOURNAL);
    assert_eq!(
        export["consultations"][0]["safety"]["patient_location"],
        LOCATION
    );
    assert_eq!(export["billing_lines"][0]["fee_ore"], 33240);
    assert!(export["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "journal.read"));
    let audit = client.get_ok("/api/audit?limit=1000").await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "patient.export"));
    app.stop().await;
}
