//! The patient's rights in the product: who has accessed the record, in
//! words (sundhedsloven § 42 a); rectification with its history kept
//! (GDPR art. 16); and the export of everything (art. 15 and 20) in its
//! documented, versioned schema.

use crate::common;

use chrono::Duration;
use common::python::{check_openapi, sample};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A therapist account of the admin's clinic, logged in.
async fn therapist(app: &TestApp, admin: &Client, name: &str, email: &str) -> Client {
    admin
        .post_ok(
            "/api/therapists",
            json!({"name": name, "email": email, "password": "another horse battery", "role": "therapist"}),
            StatusCode::CREATED,
        )
        .await;
    let client = Client::new(&app.base);
    client.login(email, "another horse battery").await;
    client
}

/// A completed consultation of `p` (journal written, one billing line).
async fn completed_consultation(
    app: &TestApp,
    by: &Client,
    clinic: &str,
    p: &EligiblePatient,
) -> (String, String) {
    let start = app.now() + Duration::minutes(5);
    let (status, body) = schedule(by, p, start).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["consultation"]["id"].as_str().unwrap().to_owned();
    let token = body["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    simulate_call(app, clinic, &id, start, true).await;
    by.post_ok(
        &format!("/api/consultations/{id}/complete"),
        journal(),
        StatusCode::OK,
    )
    .await;
    (id, token)
}

async fn access_log_names_staff_in_words(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app
        .setup_clinic("Fysio Indsigt", "123456", "chef@indsigt.dk")
        .await;
    let clinic = admin.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tove = therapist(&app, &admin, "Tove Terapeut", "tove@indsigt.dk").await;
    let p = eligible_patient(&app, &tove, "Paula Patient").await;
    let other = eligible_patient(&app, &tove, "Olga Anden").await;
    // The patient opens the join link before the call.
    let start = app.now() + Duration::minutes(5);
    let (_, scheduled) = schedule(&tove, &p, start).await;
    let consultation = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    let token = scheduled["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        tove.get_ok(&format!("/api/join/{token}")).await["status"],
        "valid"
    );
    simulate_call(&app, &clinic, &consultation, start, true).await;
    tove.post_ok(
        &format!("/api/consultations/{consultation}/complete"),
        journal(),
        StatusCode::OK,
    )
    .await;
    admin
        .get_ok(&format!("/api/consultations/{consultation}/journal"))
        .await;
    admin
        .get_ok(&format!("/api/patients/{}", other.patient_id))
        .await;

    let log = tove
        .get_ok(&format!("/api/patients/{}/access-log", p.patient_id))
        .await;
    assert_eq!(log["patient_id"], p.patient_id.as_str());
    assert!(log["patient_ref"].as_str().unwrap().starts_with("P-"));
    let entries = log["entries"].as_array().unwrap();
    let find = |action: &str, name: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["who"]["name"] == name)
            .unwrap_or_else(|| panic!("no {action} by {name} in {log}"))
    };
    // Staff by name and role, what in Danish and English.
    let created = find("patient.create", "Tove Terapeut");
    assert_eq!(created["who"]["role"], "therapist");
    assert_eq!(created["who"]["role_text"]["da"], "Fysioterapeut");
    assert_eq!(created["kind"], "write");
    let read = find("journal.read", "Admin Fysio Indsigt");
    assert_eq!(read["who"]["role"], "admin");
    assert_eq!(read["what"]["da"], "Læste et journalnotat");
    assert_eq!(read["what"]["en"], "Read a journal note");
    assert_eq!(read["kind"], "read");
    assert_eq!(read["subject"], consultation.as_str());
    // The patient's own look through the link, in words, without a name.
    let own = entries
        .iter()
        .find(|e| e["who"]["role"] == "patient")
        .expect("the patient's own access through the join link");
    assert!(own["who"]["name"].is_null());
    assert_eq!(
        own["who"]["role_text"]["da"],
        "Patienten selv (via mødelinket)"
    );
    // Every entry has words and a person or role; none is about the other patient.
    for e in entries {
        assert_ne!(e["what"]["da"], e["action"], "an action without words: {e}");
        assert!(
            e["who"]["name"].is_string() || e["who"]["role"] != "therapist",
            "{e}"
        );
        assert_ne!(e["subject"], other.patient_id.as_str());
    }
    assert!(
        !entries
            .iter()
            .any(|e| e["action"] == "patient.read" && e["who"]["name"] == "Admin Fysio Indsigt"),
        "the admin read the other patient, not this one"
    );

    // Reading the log is itself in the log, next time.
    let again = admin
        .get_ok(&format!("/api/patients/{}/access-log", p.patient_id))
        .await;
    assert!(again["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "patient.access_log" && e["who"]["name"] == "Tove Terapeut"));

    // The file to hand over: Danish by default, English on request, names not ids.
    let res = admin
        .http
        .get(format!(
            "{}/api/patients/{}/access-log.csv",
            app.base, p.patient_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("konsult-adgangslog-P-"));
    let csv = res.text().await.unwrap();
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    assert_eq!(
        lines.next().unwrap(),
        "tidspunkt (dansk tid);hvem;rolle;handling;hvad"
    );
    assert!(
        csv.contains(";Tove Terapeut;Fysioterapeut;ændring;Oprettede patienten"),
        "{csv}"
    );
    assert!(csv.contains("Patienten selv (via mødelinket)"), "{csv}");
    assert!(
        !csv.contains(
            &tove.get_ok("/api/me").await["therapist_id"]
                .as_str()
                .unwrap()
                .to_owned()
        ),
        "names, not ids"
    );
    let en = admin
        .get(&format!(
            "/api/patients/{}/access-log.csv?lang=en",
            p.patient_id
        ))
        .await
        .1;
    assert!(en
        .as_str()
        .unwrap()
        .contains("time (Danish time);who;role;action;what"));
    assert!(en
        .as_str()
        .unwrap()
        .contains(";Tove Terapeut;Physiotherapist;change;Created the patient record"));
    assert_eq!(
        admin
            .get(&format!(
                "/api/patients/{}/access-log.csv?lang=fr",
                p.patient_id
            ))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    app.stop().await;
}

on_both_databases!(access_log, super::access_log_names_staff_in_words);

async fn rectification_keeps_history_in_the_audit_log(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio Ret", "123456", "chef@ret.dk").await;
    let created = admin
        .post_ok(
            "/api/patients",
            json!({"name": "Jens Jensne", "phone": "11111111", "cpr": "010101-1234"}),
            StatusCode::CREATED,
        )
        .await;
    let pid = created["id"].as_str().unwrap().to_owned();
    // The name was misspelt and the phone is wrong.
    let (status, fixed) = admin
        .call(
            Method::PUT,
            &format!("/api/patients/{pid}"),
            Some(json!({"name": "Jens Jensen", "phone": "22222222", "cpr": "010101-1234"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fixed}");
    assert_eq!(fixed["name"], "Jens Jensen");
    assert_eq!(fixed["phone"], "22222222");
    // The same data again changes nothing and adds no revision.
    admin
        .call(
            Method::PUT,
            &format!("/api/patients/{pid}"),
            Some(json!({"name": "Jens Jensen", "phone": "22222222", "cpr": "010101-1234"})),
        )
        .await;
    let history = admin.get_ok(&format!("/api/patients/{pid}/history")).await;
    let revisions = history.as_array().unwrap();
    assert_eq!(revisions.len(), 1, "{history}");
    assert_eq!(revisions[0]["fields"], json!(["name", "phone"]));
    assert_eq!(revisions[0]["previous"]["name"], "Jens Jensne");
    assert_eq!(revisions[0]["previous"]["phone"], "11111111");
    assert_eq!(revisions[0]["previous"]["cpr"], "010101-1234");
    assert_eq!(revisions[0]["by"]["name"], "Admin Fysio Ret");

    // The audit log holds the rectification: who, when, which fields — and
    // no personal data in clear.
    let audit = admin.get_ok("/api/audit?limit=1000").await;
    assert_eq!(audit["chain"]["status"], "intact");
    let entries = audit["entries"].as_array().unwrap();
    let rectify: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "patient.rectify")
        .collect();
    assert_eq!(rectify.len(), 1);
    let subject = rectify[0]["subject"].as_str().unwrap();
    assert!(
        subject.contains(revisions[0]["id"].as_str().unwrap())
            && subject.ends_with("fields:name,phone"),
        "{subject}"
    );
    assert!(!audit.to_string().contains("Jensne") && !audit.to_string().contains("11111111"));
    let log = admin
        .get_ok(&format!("/api/patients/{pid}/access-log"))
        .await;
    assert!(log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["what"]["da"] == "Rettede patientens personoplysninger"));

    // Erasure takes the replaced values with it; the log stays.
    assert_eq!(
        admin
            .call(Method::DELETE, &format!("/api/patients/{pid}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert!(admin
        .get_ok(&format!("/api/patients/{pid}/history"))
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        admin
            .call(
                Method::PUT,
                &format!("/api/patients/{pid}"),
                Some(json!({"name": "X"}))
            )
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(admin
        .get_ok(&format!("/api/patients/{pid}/access-log"))
        .await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "patient.erase"));
    app.stop().await;
}

on_both_databases!(
    rectification,
    super::rectification_keeps_history_in_the_audit_log
);

async fn patient_export_matches_its_schema(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app
        .setup_clinic("Fysio Eksport", "123456", "chef@eksport.dk")
        .await;
    let clinic = admin.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = eligible_patient(&app, &admin, "Erik Eksport").await;
    let (consultation, token) = completed_consultation(&app, &admin, &clinic, &p).await;
    // A correction line, a rectification and the patient's privacy notice.
    let line = admin
        .get_ok("/api/billing?from=2026-11-25&to=2026-11-25")
        .await["lines"][0]["line_id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .post_ok(
            &format!("/api/billing/{line}/correction"),
            json!({"note": "forkert dato"}),
            StatusCode::CREATED,
        )
        .await;
    admin
        .call(
            Method::PUT,
            &format!("/api/patients/{}", p.patient_id),
            Some(json!({"name": "Erik Eksport", "phone": "99999999"})),
        )
        .await;
    admin.get_ok(&format!("/api/join/{token}/privacy")).await;

    let export = admin
        .get_ok(&format!("/api/patients/{}/export", p.patient_id))
        .await;
    assert_eq!(export["format"], "konsult.patient-export");
    assert_eq!(export["version"], 1);
    assert_eq!(export["controller"]["name"], "Fysio Eksport");
    assert_eq!(export["patient"]["phone"], "99999999");
    assert_eq!(export["rectifications"][0]["previous"]["phone"], "20304050");
    // The call events the database holds, in order, without addresses.
    let events: Vec<&str> = export["consultations"][0]["call_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(events, common::signal::WHOLE_CALL);
    assert_eq!(
        export["consultations"][0]["consultation"]["id"],
        consultation.as_str()
    );
    // Billing lines with the correction.
    let lines = export["billing_lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["fee_ore"], 31983);
    assert_eq!(lines[1]["fee_ore"], -31983);
    assert_eq!(lines[1]["correction_of"], line.as_str());
    // The audit entries and the access log in words, with staff named.
    assert!(export["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "billing.correct"));
    assert!(export["access_log"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |e| e["who"]["name"] == "Admin Fysio Eksport" && e["action"] == "consultation.complete"
        ));
    assert_eq!(export["staff"][0]["name"], "Admin Fysio Eksport");

    // Valid against the documented schema; and the check can fail.
    let schema = "docs/patient-export.schema.json";
    let mut tampered = export.clone();
    tampered["consultations"][0]["call_events"][0]["address"] = json!("192.0.2.1");
    tampered["version"] = json!(2);
    let doc = json!({"openapi": "3.1.0", "info": {"title": "none", "version": "0"}, "paths": {}});
    let (ok, output) = check_openapi(&doc, &[sample("export", schema, &export)]);
    assert!(ok, "the export does not match {schema}:\n{output}");
    let (ok, output) = check_openapi(&doc, &[sample("tampered", schema, &tampered)]);
    assert!(!ok, "a tampered export passed:\n{output}");
    assert!(
        output.contains("address") && output.contains("version"),
        "{output}"
    );
    app.stop().await;
}

on_both_databases!(export_schema, super::patient_export_matches_its_schema);
