//! The eligibility re-check at admission fails (e.g. the assessment was
//! revoked after the consultation was scheduled).

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Denied, DeniedReason, ErrorCode, Role, ServerBody};
use konsult_signal::{AdmissionState, CallEvent, CloseReason};

#[test]
fn refused_check_denies_the_patient_with_reasons_and_tells_the_therapist() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.take_events();
    h.send(t, &ClientMessage::Admit {});
    let failures = vec![
        "assessment_revoked".to_string(),
        "no_prior_visit".to_string(),
    ];
    h.answer_check(Err(failures.clone()));

    assert_eq!(
        h.take_one(p).body,
        ServerBody::Denied(Denied {
            reason: DeniedReason::NotEligible,
            note: None,
            failures: failures.clone(),
        })
    );
    assert_eq!(h.take_closes(), [(p, CloseReason::Denied)]);

    let tm = h.take(t);
    assert_eq!(tm.len(), 2);
    let ServerBody::Error(e) = &tm[0].body else {
        panic!("{tm:?}")
    };
    assert_eq!(e.code, ErrorCode::NotEligible);
    assert_eq!(e.failures, failures);
    assert_eq!(
        tm[1].body,
        ServerBody::PeerLeft {
            role: Role::Patient
        }
    );

    assert_eq!(
        h.take_events(),
        [CallEvent::PatientLeftWaiting],
        "the consultation is open again"
    );
    let room = h.room().unwrap();
    assert_eq!(room.patient, None);
    assert_eq!(room.admission, AdmissionState::Waiting);
}

#[test]
fn the_therapists_not_eligible_error_does_not_count_as_abuse() {
    let mut h = Harness::with_config(konsult_signal::Config {
        max_errors: 2,
        ..Default::default()
    });
    let t = h.join(Role::Therapist);
    for _ in 0..3 {
        h.join(Role::Patient);
        h.send(t, &ClientMessage::Admit {});
        h.answer_check(Err(vec!["assessment_missing".into()]));
    }
    assert!(
        !h.take_closes().iter().any(|(c, _)| *c == t),
        "refusals are not the therapist's errors"
    );
}
