//! Admission: the therapist admits, the pump re-checks eligibility, the call
//! starts; signaling is relayed only in the call.

mod common;

use common::*;
use konsult_protocol::{
    ByeReason, CandidateLine, ChatText, ClientMessage, EndOfCandidates, ErrorCode, IceCandidate,
    Role, ServerBody,
};
use konsult_signal::{AdmissionState, CallEvent, CloseReason, EndReason};

#[test]
fn admit_asks_for_a_check_and_admits_on_ok() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.take_events();

    h.send(t, &ClientMessage::Admit {});
    assert_eq!(h.checks.len(), 1, "the pump must re-check eligibility");
    assert!(
        h.take(t).is_empty() && h.take(p).is_empty(),
        "nothing before the check"
    );
    assert_eq!(h.room().unwrap().admission, AdmissionState::Checking);

    h.answer_check(Ok(()));
    let pm: Vec<_> = h.take(p).into_iter().map(|m| m.body).collect();
    assert_eq!(
        pm,
        [
            ServerBody::Admitted {},
            ServerBody::PeerJoined {
                role: Role::Therapist
            }
        ]
    );
    let tm: Vec<_> = h.take(t).into_iter().map(|m| m.body).collect();
    assert_eq!(
        tm,
        [ServerBody::PeerJoined {
            role: Role::Patient
        }]
    );
    assert_eq!(h.take_events(), [CallEvent::Admitted]);
    assert_eq!(h.room().unwrap().admission, AdmissionState::Admitted);
}

#[test]
fn only_the_therapist_admits_and_only_a_waiting_patient() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    h.take(t);
    h.send(t, &ClientMessage::Admit {});
    assert_eq!(error_code(&h.take_one(t)), ErrorCode::WrongState);
    assert!(h.checks.is_empty());

    let p = h.join(Role::Patient);
    h.take(p);
    h.take(t);
    h.send(p, &ClientMessage::Admit {});
    assert_eq!(error_code(&h.take_one(p)), ErrorCode::Forbidden);
    assert!(h.checks.is_empty());

    h.send(t, &ClientMessage::Admit {});
    h.send(t, &ClientMessage::Admit {});
    assert_eq!(
        error_code(&h.take_one(t)),
        ErrorCode::WrongState,
        "already checking"
    );
    assert_eq!(h.checks.len(), 1);
    h.answer_check(Ok(()));
    h.take(t);
    h.send(t, &ClientMessage::Admit {});
    assert_eq!(
        error_code(&h.take_one(t)),
        ErrorCode::WrongState,
        "already admitted"
    );
}

#[test]
fn a_late_answer_for_an_earlier_patient_is_ignored() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p1 = h.join(Role::Patient);
    h.send(t, &ClientMessage::Admit {});
    let stale = h.checks.remove(0);
    h.send(p1, &ClientMessage::Leave {});
    let p2 = h.join(Role::Patient);
    h.send(t, &ClientMessage::Admit {});
    h.take(t);
    h.take(p2);
    // The answer to the first check arrives now: it must not admit p2.
    h.hub
        .handle_admission_check(h.now, stale.0, stale.1, Ok(()));
    assert!(h.hub.poll_output().is_none());
    assert_eq!(h.room().unwrap().admission, AdmissionState::Checking);
    h.answer_check(Ok(()));
    assert_eq!(h.types(p2), ["admitted", "peer_joined"]);
}

#[test]
fn an_unanswered_check_times_out_and_the_patient_keeps_waiting() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.send(t, &ClientMessage::Admit {});
    h.advance_pinging(secs(20), &[t, p]);
    assert_eq!(error_code(&h.take_one(t)), ErrorCode::AdmissionCheckFailed);
    assert!(h.take(p).is_empty());
    assert_eq!(h.room().unwrap().admission, AdmissionState::Waiting);
    // The late answer changes nothing; a new admit works.
    h.answer_check(Ok(()));
    assert!(h.take(p).is_empty());
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    assert_eq!(h.types(p), ["admitted", "peer_joined"]);
}

#[test]
fn signaling_is_relayed_unchanged_in_the_call() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let offer =
        sdp("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=candidate:1 1 udp 1 192.0.2.1 5 typ host\r\n");
    h.send(t, &ClientMessage::Offer { sdp: offer.clone() });
    assert_eq!(h.take_one(p).body, ServerBody::Offer { sdp: offer.clone() });
    h.send(p, &ClientMessage::Answer { sdp: offer.clone() });
    assert_eq!(h.take_one(t).body, ServerBody::Answer { sdp: offer });

    let cand = IceCandidate {
        candidate: CandidateLine::parse("candidate:1 1 udp 1 192.0.2.1 5 typ host".into()).unwrap(),
        sdp_mid: None,
        sdp_m_line_index: Some(0),
        username_fragment: None,
    };
    h.send(p, &ClientMessage::Candidate(cand.clone()));
    assert_eq!(h.take_one(t).body, ServerBody::Candidate(cand));
    h.send(
        p,
        &ClientMessage::EndOfCandidates(EndOfCandidates::default()),
    );
    assert_eq!(
        h.take_one(t).body,
        ServerBody::EndOfCandidates(EndOfCandidates::default())
    );
    h.send(t, &ClientMessage::IceRestart {});
    assert_eq!(h.take_one(p).body, ServerBody::IceRestart {});
    let text = ChatText::parse("Løft armen".into()).unwrap();
    h.send(t, &ClientMessage::Chat { text: text.clone() });
    let chat = h.take_one(p);
    assert_eq!(
        chat.body,
        ServerBody::Chat {
            from: Role::Therapist,
            text
        }
    );
    assert!(chat.seq > 0, "relayed messages are sequenced");
    assert!(h.take(t).is_empty(), "nothing echoes to the sender");
}

