//! A real call through the running server, as the browsers would make it:
//! two `konsult_peer::PeerClient`s (the patient with the join link, the
//! therapist with the dashboard's session cookie, admitting the patient)
//! complete a DTLS-SRTP call with audio and video both ways over loopback
//! without a relay. The server records two-way media, the therapist ends
//! the call, and the consultation is billable once completed.

use crate::common;

use std::time::Duration as StdDuration;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_domain::ConsultationState;
use konsult_peer::{CandidateType, ClientError};
use konsult_protocol::ByeReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_through_the_server_is_two_way_and_billable() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;

    let (mut patient, mut therapist) = connect_pair(&app, &fx, &b).await;
    let (p, t) = tokio::join!(
        patient.run_until_established(MEDIA_TIMEOUT),
        therapist.run_until_established(MEDIA_TIMEOUT),
    );
    let (p, t) = (p.unwrap(), t.unwrap());
    for (label, report) in [("therapist", &t), ("patient", &p)] {
        assert!(
            report.media_established && !report.relay_only,
            "{label}: {report:?}"
        );
        let media = report.media.as_ref().unwrap();
        print_figures(&format!("direct {label}"), media);
        assert_two_way(label, media);
        // Direct: no relay on either side. On loopback the server-reflexive
        // candidate the embedded STUN server reports is the host address
        // itself, and ICE may nominate either, so both count as direct.
        let pair = media.selected_pair.unwrap();
        assert!(
            matches!(pair.local, CandidateType::Host | CandidateType::Srflx),
            "{label}: {pair:?}"
        );
        assert!(
            matches!(
                pair.remote,
                CandidateType::Host | CandidateType::Srflx | CandidateType::Prflx
            ),
            "{label}: {pair:?}"
        );
    }
    wait_for_events(
        &app,
        &fx,
        &b,
        &["patient_waiting", "admitted", "two_way_established"],
    )
    .await;
    assert!(stored(&app, &fx, &b).await.two_way_at.is_some());

    // The therapist ends it; the patient is told and stops.
    therapist.leave().await.unwrap();
    let after = patient.run_for(StdDuration::from_secs(10)).await;
    assert!(
        matches!(after, Err(ClientError::Ended(ByeReason::EndedByTherapist))),
        "{after:?}"
    );
    wait_for_events(&app, &fx, &b, &WHOLE_CALL).await;
    assert_eq!(stored(&app, &fx, &b).await.state, ConsultationState::Ended);
    // The audit log holds the call's admission, two-way media and end.
    let subject = b.consultation.to_string();
    let audited: Vec<String> = app
        .state
        .store
        .audit_entries(fx.clinic, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject.as_deref() == Some(subject.as_str()) && e.action.starts_with("call."))
        .map(|e| e.action)
        .collect();
    assert_eq!(audited, ["call.admitted", "call.two_way", "call.ended"]);
    assert!(complete_is_billable(&app, &fx, &b).await);
    app.stop().await;
}

/// The same real call with both clients speaking protocol version 2: the
/// therapist admits the patient by its id, the peers negotiate with `to`
/// and `sender`, and the call is recorded and billed as a version 1 call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_call_through_the_server_is_two_way_and_billable() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;

    let (mut patient, mut therapist) =
        connect_pair_speaking(&app, &fx, &b, konsult_protocol::PROTOCOL_VERSION_2).await;
    assert_eq!(patient.welcome().version, 2);
    assert!(patient.welcome().participant.is_some());
    let (p, t) = tokio::join!(
        patient.run_until_established(MEDIA_TIMEOUT),
        therapist.run_until_established(MEDIA_TIMEOUT),
    );
    let (p, t) = (p.unwrap(), t.unwrap());
    for (label, report) in [("therapist", &t), ("patient", &p)] {
        assert!(report.media_established, "{label}: {report:?}");
        assert_two_way(label, report.media.as_ref().unwrap());
    }
    therapist.leave().await.unwrap();
    let after = patient.run_for(StdDuration::from_secs(10)).await;
    assert!(
        matches!(after, Err(ClientError::Ended(ByeReason::EndedByTherapist))),
        "{after:?}"
    );
    wait_for_events(&app, &fx, &b, &WHOLE_CALL).await;
    assert!(complete_is_billable(&app, &fx, &b).await);
    app.stop().await;
}
