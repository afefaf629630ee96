//! `GET /ws` authenticates every hello against the store and refuses what
//! it must with the documented code and close 1008, changing nothing:
//! unknown, expired, withdrawn and not-yet-open links, therapists without a
//! session or from another clinic, bad first frames, and cross-site
//! upgrades. The hellos' reads run on SQLite and on PostgreSQL.

use crate::common;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_protocol::{CandidatePolicy, Role};

async fn a_valid_link_joins_with_welcome_ice_servers_and_a_resume_token(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let mut ws = connect(&app, None).await;
    let welcome = join(&mut ws, patient_hello(&b.token)).await;
    assert_eq!(welcome.role, Role::Patient);
    assert_eq!(welcome.consultation, b.id());
    assert_eq!(welcome.candidate_policy, CandidatePolicy::RelayOnly);
    assert!(welcome.polite && !welcome.resumed && !welcome.peer_present);
    assert_eq!(welcome.limits.max_frame_bytes, 65536);
    // The embedded relay, with a TURN REST credential that names neither
    // the patient nor the consultation id.
    let relay = app.state.signaling.turn().relay_addr().await.unwrap();
    let turn = &welcome.ice_servers[0];
    // UDP first, then TCP on the same port (no TLS: plain HTTP here).
    assert_eq!(
        turn.urls,
        vec![
            format!("turn:127.0.0.1:{}?transport=udp", relay.port()),
            format!("turn:127.0.0.1:{}?transport=tcp", relay.port()),
        ]
    );
    let username = turn.username.as_deref().unwrap();
    let (expiry, reference) = username.split_once(':').unwrap();
    assert!(expiry.parse::<u64>().is_ok());
    // `<consultation>.<participant>`, both keyed hashes.
    assert_eq!(reference.len(), 32 + 1 + 16, "{reference}");
    assert!(!username.contains(&b.id().to_string()));
    assert!(turn.credential.as_deref().is_some_and(|c| !c.is_empty()));
    // Relay-only: no STUN entry.
    assert_eq!(welcome.ice_servers.len(), 1);
    expect(&mut ws, "waiting").await;
    wait_for_events(&app, &fx, &b, &["patient_waiting"]).await;
    app.stop().await;
}

crate::on_both_databases!(
    a_valid_link_joins_with_welcome_ice_servers_and_a_resume_token,
    super::a_valid_link_joins_with_welcome_ice_servers_and_a_resume_token
);

/// A hello is checked with reads only: hellos again and again (every
/// network change of a call makes one) add nothing to the audit log; what
/// happens in the call is in its events.
#[tokio::test]
async fn hellos_write_nothing_to_the_audit_log() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let audit = || async {
        app.state
            .store
            .audit_entries(fx.clinic, 0, 100_000)
            .await
            .unwrap()
            .len()
    };
    let before = audit().await;
    for _ in 0..3 {
        let mut therapist = connect(&app, Some(&fx.cookie)).await;
        join(&mut therapist, therapist_hello(b.id())).await;
        let mut patient = connect(&app, None).await;
        join(&mut patient, patient_hello(&b.token)).await;
        expect(&mut patient, "waiting").await;
    }
    assert_eq!(audit().await, before);
    app.stop().await;
}

async fn unknown_withdrawn_expired_and_not_yet_open_links_are_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = clinic(&app, "Nord").await;

    let mut ws = connect(&app, None).await;
    join_refused(
        &mut ws,
        patient_hello("forged-or-unknown-token"),
        "unauthorized",
    )
    .await;

    // Not open yet: the refusal says when it opens.
    let later = book(&app, &fx, Duration::days(2), false).await;
    let mut ws = connect(&app, None).await;
    let error = join_refused(&mut ws, patient_hello(&later.token), "link_not_yet_open").await;
    let opens = later
        .opens_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        error["message"].as_str().unwrap().contains(&opens),
        "{error}"
    );

    // Withdrawn by the clinic.
    let withdrawn = book(&app, &fx, Duration::minutes(5), false).await;
    app.state
        .store
        .revoke_links(fx.clinic, fx.therapist, withdrawn.consultation, app.now())
        .await
        .unwrap();
    let mut ws = connect(&app, None).await;
    join_refused(&mut ws, patient_hello(&withdrawn.token), "link_expired").await;

    // Past its window.
    let soon = book(&app, &fx, Duration::minutes(5), false).await;
    app.set_now(soon.closes_at + Duration::seconds(1));
    let mut ws = connect(&app, None).await;
    join_refused(&mut ws, patient_hello(&soon.token), "link_expired").await;

    // None of it touched the consultations.
    for b in [&later, &withdrawn, &soon] {
        assert!(event_kinds(&app, &fx, b).await.is_empty());
        assert_eq!(stored(&app, &fx, b).await.state.code(), "scheduled");
    }
    app.stop().await;
}

