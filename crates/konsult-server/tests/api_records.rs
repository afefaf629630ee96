//! Information and records: the privacy notice behind every join link
//! (GDPR art. 13), privacy by default (art. 25), the records of processing
//! generated from the real settings (art. 30), and the export of access and
//! login events for a breach investigation (art. 33).

use crate::common;

use chrono::Duration;
use common::*;
use konsult_server::config::SubProcessor;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn notice_text(notice: &Value, lang: &str) -> String {
    notice[lang]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            std::iter::once(s["heading"].as_str().unwrap().to_owned()).chain(
                s["paragraphs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_owned()),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn privacy_notice_follows_the_clinic(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app
        .setup_clinic("Fysioklinikken Aarhus", "123456", "chef@aarhus.dk")
        .await;
    let clinic = admin.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = eligible_patient(&app, &admin, "Nina Notits").await;
    let start = app.now() + Duration::hours(2);
    let (_, scheduled) = schedule(&admin, &p, start).await;
    let id = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    let token = scheduled["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let patient = Client::new(&app.base);

    // Before the link opens: the default, filled in from the clinic.
    let notice = patient.get_ok(&format!("/api/join/{token}/privacy")).await;
    assert_eq!(notice["source"], "default");
    assert_eq!(notice["controller"], "Fysioklinikken Aarhus");
    let da = notice_text(&notice, "da");
    for needle in [
        "Fysioklinikken Aarhus er dataansvarlig",
        "Hvorfor",
        "Lyd og video bliver ikke optaget eller gemt",
        "Din IP-adresse",
        "Journalnotatet gemmes i 5 år",
        "365 dage",
        "Datatilsynet",
        "Kontakt",
    ] {
        assert!(da.contains(needle), "{needle:?} missing:\n{da}");
    }
    assert!(notice_text(&notice, "en").contains("Sound and video are not recorded"));
    assert_eq!(
        notice["da"]["summary"],
        "Samtalen bliver ikke optaget. Klinikken er ansvarlig for dine oplysninger."
    );

    // An unknown link still gets the default, without a controller.
    let unknown = patient.get_ok("/api/join/no-such-link/privacy").await;
    assert!(unknown["controller"].is_null());
    assert!(notice_text(&unknown, "da").contains("Den klinik, der har sendt dig linket"));

    // Only an admin sets the clinic's contact and text; bad input changes nothing.
    let tina_email = "tina@aarhus.dk";
    admin
        .post_ok("/api/therapists", json!({"name": "Tina", "email": tina_email, "password": "another horse battery", "role": "therapist"}), StatusCode::CREATED)
        .await;
    let tina = Client::new(&app.base);
    tina.login(tina_email, "another horse battery").await;
    let body = json!({"contact": "Vestergade 1, 8000 Aarhus C, 86 12 34 56", "text_da": "Klinikken passer på dine oplysninger.\n\nSpørg os gerne."});
    assert_eq!(
        tina.call(
            Method::PUT,
            "/api/clinic/privacy-notice",
            Some(body.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin
            .call(
                Method::PUT,
                "/api/clinic/privacy-notice",
                Some(json!({"contact": " "}))
            )
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin
            .call(
                Method::PUT,
                "/api/clinic/privacy-notice",
                Some(json!({"contact": "x", "extra": 1}))
            )
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (status, set) = admin
        .call(Method::PUT, "/api/clinic/privacy-notice", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        set["settings"]["contact"],
        "Vestergade 1, 8000 Aarhus C, 86 12 34 56"
    );

    // After the consultation the link no longer works, but its notice does.
    simulate_call(&app, &clinic, &id, start, true).await;
    admin
        .post_ok(
            &format!("/api/consultations/{id}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        patient.get_ok(&format!("/api/join/{token}")).await["status"],
        "ended"
    );
    let notice = patient.get_ok(&format!("/api/join/{token}/privacy")).await;
    assert_eq!(notice["source"], "clinic");
    assert_eq!(
        notice["da"]["sections"][0]["paragraphs"],
        json!(["Klinikken passer på dine oplysninger.", "Spørg os gerne."])
    );
    assert!(notice_text(&notice, "da").contains("86 12 34 56"));
    // English has no own text: the default, with the clinic's contact.
    assert!(notice_text(&notice, "en").contains("86 12 34 56"));
    assert!(notice_text(&notice, "en").contains("is the data controller"));

    // Back to the default.
    assert_eq!(
        admin
            .call(Method::DELETE, "/api/clinic/privacy-notice", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        patient.get_ok(&format!("/api/join/{token}/privacy")).await["source"],
        "default"
    );
    app.stop().await;
}

on_both_databases!(privacy_notice, super::privacy_notice_follows_the_clinic);

#[tokio::test]
async fn privacy_by_default_settings() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let admin = app
        .setup_clinic("Fysio Standard", "123456", "chef@standard.dk")
        .await;
    let clinic = admin.get_ok("/api/clinic").await;
    // Relay-only (neither side learns the other's address) unless turned off.
    assert_eq!(clinic["relay_only_default"], true);
    // Retention at the legal periods, not longer.
    assert_eq!(
        clinic["retention"],
        json!({"journal_years": 5, "billing_years": 5, "event_days": 365})
    );
    let p = eligible_patient(&app, &admin, "Dorte Default").await;
    let (_, scheduled) = schedule(&admin, &p, app.now() + Duration::hours(1)).await;
    assert_eq!(scheduled["consultation"]["relay_only"], true);
    // Alerts on unusual access are on by default.
    assert_eq!(app.state.settings.alerts.unusual_access_patients, 20);
    // The join page loads nothing from a third party.
    let csp = reqwest::get(format!("{}/join/x", app.base))
        .await
        .unwrap()
        .headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    app.stop().await;
}

#[tokio::test]
async fn records_of_processing_follow_the_settings() {
    // An installation with an operator, an external relay and a
    // sub-processor outside the EU/EEA without a transfer basis.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.turn.external_urls = vec!["turn:turn.example.net:3478?transport=udp".into()];
    settings.operator.name = "Klinik-IT ApS".into();
    settings.operator.contact = "privacy@klinik-it.example".into();
    settings.operator.sub_processors = vec![
        SubProcessor {
            name: "Hosting A/S".into(),
            purpose: "servers".into(),
            countries: vec!["DK".into()],
            transfer_basis: None,
        },
        SubProcessor {
            name: "Backup Inc.".into(),
            purpose: "offsite backup".into(),
            countries: vec!["US".into()],
            transfer_basis: None,
        },
    ];
    settings.alerts.unusual_access_patients = 7;
    let app = TestApp::spawn_with(settings, dir, t0()).await;
    let admin = app
        .setup_clinic("Fysio Fortegnelse", "654321", "chef@fortegnelse.dk")
        .await;

    let ropa = admin.get_ok("/api/clinic/records-of-processing").await;
    assert_eq!(ropa["format"], "konsult.records-of-processing");
    assert_eq!(ropa["controller"]["name"], "Fysio Fortegnelse");
    assert_eq!(ropa["controller"]["ydernummer"], "654321");
    assert_eq!(ropa["processor"]["name"], "Klinik-IT ApS");
    assert_eq!(ropa["relay_only_default"], true);
    assert_eq!(
        ropa["retention"],
        json!({"journal_years": 5, "billing_years": 5, "event_days": 365})
    );
    let relays = ropa["relays"].as_array().unwrap();
    assert!(
        relays.iter().any(|r| r["operated_by"] == "embedded"
            && r["url"].as_str().unwrap().starts_with("turn:127.0.0.1:")),
        "{relays:?}"
    );
    assert!(relays.iter().any(|r| r["operated_by"] == "external"
        && r["url"] == "turn:turn.example.net:3478?transport=udp"));
    assert_eq!(ropa["sub_processors"].as_array().unwrap().len(), 2);
    assert_eq!(ropa["third_country_transfers"][0]["name"], "Backup Inc.");
    let gaps = ropa["gaps"].to_string();
    assert!(
        gaps.contains("Backup Inc.") && gaps.contains("transfer basis"),
        "{gaps}"
    );
    assert!(
        gaps.contains("privacy notice"),
        "no clinic contact yet: {gaps}"
    );
    let activities: Vec<&str> = ropa["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        activities,
        [
            "video_consultation",
            "journal",
            "billing",
            "access_and_security_log",
            "staff_accounts"
        ]
    );
    assert!(ropa["never_stored"].to_string().contains("no recording"));
    assert!(ropa["security_measures"]
        .to_string()
        .contains("more than 7 patients"));

    // It follows the clinic's settings as they change.
    let (status, _) = admin
        .call(Method::PUT, "/api/clinic", Some(json!({"relay_only_default": false, "retention": {"journal_years": 10, "billing_years": 5, "event_days": 90}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    admin
        .call(
            Method::PUT,
            "/api/clinic/privacy-notice",
            Some(json!({"contact": "kontakt@fortegnelse.dk"})),
        )
        .await;
    let ropa = admin.get_ok("/api/clinic/records-of-processing").await;
    assert_eq!(ropa["relay_only_default"], false);
    assert_eq!(ropa["retention"]["journal_years"], 10);
    assert!(ropa["activities"][1]["retention"]["en"]
        .as_str()
        .unwrap()
        .starts_with("10 years"));
    assert_eq!(ropa["controller"]["contact"], "kontakt@fortegnelse.dk");
    assert!(!ropa["gaps"].to_string().contains("privacy notice"));
    assert!(!ropa["security_measures"]
        .to_string()
        .contains("Relay-only by default"));

    // Admins only.
    admin
        .post_ok("/api/therapists", json!({"name": "T", "email": "t@fortegnelse.dk", "password": "another horse battery", "role": "therapist"}), StatusCode::CREATED)
        .await;
    let t = Client::new(&app.base);
    t.login("t@fortegnelse.dk", "another horse battery").await;
    assert_eq!(
        t.get("/api/clinic/records-of-processing").await.0,
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

async fn security_export_lists_access_and_logins(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app
        .setup_clinic("Fysio Brud", "123456", "chef@brud.dk")
        .await;
    let p = eligible_patient(&app, &admin, "Birthe Brud").await;
    admin
        .post_ok("/api/therapists", json!({"name": "Tom Terapeut", "email": "tom@brud.dk", "password": "another horse battery", "role": "therapist"}), StatusCode::CREATED)
        .await;
    let tom = Client::new(&app.base);
    // A wrong password, then a login, a read and a logout.
    let (status, _) = tom
        .post(
            "/api/login",
            json!({"email": "tom@brud.dk", "password": "wrong wrong wrong"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    tom.login("tom@brud.dk", "another horse battery").await;
    tom.get_ok(&format!("/api/patients/{}", p.patient_id)).await;
    tom.post_ok("/api/logout", json!({}), StatusCode::NO_CONTENT)
        .await;
    // An unknown e-mail is nobody's login event.
    Client::new(&app.base)
        .post(
            "/api/login",
            json!({"email": "ghost@brud.dk", "password": "whatever whatever"}),
        )
        .await;

    let export = admin
        .get_ok("/api/security/export?from=2026-11-25&to=2026-11-25")
        .await;
    let logins = export["logins"].as_array().unwrap();
    let tom_events: Vec<&str> = logins
        .iter()
        .filter(|l| l["who"]["name"] == "Tom Terapeut")
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(tom_events, ["failure", "success", "logout"], "{logins:?}");
    assert!(logins
        .iter()
        .any(|l| l["who"]["name"] == "Admin Fysio Brud" && l["outcome"] == "success"));
    assert_eq!(logins.len(), 4, "{logins:?}");
    let access = export["access"].as_array().unwrap();
    let read = access
        .iter()
        .find(|e| e["action"] == "patient.read" && e["who"]["name"] == "Tom Terapeut")
        .expect("Tom's read");
    assert_eq!(read["patient"], p.patient_id.as_str());
    assert!(read["patient_ref"].as_str().unwrap().starts_with("P-"));
    assert!(
        !export.to_string().contains("Birthe"),
        "patients by id and pseudonym only"
    );
    assert!(access.iter().any(|e| e["action"] == "therapist.create"));
    // Another period holds none of it.
    let before = admin
        .get_ok("/api/security/export?from=2026-11-01&to=2026-11-24")
        .await;
    assert!(
        before["access"].as_array().unwrap().is_empty()
            && before["logins"].as_array().unwrap().is_empty()
    );
    // Admins only, a sane period, and the export is itself audited.
    tom.login("tom@brud.dk", "another horse battery").await;
    assert_eq!(
        tom.get("/api/security/export?from=2026-11-25&to=2026-11-25")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin
            .get("/api/security/export?from=2026-11-25&to=2026-11-01")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin.get("/api/security/export?from=2026-11-25").await.0,
        StatusCode::BAD_REQUEST
    );
    let again = admin
        .get_ok("/api/security/export?from=2026-11-25&to=2026-11-25")
        .await;
    assert!(again["access"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "security.export" && e["who"]["role"] == "admin"));
    app.stop().await;
}

on_both_databases!(
    security_export,
    super::security_export_lists_access_and_logins
);
