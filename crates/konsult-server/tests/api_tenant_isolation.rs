//! Tenant isolation: for every endpoint of the OpenAPI document, a
//! therapist (and an admin) of clinic B can neither read nor change
//! anything of clinic A — the answer is 403 or 404, and A's data is the same
//! afterwards.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Everything clinic A can see, to compare before and after.
async fn snapshot(a: &Client, pid: &str, cid: &str, consultation: &str) -> Value {
    let mut s = json!({});
    for (key, path) in [
        ("clinic", "/api/clinic".to_owned()),
        ("fee_table", "/api/clinic/fee-table".to_owned()),
        ("therapists", "/api/therapists".to_owned()),
        ("patients", "/api/patients".to_owned()),
        ("patient", format!("/api/patients/{pid}")),
        ("visits", format!("/api/patients/{pid}/visits")),
        ("courses", format!("/api/patients/{pid}/courses")),
        ("assessments", format!("/api/courses/{cid}/assessments")),
        ("consultation", format!("/api/consultations/{consultation}")),
        (
            "journal",
            format!("/api/consultations/{consultation}/journal"),
        ),
        (
            "billing",
            "/api/billing?from=2026-11-01&to=2026-11-30".to_owned(),
        ),
    ] {
        s[key] = a.get_ok(&path).await;
    }
    s
}

fn body_for(path: &str, method: &str) -> Option<Value> {
    if method == "get" {
        return None;
    }
    Some(match path {
        "/api/patients" | "/api/patients/{id}" => json!({"name": "Indtrænger"}),
        "/api/patients/{id}/visits" => json!({"at": "2026-11-20T10:00:00Z"}),
        "/api/patients/{id}/courses" => json!({"speciale": 51, "referral_date": "2026-11-01"}),
        "/api/courses/{id}/assessments" => {
            json!({"cognitively_able": true, "technically_able": true, "clinically_relevant": true, "patient_safe": true, "patient_prefers_video": true})
        }
        "/api/consultations/{id}/complete" => journal(),
        "/api/consultations/{id}/safety" => {
            json!({"patient_location": "x", "callback_phone": "12345678"})
        }
        "/api/billing/{id}/correction" => json!({"note": "x"}),
        "/api/patients/{id}/merge" => json!({"into": uuid::Uuid::new_v4()}),
        "/api/therapists/{id}/password" => json!({"new_password": "en indtrængers kode"}),
        _ => json!({}),
    })
}

async fn isolation(db: Db) {
    let app = TestApp::spawn(db).await;
    let a = app.setup_clinic("Klinik A", "111111", "a@a.dk").await;
    let a_me = a.get_ok("/api/me").await;
    let a_clinic = a_me["clinic_id"].as_str().unwrap().to_owned();
    let a_admin = a_me["therapist_id"].as_str().unwrap().to_owned();
    let p = eligible_patient(&app, &a, "Anna A").await;
    let start = app.now() + Duration::hours(1);
    let (status, scheduled) = schedule(&a, &p, start).await;
    assert_eq!(status, StatusCode::CREATED);
    let consultation = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    simulate_call(&app, &a_clinic, &consultation, start, true).await;
    let done = a
        .post_ok(
            &format!("/api/consultations/{consultation}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    let line = done["line"]["id"].as_str().unwrap().to_owned();
    // A second, open consultation of A to try to change.
    let (_, open) = schedule(&a, &p, start + Duration::hours(4)).await;
    let open_consultation = open["consultation"]["id"].as_str().unwrap().to_owned();
    let before = snapshot(&a, &p.patient_id, &p.course_id, &consultation).await;
    let audit_before = a.get_ok("/api/audit?limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .len();

    // Clinic B, with its own admin.
    let b = app.setup_clinic("Klinik B", "222222", "b@b.dk").await;

    // B's session works for B's own data (so refusals below are about
    // tenancy, not about a broken session or CSRF token).
    b.post_ok(
        "/api/patients",
        json!({"name": "Bent B"}),
        StatusCode::CREATED,
    )
    .await;

    let doc: Value = reqwest::get(format!("{}/api/openapi.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let id = if path.starts_with("/api/patients/") {
                &p.patient_id
            } else if path.starts_with("/api/courses/") {
                &p.course_id
            } else if path.starts_with("/api/assessments/") {
                &p.assessment_id
            } else if path.starts_with("/api/billing/") {
                &line
            } else if path.starts_with("/api/therapists/") {
                // A's admin: B's admin may not reset, deactivate or
                // reactivate an account of A.
                &a_admin
            } else if path.starts_with("/api/consultations/") && path.ends_with("/journal") {
                &consultation
            } else {
                &open_consultation
            };
            let concrete = path.replace("{id}", id);
            if !path.contains("{id}") {
                continue;
            }
            let m: Method = method.to_uppercase().parse().unwrap();
            let (status, body) = b.call(m, &concrete, body_for(path, method)).await;
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
                "{method} {path} as clinic B answered {status}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} id endpoints checked");

    // Collection endpoints show B only its own data.
    let b_patients = b.get_ok("/api/patients").await;
    assert_eq!(b_patients.as_array().unwrap().len(), 1, "{b_patients}");
    assert_eq!(b_patients[0]["name"], "Bent B");
    assert!(b
        .get_ok("/api/consultations?day=2026-11-25")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        b.get_ok("/api/billing?from=2026-11-01&to=2026-11-30").await["lines"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let b_audit = b.get_ok("/api/audit?limit=1000").await;
    assert!(!b_audit.to_string().contains(&p.patient_id));
    // Scheduling for A's patient with B's session.
    let (status, _) = b
        .post("/api/consultations", json!({"patient_id": p.patient_id, "course_id": p.course_id, "start": start + Duration::hours(6), "length_minutes": 30}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(b.get_ok("/api/clinic").await["name"], "Klinik B");

    // Nothing of A changed, and A's audit log got no entries from B.
    let after = snapshot(&a, &p.patient_id, &p.course_id, &consultation).await;
    assert_eq!(before, after);
    let audit_after = a.get_ok("/api/audit?limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .to_vec();
    let a_admin = a.get_ok("/api/me").await["therapist_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let from_b: Vec<&Value> = audit_after[audit_before..]
        .iter()
        .filter(|e| !e["actor"].as_str().unwrap().contains(&a_admin))
        .collect();
    assert!(from_b.is_empty(), "{from_b:?}");
    app.stop().await;
}

on_both_databases!(clinic_b_cannot_touch_clinic_a, super::isolation);