#[test]
fn patient_leaving_the_call_keeps_the_consultation_and_may_come_back() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.send(p, &ClientMessage::Leave {});
    assert_eq!(h.types(p), ["bye"]);
    assert_eq!(h.take_closes(), [(p, CloseReason::Bye)]);
    assert_eq!(
        h.take_one(t).body,
        ServerBody::PeerLeft {
            role: Role::Patient
        }
    );
    assert_eq!(
        h.take_events(),
        [CallEvent::PatientLeft],
        "no end: the therapist stays and the patient may come back"
    );
    // The patient comes back from the same link and waits for admission
    // again; the consultation is still in its call.
    let p2 = h.join(Role::Patient);
    assert_eq!(h.types(p2), ["welcome", "waiting"]);
    assert_eq!(h.types(t), ["patient_waiting"]);
    assert_eq!(h.take_events(), [CallEvent::PatientWaiting]);
    assert!(h.room().unwrap().call_started);
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    assert_eq!(h.types(p2), ["admitted", "peer_joined"]);
    assert_eq!(h.take_events(), [CallEvent::Admitted]);
}

#[test]
fn therapist_leaving_the_call_ends_the_consultation_for_both() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.send(t, &ClientMessage::Leave {});
    assert_eq!(h.types(t), ["bye"]);
    let pm: Vec<_> = h.take(p).into_iter().map(|m| m.body).collect();
    assert_eq!(
        pm,
        [
            ServerBody::PeerLeft {
                role: Role::Therapist
            },
            ServerBody::Bye {
                reason: ByeReason::EndedByTherapist
            },
        ]
    );
    assert_eq!(
        h.take_closes(),
        [(t, CloseReason::Bye), (p, CloseReason::Bye)]
    );
    assert_eq!(
        h.take_events(),
        [CallEvent::Ended {
            reason: EndReason::TherapistEnded
        }]
    );
    assert!(h.room().is_none());
}

#[test]
fn the_therapist_ending_reaches_a_patient_back_in_the_waiting_room() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    // The patient left the call and came back: waiting, not yet admitted
    // again, while the consultation is still in its call.
    h.send(p, &ClientMessage::Leave {});
    h.take(p);
    h.take(t);
    h.take_closes();
    let p2 = h.join(Role::Patient);
    h.take(p2);
    h.take(t);
    h.take_events();
    // The therapist ends the consultation instead of admitting again.
    h.send(t, &ClientMessage::Leave {});
    assert_eq!(h.types(t), ["bye"]);
    let pm: Vec<_> = h.take(p2).into_iter().map(|m| m.body).collect();
    assert!(
        pm.contains(&ServerBody::Bye {
            reason: ByeReason::EndedByTherapist
        }),
        "the waiting patient is told: {pm:?}"
    );
    let closes = h.take_closes();
    assert!(closes.contains(&(p2, CloseReason::Bye)), "{closes:?}");
    assert_eq!(
        h.take_events(),
        [CallEvent::Ended {
            reason: EndReason::TherapistEnded
        }]
    );
    assert!(h.room().is_none());
}

#[test]
fn the_census_counts_participants_by_state() {
    let mut h = Harness::new();
    assert_eq!(h.hub.census(), konsult_signal::Census::default());
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    let census = h.hub.census();
    assert_eq!(
        (census.rooms, census.rooms_in_call, census.therapists),
        (1, 0, 1)
    );
    assert_eq!((census.patients_waiting, census.patients_admitted), (1, 0));

    h.send(t, &ClientMessage::Admit {});
    assert_eq!(
        h.hub.census().patients_waiting,
        1,
        "checking is still waiting"
    );
    h.answer_check(Ok(()));
    let census = h.hub.census();
    assert_eq!((census.patients_waiting, census.patients_admitted), (0, 1));
    assert_eq!(census.rooms_in_call, 1);

    h.disconnect(p);
    let census = h.hub.census();
    assert_eq!(
        (
            census.patients_admitted,
            census.participants_away,
            census.therapists
        ),
        (0, 1, 1),
        "a dropped patient is away during its grace period"
    );
}
