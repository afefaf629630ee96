//! Protocol version 2 through the server: hellos of version 2 get their
//! participant ids (per consultation, never an account's or a patient's
//! id), the therapist sees the waiting patient by id and admits it by `to`,
//! negotiation carries `to` and `sender`, and the events are those of a
//! version 1 call. Version 1 and version 2 clients share a room.

use crate::common;

use common::signal::*;
use common::{Db, TestApp};
use konsult_protocol::ParticipantState;
use serde_json::json;

fn hello_v2(auth: serde_json::Value) -> String {
    json!({"type": "hello", "version": 2, "auth": auth}).to_string()
}

async fn a_version_2_call_goes_by_participant_ids(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, chrono::Duration::minutes(5), true).await;

    let mut patient = connect(&app, None).await;
    let pw = join(&mut patient, hello_v2(json!({"link_token": b.token}))).await;
    assert_eq!(pw.version, 2);
    let patient_id = pw.participant.expect("a version 2 welcome names you");
    assert_ne!(
        patient_id,
        b.patient.as_uuid(),
        "not the patient's record id"
    );
    assert_eq!(pw.participants, Some(vec![]), "nobody else is here yet");
    expect(&mut patient, "waiting").await;

    let mut therapist = connect(&app, Some(&fx.cookie)).await;
    let tw = join(
        &mut therapist,
        hello_v2(json!({"session": {"consultation": b.id()}})),
    )
    .await;
    let therapist_id = tw.participant.unwrap();
    assert_ne!(therapist_id, fx.therapist.as_uuid(), "not the account's id");
    let roster = tw.participants.unwrap();
    assert_eq!(roster.len(), 1);
    assert_eq!(
        (roster[0].id, roster[0].state),
        (patient_id, ParticipantState::Waiting)
    );

    send(
        &mut therapist,
        json!({"type": "admit", "to": patient_id}).to_string(),
    )
    .await;
    expect(&mut patient, "admitted").await;
    let joined = expect(&mut patient, "participant_joined").await;
    assert_eq!(joined["participant"]["id"], therapist_id.to_string());
    let joined = expect(&mut therapist, "participant_joined").await;
    assert_eq!(joined["participant"]["id"], patient_id.to_string());
    assert_eq!(joined["participant"]["state"], "admitted");

    send(
        &mut therapist,
        json!({"type": "ice_restart", "to": patient_id}).to_string(),
    )
    .await;
    let relayed = expect(&mut patient, "ice_restart").await;
    assert_eq!(relayed["sender"], therapist_id.to_string());
    wait_for_events(&app, &fx, &b, &["patient_waiting", "admitted"]).await;

    // The ids are the consultation's: a new connection of the patient
    // (here, a version 1 one) is the same participant.
    drop(patient);
    let mut again = connect(&app, None).await;
    send(&mut again, patient_hello(&b.token)).await;
    expect(&mut again, "welcome").await;
    let gone = expect(&mut therapist, "participant_joined").await;
    assert_eq!(gone["participant"]["id"], patient_id.to_string());
    assert_eq!(
        gone["participant"]["state"], "waiting",
        "a new device waits again"
    );
    app.stop().await;
}

crate::on_both_databases!(
    a_version_2_call_goes_by_participant_ids,
    super::a_version_2_call_goes_by_participant_ids
);
