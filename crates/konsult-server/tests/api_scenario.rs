//! A clinic's day through the API, on SQLite and on PostgreSQL: setup,
//! therapist, patient, course, in-clinic visit, assessment, scheduling
//! (refused before the visit, accepted after), completion, a second
//! consultation the same day (not billable, reason shown), export.

use crate::common;

use chrono::{Duration, TimeZone, Utc};
use common::*;
use reqwest::StatusCode;
use serde_json::json;

async fn a_clinic_day(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app
        .setup_clinic("Fysio Nord", "123456", "admin@fysionord.dk")
        .await;
    let me = admin.get_ok("/api/me").await;
    let clinic_id = me["clinic_id"].as_str().unwrap().to_owned();
    assert_eq!(me["role"], "admin");

    // The admin creates a therapist account, who logs in.
    admin
        .post_ok(
            "/api/therapists",
            json!({"name": "Tove Terapeut", "email": "tove@fysionord.dk", "password": "lange ord er gode", "role": "therapist"}),
            StatusCode::CREATED,
        )
        .await;
    let therapist = Client::new(&app.base);
    therapist
        .login("tove@fysionord.dk", "lange ord er gode")
        .await;
    // A therapist is no admin.
    let (status, _) = therapist.get("/api/therapists").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Patient and course, but no visit and no assessment yet.
    let patient = therapist
        .post_ok(
            "/api/patients",
            json!({"name": "Grethe Hansen", "cpr": "120345-1234", "phone": "20304050"}),
            StatusCode::CREATED,
        )
        .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    let course = therapist
        .post_ok(
            &format!("/api/patients/{pid}/courses"),
            json!({"speciale": 51, "referral_date": "2026-11-01"}),
            StatusCode::CREATED,
        )
        .await;
    let cid = course["id"].as_str().unwrap().to_owned();
    let start = app.now() + Duration::hours(1);
    let (status, problem) = therapist
        .post(
            "/api/consultations",
            json!({"patient_id": pid, "course_id": cid, "start": start, "length_minutes": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let codes: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["no_in_clinic_visit_before", "no_assessment"]);
    assert!(problem["errors"][0]["da"].as_str().unwrap().len() > 10);

    // After the visit and the assessment it is accepted.
    therapist
        .post_ok(
            &format!("/api/patients/{pid}/visits"),
            json!({"at": app.now() - Duration::days(2)}),
            StatusCode::CREATED,
        )
        .await;
    therapist
        .post_ok(
            &format!("/api/courses/{cid}/assessments"),
            json!({"cognitively_able": true, "technically_able": true, "clinically_relevant": true, "patient_safe": true, "patient_prefers_video": true}),
            StatusCode::CREATED,
        )
        .await;
    let scheduled = therapist
        .post_ok(
            "/api/consultations",
            json!({"patient_id": pid, "course_id": cid, "start": start, "length_minutes": 30}),
            StatusCode::CREATED,
        )
        .await;
    let consultation = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    let join_url = scheduled["join_url"].as_str().unwrap();
    let token = join_url.rsplit('/').next().unwrap();
    assert!(token.len() >= 22, "at least 128 bits");
    assert!(scheduled["invite_ics"]
        .as_str()
        .unwrap()
        .contains("BEGIN:VEVENT"));
    assert_eq!(
        scheduled["consultation"]["relay_only"], true,
        "clinic default"
    );

    // The link opens 15 minutes before the start.
    let patient_side = Client::new(&app.base);
    let info = patient_side.get_ok(&format!("/api/join/{token}")).await;
    assert_eq!(info["status"], "not_yet_open");
    assert_eq!(info["therapist_name"], "Tove Terapeut");
    app.set_now(start - Duration::minutes(10));
    let info = patient_side.get_ok(&format!("/api/join/{token}")).await;
    assert_eq!(info["status"], "valid");
    assert_eq!(info["clinic_name"], "Fysio Nord");
    // The connection check gets relay-only TURN credentials while the link works.
    let ice = patient_side
        .get_ok(&format!("/api/join/{token}/ice-servers"))
        .await;
    let servers = ice["ice_servers"].as_array().unwrap();
    assert!(!servers.is_empty(), "{ice}");
    for server in servers {
        for url in server["urls"].as_array().unwrap() {
            assert!(
                url.as_str().unwrap().starts_with("turn"),
                "relay URLs only: {url}"
            );
        }
        let username = server["username"].as_str().unwrap();
        let (expiry, reference) = username.split_once(':').unwrap();
        let expiry: i64 = expiry.parse().unwrap();
        assert!(
            expiry <= app.now().timestamp() + 300,
            "five minutes at most"
        );
        assert!(!reference.contains(&consultation), "pseudonymous reference");
    }
    assert_eq!(
        patient_side
            .get("/api/join/not-a-real-token/ice-servers")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let unknown = patient_side.get_ok("/api/join/not-a-real-token").await;
    assert_eq!(unknown["status"], "unknown");

    // A link can be revoked, and a new one issued; only the new one works.
    let (status, _) = therapist
        .call(
            reqwest::Method::DELETE,
            &format!("/api/consultations/{consultation}/link"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        patient_side.get_ok(&format!("/api/join/{token}")).await["status"],
        "revoked"
    );
    let reissued = therapist
        .post_ok(
            &format!("/api/consultations/{consultation}/link"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    let token = reissued["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        patient_side.get_ok(&format!("/api/join/{token}")).await["status"],
        "valid"
    );

    // The day view shows it.
    let day = therapist.get_ok("/api/consultations?day=2026-11-25").await;
    assert_eq!(day.as_array().unwrap().len(), 1);
    assert_eq!(day[0]["patient_name"], "Grethe Hansen");

    // Completing before the call ended is refused and changes nothing.
    let (status, _) = therapist
        .post(
            &format!("/api/consultations/{consultation}/complete"),
            journal(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The call happens (signaling reports it), and is completed.
    therapist
        .call(
            reqwest::Method::POST,
            &format!("/api/consultations/{consultation}/safety"),
            Some(json!({"patient_location": "Hjemme i stuen", "callback_phone": "20304050"})),
        )
        .await;
    simulate_call(&app, &clinic_id, &consultation, start, true).await;
    let (status, _) = therapist
        .post(
            &format!("/api/consultations/{consultation}/complete"),
            json!({"journal": {"goal_reached_discharge": true}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an empty journal note is refused"
    );
    let done = therapist
        .post_ok(
            &format!("/api/consultations/{consultation}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    assert_eq!(done["billable"], true, "{done}");
    assert_eq!(done["line"]["service_number"], "0131");
    // 307,95 kr at the October 2022 level, +1,06 % and +2,77 %; unconfirmed
    // while later regulation steps are not recorded.
    assert_eq!(done["line"]["fee"]["text"], "319,83 kr");
    assert_eq!(done["line"]["region_share"]["text"], "125,69 kr");
    assert_eq!(done["line"]["patient_share"]["text"], "194,14 kr");
    assert_eq!(done["line"]["fee_unconfirmed"], true);
    assert_eq!(done["line"]["calendar_day"], "2026-11-25");
    // Completing twice returns the first result.
    let again = therapist
        .post_ok(
            &format!("/api/consultations/{consultation}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    assert_eq!(again["repeated"], true);
    assert_eq!(again["line"]["id"], done["line"]["id"]);
    let note = therapist
        .get_ok(&format!("/api/consultations/{consultation}/journal"))
        .await;
    assert_eq!(note["evaluation"], "Bedre bevægelighed i lænden.");
    // The link no longer works: the patient's page says it is over.
    assert_eq!(
        patient_side.get_ok(&format!("/api/join/{token}")).await["status"],
        "ended"
    );

    // A second consultation the same day: it takes place, but is not billable.
    let second_start = start + Duration::hours(3);
    let scheduled = therapist
        .post_ok(
            "/api/consultations",
            json!({"patient_id": pid, "course_id": cid, "start": second_start, "length_minutes": 20, "relay_only": false}),
            StatusCode::CREATED,
        )
        .await;
    let second = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    assert_eq!(scheduled["consultation"]["relay_only"], false);
    simulate_call(&app, &clinic_id, &second, second_start, true).await;
    let done2 = therapist
        .post_ok(
            &format!("/api/consultations/{second}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    assert_eq!(done2["billable"], false);
    assert_eq!(done2["reason"]["code"], "already_billed_that_day");
    assert!(
        done2["reason"]["da"]
            .as_str()
            .unwrap()
            .contains("25.11.2026"),
        "{done2}"
    );

    // November is not over: it cannot be exported yet.
    let (status, problem) = therapist
        .get("/api/billing/export.csv?from=2026-11-01&to=2026-11-30")
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:konsult:problem:period_not_closed");
    // On 1 December it can: one line, pseudonymous, with shares.
    app.set_now(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap());
    therapist
        .login("tove@fysionord.dk", "lange ord er gode")
        .await;
    admin.login("admin@fysionord.dk", ADMIN_PASSWORD).await;
    let (status, csv) = therapist
        .get("/api/billing/export.csv?from=2026-11-01&to=2026-11-30")
        .await;
    assert_eq!(status, StatusCode::OK);
    let csv = csv.as_str().unwrap().to_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(";123456;P-"), "{csv}");
    assert!(
        lines[1].contains(";0131;51;2026-11-25;31983;12569;19414;319,83;125,69;194,14;"),
        "{csv}"
    );
    assert!(lines[1].contains(";2026-11-25;"), "posting day: {csv}");
    assert!(!csv.contains("Grethe") && !csv.contains("120345"));

    // A correction is a new line referencing the exported one.
    let line_id = done["line"]["id"].as_str().unwrap();
    let correction = therapist
        .post_ok(
            &format!("/api/billing/{line_id}/correction"),
            json!({"note": "Fejlregistrering"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(correction["correction_of"], line_id);
    let (status, _) = therapist
        .post(
            &format!("/api/billing/{line_id}/correction"),
            json!({"note": "igen"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a line is corrected once");
    // The reversal is posted on 1 December, so November stays as exported…
    let (_, again) = therapist
        .get("/api/billing/export.csv?from=2026-11-01&to=2026-11-30")
        .await;
    assert_eq!(again.as_str().unwrap(), csv, "re-export is byte-identical");
    let december = therapist
        .get_ok("/api/billing?from=2026-12-01&to=2026-12-01")
        .await;
    assert_eq!(december["totals"]["fee_ore"], -31983);
    // …and by the day of the consultation the two lines cancel out.
    let page = therapist
        .get_ok("/api/billing?from=2026-11-25&to=2026-11-25&by=service")
        .await;
    assert_eq!(page["lines"].as_array().unwrap().len(), 2);
    assert_eq!(page["totals"]["fee_ore"], 0);
    let original = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["line_id"] == line_id)
        .unwrap();
    assert_eq!(original["fee_ore"], 31983, "the exported line is unchanged");
    assert!(original["exported_at"].is_string());

    // The audit log saw it all, and its chain holds.
    let audit = admin.get_ok("/api/audit?limit=1000").await;
    assert_eq!(audit["chain"]["status"], "intact");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "patient.create",
        "visit.create",
        "assessment.create",
        "consultation.create",
        "consultation.complete",
        "journal.read",
        "billing.list",
        "billing.export",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} not audited: {actions:?}"
        );
    }
    app.stop().await;
}

on_both_databases!(a_clinic_day_through_the_api, super::a_clinic_day);