crate::on_both_databases!(
    unknown_withdrawn_expired_and_not_yet_open_links_are_refused,
    super::unknown_withdrawn_expired_and_not_yet_open_links_are_refused
);

async fn a_patient_no_longer_eligible_is_refused_without_the_clinics_reasons(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    app.state
        .store
        .revoke_assessment(fx.clinic, fx.therapist, b.assessment, app.now())
        .await
        .unwrap();
    let mut ws = connect(&app, None).await;
    let error = join_refused(&mut ws, patient_hello(&b.token), "not_eligible").await;
    assert!(
        error.get("failures").is_none(),
        "a link holder does not learn the assessment: {error}"
    );
    assert!(event_kinds(&app, &fx, &b).await.is_empty());
    app.stop().await;
}

crate::on_both_databases!(
    a_patient_no_longer_eligible_is_refused_without_the_clinics_reasons,
    super::a_patient_no_longer_eligible_is_refused_without_the_clinics_reasons
);

async fn therapists_need_a_session_and_a_consultation_of_their_own_clinic(db: Db) {
    let app = TestApp::spawn(db).await;
    let a = clinic(&app, "Nord").await;
    let b_clinic = clinic(&app, "Syd").await;
    let b = book(&app, &a, Duration::minutes(5), false).await;

    // No cookie.
    let mut ws = connect(&app, None).await;
    join_refused(&mut ws, therapist_hello(b.id()), "unauthorized").await;
    // A cookie that is no session.
    let mut ws = connect(&app, Some("konsult_session=made-up")).await;
    join_refused(&mut ws, therapist_hello(b.id()), "unauthorized").await;
    // Another clinic's therapist: as if the consultation did not exist.
    let mut ws = connect(&app, Some(&b_clinic.cookie)).await;
    let other = join_refused(&mut ws, therapist_hello(b.id()), "unauthorized").await;
    let mut ws = connect(&app, Some(&b_clinic.cookie)).await;
    let missing = join_refused(
        &mut ws,
        therapist_hello(uuid::Uuid::new_v4()),
        "unauthorized",
    )
    .await;
    assert_eq!(other["message"], missing["message"]);
    // An expired session.
    app.set_now(app.now() + Duration::hours(9));
    let mut ws = connect(&app, Some(&a.cookie)).await;
    join_refused(&mut ws, therapist_hello(b.id()), "unauthorized").await;

    // Nothing changed: no events, still scheduled, and clinic A's audit log
    // has no entry by clinic B's therapist.
    assert!(event_kinds(&app, &a, &b).await.is_empty());
    assert_eq!(stored(&app, &a, &b).await.state.code(), "scheduled");
    let audit = app
        .state
        .store
        .audit_entries(a.clinic, 0, 10_000)
        .await
        .unwrap();
    let intruder = b_clinic.therapist.to_string();
    assert!(!audit.is_empty());
    assert!(
        audit.iter().all(|e| !e.actor.contains(&intruder)),
        "{audit:?}"
    );

    // The right therapist gets in.
    app.set_now(app.now() - Duration::hours(9));
    let mut ws = connect(&app, Some(&a.cookie)).await;
    let welcome = join(&mut ws, therapist_hello(b.id())).await;
    assert_eq!(welcome.role, Role::Therapist);
    assert!(!welcome.polite);
    assert_eq!(welcome.candidate_policy, CandidatePolicy::All);
    // Not relay-only: STUN on the relay's port first, then TURN.
    assert!(welcome.ice_servers[0].urls[0].starts_with("stun:127.0.0.1:"));
    assert!(welcome.ice_servers[1].urls[0].starts_with("turn:127.0.0.1:"));
    app.stop().await;
}

