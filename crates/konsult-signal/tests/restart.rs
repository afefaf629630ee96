//! Calls survive a restart of the server: a room is restored from what its
//! writes saved, and both participants resume without a new admission.

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Resume, Role};
use konsult_signal::{
    AdmissionState, CallEvent, CloseReason, Config, EndReason, Hub, Output, Presence, RoomRecord,
};

/// The server "restarts": a new hub, and the saved room restored into it.
fn restart(h: &mut Harness) -> RoomRecord {
    let record = h.saved.clone().expect("the room was saved");
    h.hub = Hub::new(Config::default());
    h.hub
        .restore(h.now, CONSULTATION, &record, h.context.clone())
        .unwrap();
    record
}

#[test]
fn both_sides_resume_after_a_restart_without_admission_or_negotiation() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.send_json(t, serde_json::json!({"type": "chat", "text": "Hej"}));
    h.take(p);
    let (rt, rp) = (h.resume_for(t), h.resume_for(p));
    let record = restart(&mut h);
    assert!(record.admitted && record.call_started);
    let room = h.room().unwrap();
    assert_eq!(room.admission, AdmissionState::Admitted);
    assert!(matches!(room.patient, Some(Presence::Disconnected { .. })));

    let t2 = h.join_resume(Role::Therapist, rt);
    let p2 = h.join_resume(Role::Patient, rp);
    let welcome = h.take_one(p2);
    match welcome.body {
        konsult_protocol::ServerBody::Welcome(w) => assert!(w.resumed, "resumed, not restarted"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.types(t2), ["welcome"], "no peer_joined: media goes on");
    // The call goes on: messages are relayed with numbers above what the
    // clients had seen.
    let last = h.last_seq(p);
    h.send(t2, &ClientMessage::IceRestart {});
    let m = h.take_one(p2);
    assert!(m.seq > last, "{} > {last}", m.seq);
    assert!(h.take_events().iter().all(|e| *e != CallEvent::Admitted));
}

#[test]
fn a_client_that_missed_committed_messages_starts_its_side_fresh_but_stays_admitted() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(p);
    // The patient's view before the admission.
    let rp = h.resume_for(p);
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    let rt = h.resume_for(t);
    // Crash after the commit, before the patient read `admitted`.
    restart(&mut h);
    let t2 = h.join_resume(Role::Therapist, rt);
    assert_eq!(h.types(t2), ["welcome"]);
    let p2 = h.join_resume(Role::Patient, rp);
    assert_eq!(h.types(p2), ["welcome", "admitted", "peer_joined"]);
    assert_eq!(h.types(t2), ["peer_joined"], "both sides negotiate anew");
    assert_eq!(h.room().unwrap().admission, AdmissionState::Admitted);
}

#[test]
fn nobody_back_within_the_bound_ends_the_call_as_abandoned() {
    let mut h = Harness::new();
    let _ = h.admitted_pair();
    restart(&mut h);
    h.take_events();
    h.advance(Config::default().restore_grace - secs(1));
    assert!(h.room().is_some());
    h.advance(secs(2));
    assert_eq!(
        h.take_events(),
        [
            CallEvent::TherapistLeft,
            CallEvent::PatientWaiting,
            CallEvent::PatientLeftWaiting,
            CallEvent::Ended {
                reason: EndReason::Abandoned
            }
        ]
    );
    assert!(h.room().is_none());
    assert_eq!(h.saved, None);
}

#[test]
fn a_restored_waiting_patient_resumes_waiting() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    let (rt, rp) = (h.resume_for(t), h.resume_for(p));
    restart(&mut h);
    let p2 = h.join_resume(Role::Patient, rp);
    assert_eq!(h.types(p2), ["welcome"]);
    let t2 = h.join_resume(Role::Therapist, rt);
    assert_eq!(h.types(t2), ["welcome"]);
    h.send(t2, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    assert_eq!(h.types(p2), ["admitted", "peer_joined"]);
}

#[test]
fn an_unknown_token_after_a_restart_is_a_new_device() {
    let mut h = Harness::new();
    let (_t, _p) = h.admitted_pair();
    restart(&mut h);
    let forged = Resume {
        token: h.fresh_token(),
        last_seq: 9999,
    };
    let p2 = h.join_resume(Role::Patient, forged);
    assert_eq!(
        h.types(p2),
        ["welcome", "waiting"],
        "must be admitted again"
    );
}

#[test]
fn saved_records_hold_no_token() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let json = h.saved.clone().unwrap().to_json();
    for conn in [t, p] {
        let token = h.resume_token(conn);
        assert!(!json.contains(token.as_str()), "{json}");
    }
    assert_eq!(
        RoomRecord::from_json(&json).unwrap(),
        h.saved.clone().unwrap()
    );
}

#[test]
fn a_room_given_up_to_another_node_closes_without_a_write_and_resumes_there() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let (rt, rp) = (h.resume_for(t), h.resume_for(p));
    let writes = |h: &Harness| {
        h.log
            .iter()
            .filter(|o| matches!(o, Output::Write { .. }))
            .count()
    };
    let before = writes(&h);
    h.take_closes();
    h.relinquish();
    let mut closes = h.take_closes();
    closes.sort_by_key(|(conn, _)| *conn);
    let mut expected = vec![(t, CloseReason::Moved), (p, CloseReason::Moved)];
    expected.sort_by_key(|(conn, _)| *conn);
    assert_eq!(closes, expected, "both told to resume elsewhere");
    assert_eq!(CloseReason::Moved.code(), 1013);
    assert_eq!(
        writes(&h),
        before,
        "nothing written: the new owner has the record"
    );
    assert!(h.rooms_closed.contains(&CONSULTATION));
    assert!(h.room().is_none());
    assert!(h
        .take_events()
        .iter()
        .all(|e| !matches!(e, CallEvent::Ended { .. })));
    // The node that took the room over restores it, and both resume there
    // without a new admission.
    restart(&mut h);
    let t2 = h.join_resume(Role::Therapist, rt);
    let p2 = h.join_resume(Role::Patient, rp);
    for conn in [t2, p2] {
        match h.take_one(conn).body {
            konsult_protocol::ServerBody::Welcome(w) => assert!(w.resumed),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.room().unwrap().admission, AdmissionState::Admitted);
}

#[test]
fn saved_records_name_each_participant() {
    let mut h = Harness::new();
    h.admitted_pair();
    let record = h.saved.clone().unwrap();
    assert_eq!(record.version, konsult_signal::record::RECORD_VERSION);
    let ids: Vec<_> = record.participants.iter().map(|p| (p.role, p.id)).collect();
    assert_eq!(
        ids,
        [
            (Role::Therapist, Some(participant_id(Role::Therapist))),
            (Role::Patient, Some(participant_id(Role::Patient))),
        ]
    );
    let back = RoomRecord::from_json(&record.to_json()).unwrap();
    assert_eq!(back, record);
}

/// A room saved by a version before participant ids (record version 1)
/// is still taken back: each participant resumes into its own place, and
/// the patient's place takes the id of the join that resumes it.
#[test]
fn a_record_saved_before_participant_ids_restores_and_both_resume() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let (rt, rp) = (h.resume_for(t), h.resume_for(p));
    let mut json: serde_json::Value =
        serde_json::from_str(&h.saved.clone().unwrap().to_json()).unwrap();
    json["version"] = 1.into();
    for participant in json["participants"].as_array_mut().unwrap() {
        let participant = participant.as_object_mut().unwrap();
        participant.remove("id");
        participant.remove("call");
    }
    let old = RoomRecord::from_json(&json.to_string()).expect("version 1 is read");
    assert!(old.participants.iter().all(|p| p.id.is_none()));

    h.hub = Hub::new(Config::default());
    h.hub
        .restore(h.now, CONSULTATION, &old, h.context.clone())
        .unwrap();
    let t2 = h.join_resume(Role::Therapist, rt);
    let p2 = h.join_resume(Role::Patient, rp);
    assert_eq!(h.types(t2), ["welcome"], "resumed, no new negotiation");
    assert_eq!(h.types(p2), ["welcome"]);
    let room = h.room().unwrap();
    assert_eq!(room.admission, AdmissionState::Admitted);
    assert_eq!(room.participants.len(), 2, "nobody was seated twice");
    let patient = room
        .participants
        .iter()
        .find(|p| p.role == Role::Patient)
        .unwrap();
    assert_eq!(patient.id, participant_id(Role::Patient));
    assert!(h.take_events().iter().all(|e| *e != CallEvent::Admitted));
}