crate::on_both_databases!(
    therapists_need_a_session_and_a_consultation_of_their_own_clinic,
    super::therapists_need_a_session_and_a_consultation_of_their_own_clinic
);

#[tokio::test]
async fn the_first_frame_must_be_a_hello_of_this_version() {
    let app = TestApp::spawn(Db::Sqlite).await;
    for (frame, code) in [
        ("not json", "malformed"),
        (r#"{"type":"ping"}"#, "hello_required"),
        (
            r#"{"type":"hello","version":3,"auth":{"link_token":"x"}}"#,
            "version_mismatch",
        ),
        (
            r#"{"type":"hello","version":1,"auth":{"password":"x"}}"#,
            "invalid_fields",
        ),
        (r#"{"type":"teleport"}"#, "unknown_type"),
    ] {
        let mut ws = connect(&app, None).await;
        join_refused(&mut ws, frame.to_owned(), code).await;
    }
    // A hello over the frame limit.
    let huge = patient_hello(&"x".repeat(70 * 1024));
    let mut ws = connect(&app, None).await;
    join_refused(&mut ws, huge, "too_large").await;
    // A binary first frame.
    let mut ws = connect(&app, None).await;
    futures_util::SinkExt::send(
        &mut ws,
        tokio_tungstenite::tungstenite::Message::binary(vec![1, 2, 3]),
    )
    .await
    .unwrap();
    expect_error(&mut ws, "malformed").await;
    expect_close(&mut ws, 1008).await;
    app.stop().await;
}

#[tokio::test]
async fn cross_site_upgrades_are_refused_and_same_origin_ones_accepted() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws",
            app.addr
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    request
        .headers_mut()
        .insert("cookie", fx.cookie.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a cross-site upgrade must be refused: {other:?}"),
    }
    let mut ws = connect_with(&app, Some(&fx.cookie), Some(&app.base)).await;
    let welcome = join(&mut ws, therapist_hello(b.id())).await;
    assert_eq!(welcome.role, Role::Therapist);
    app.stop().await;
}

/// The hello's one-statement read of the gate (`Store::patient_hello`)
/// answers as the admission check's reads of visits and assessments do,
/// through a later assessment that fails and its revocation.
async fn the_hellos_gate_answers_as_the_admission_check(db: Db) {
    use konsult_domain::AssessmentCriteria;

    let app = TestApp::spawn(db).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let store = &app.state.store;
    let both = || async {
        let now = app.now();
        let hello = store.patient_hello(&b.token, now).await.unwrap();
        let (_, at_hello) = hello.call.expect("the link is valid");
        let at_admission = store
            .admission_check(fx.clinic, b.consultation, now)
            .await
            .unwrap();
        assert_eq!(at_hello, at_admission);
        at_hello
    };
    assert_eq!(both().await, Ok(()));

    app.set_now(app.now() + Duration::seconds(1));
    let (_, not_able) = store
        .record_assessment(
            fx.clinic,
            fx.therapist,
            b.course,
            AssessmentCriteria {
                technically_able: false,
                ..AssessmentCriteria::ALL_MET
            },
            app.now(),
        )
        .await
        .unwrap();
    app.set_now(app.now() + Duration::seconds(1));
    assert!(both().await.is_err());
    // A new assessment replaced the first; revoking it leaves none.
    store
        .revoke_assessment(fx.clinic, fx.therapist, not_able.id, app.now())
        .await
        .unwrap();
    app.set_now(app.now() + Duration::seconds(1));
    assert!(both().await.is_err(), "every assessment is revoked");
    app.stop().await;
}

crate::on_both_databases!(
    the_hellos_gate_answers_as_the_admission_check,
    super::the_hellos_gate_answers_as_the_admission_check
);

/// Hellos that arrive together are read in one statement: each gets the
/// answer it would get alone, whatever else is in its batch (unknown,
/// not-yet-open and withdrawn links, the same link twice, sessions that
/// are none or of another clinic, consultations that do not exist).
async fn hellos_read_together_are_answered_each_as_alone(db: Db) {
    let app = TestApp::spawn(db).await;
    let a = clinic(&app, "Nord").await;
    let other = clinic(&app, "Syd").await;
    let first = book(&app, &a, Duration::minutes(5), false).await;
    let second = book(&app, &a, Duration::minutes(5), true).await;
    let later = book(&app, &a, Duration::days(2), false).await;
    let withdrawn = book(&app, &a, Duration::minutes(5), false).await;
    let store = &app.state.store;
    store
        .revoke_links(a.clinic, a.therapist, withdrawn.consultation, app.now())
        .await
        .unwrap();
    let now = app.now();

    let tokens = [
        first.token.as_str(),
        "forged-or-unknown-token",
        later.token.as_str(),
        first.token.as_str(),
        withdrawn.token.as_str(),
        second.token.as_str(),
    ];
    let together = store.patient_hellos(&tokens, now).await.unwrap();
    assert_eq!(together.len(), tokens.len());
    for (token, answer) in tokens.iter().zip(&together) {
        let alone = store.patient_hello(token, now).await;
        assert_eq!(format!("{answer:?}"), format!("{alone:?}"), "{token}");
    }
    assert!(format!("{:?}", together[0]).contains("Valid"));
    assert!(format!("{:?}", together[1]).contains("Unknown"));
    assert!(format!("{:?}", together[2]).contains("NotYetOpen"));
    assert!(format!("{:?}", together[4]).contains("Revoked"));

    let session = |fx: &ClinicFixture| {
        fx.cookie
            .strip_prefix("konsult_session=")
            .unwrap()
            .to_owned()
    };
    let (mine, theirs) = (session(&a), session(&other));
    let missing = konsult_domain::ConsultationId::from_uuid(uuid::Uuid::new_v4());
    let asked = [
        (mine.as_str(), first.consultation),
        ("made-up", first.consultation),
        (theirs.as_str(), first.consultation),
        (mine.as_str(), missing),
        (mine.as_str(), second.consultation),
    ];
    let together = store.therapist_hellos(&asked, now).await.unwrap();
    assert_eq!(together.len(), asked.len());
    for ((token, consultation), answer) in asked.iter().zip(&together) {
        let alone = store.therapist_hello(token, *consultation, now).await;
        assert_eq!(format!("{answer:?}"), format!("{alone:?}"));
    }
    let context = |i: usize| {
        together[i]
            .as_ref()
            .unwrap()
            .as_ref()
            .map(|(_, c)| c.is_some())
    };
    assert_eq!(
        (0..asked.len()).map(context).collect::<Vec<_>>(),
        [Some(true), None, Some(false), Some(false), Some(true)]
    );

    // Through the socket, all at once: the right welcome or refusal each.
    let hellos = (0..8).map(|i| {
        let app = &app;
        let (a, first, later) = (&a, &first, &later);
        async move {
            let mut ws = connect(app, (i % 2 == 1).then_some(a.cookie.as_str())).await;
            match i % 4 {
                0 => {
                    join(&mut ws, patient_hello(&first.token)).await;
                }
                1 => {
                    join(&mut ws, therapist_hello(first.id())).await;
                }
                2 => {
                    join_refused(&mut ws, patient_hello(&later.token), "link_not_yet_open").await;
                }
                _ => {
                    join_refused(
                        &mut ws,
                        therapist_hello(uuid::Uuid::new_v4()),
                        "unauthorized",
                    )
                    .await;
                }
            }
            ws
        }
    });
    let sockets = futures_util::future::join_all(hellos).await;
    drop(sockets);
    app.stop().await;
}

crate::on_both_databases!(
    hellos_read_together_are_answered_each_as_alone,
    super::hellos_read_together_are_answered_each_as_alone
);
