//! For any sequence of room events and dashboard actions on one consultation: the call ends at
//! most once, its connections and relay are closed exactly once (when it becomes over, by
//! whatever ends it), a billing line never exists without two-way evidence the clinic accepts,
//! and no sequence stops in a state nobody can act on.

use chrono::{DateTime, Utc};
use konsult_domain::billing::{decide_billing, BillingDecision, ConsultationFacts};
use konsult_domain::consultation::{
    ConsultationEvent, ConsultationState, JournalNote, JournalNoteDraft,
};
use konsult_domain::eligibility::Eligibility;
use konsult_domain::ids::{ConsultationId, PatientId};
use konsult_domain::lifecycle::{
    CallEvent, CallFacts, Effects, EndReason, Evidence, EvidencePolicy,
};
use konsult_domain::regulation::FeeSchedule;
use konsult_domain::service::{ServiceKind, Speciale};
use konsult_domain::ConsultationOutcome;
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Step {
    Room(CallEvent),
    Dashboard(ConsultationEvent),
}

fn note() -> JournalNote {
    JournalNote::parse(JournalNoteDraft {
        evaluation: Some("Godt forløb.".into()),
        ..JournalNoteDraft::default()
    })
    .unwrap()
}

fn step() -> impl Strategy<Value = Step> {
    let room = prop_oneof![
        Just(CallEvent::PatientWaiting),
        Just(CallEvent::PatientLeftWaiting),
        Just(CallEvent::Admitted),
        Just(CallEvent::TwoWayEstablished {
            evidence: Evidence::ClientReported
        }),
        Just(CallEvent::TwoWayEstablished {
            evidence: Evidence::RelayObserved
        }),
        Just(CallEvent::PatientLeft),
        Just(CallEvent::TherapistLeft),
        Just(CallEvent::Ended {
            reason: EndReason::TherapistEnded
        }),
        Just(CallEvent::Ended {
            reason: EndReason::Abandoned
        }),
    ];
    let dashboard = prop_oneof![
        Just(ConsultationEvent::Cancel),
        Just(ConsultationEvent::MarkNoShow),
        Just(ConsultationEvent::MarkTechnicalFailure),
        Just(ConsultationEvent::Complete(note())),
    ];
    prop_oneof![6 => room.prop_map(Step::Room), 1 => dashboard.prop_map(Step::Dashboard)]
}

/// Whether someone can still do something with a consultation in `state`: a final state needs
/// nothing more; every other state has an event that moves it.
fn actionable(facts: CallFacts) -> bool {
    let s = facts.state;
    if s.is_final() {
        return true;
    }
    let room = [
        CallEvent::PatientWaiting,
        CallEvent::Ended {
            reason: EndReason::TherapistEnded,
        },
    ];
    let dashboard = [
        ConsultationEvent::Cancel,
        ConsultationEvent::MarkTechnicalFailure,
        ConsultationEvent::Complete(note()),
    ];
    room.iter()
        .any(|e| facts.on_call_event(e).is_ok_and(|t| t.facts != facts))
        || dashboard.iter().any(|e| s.apply(e).is_ok())
}

fn started() -> DateTime<Utc> {
    "2026-05-04T08:00:00Z".parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_sequence_ends_once_and_bills_only_on_accepted_evidence(
        steps in prop::collection::vec(step(), 0..40),
        policy in prop_oneof![Just(EvidencePolicy::ClientReported), Just(EvidencePolicy::RelayObserved)],
    ) {
        let mut facts = CallFacts::SCHEDULED;
        let mut ends = 0;
        let mut closings = 0;
        let mut two_way_stamps = 0;
        for step in &steps {
            let before = facts;
            match step {
                Step::Room(event) => {
                    let Ok(t) = facts.on_call_event(event) else {
                        // Refused: nothing changed.
                        continue;
                    };
                    ends += usize::from(t.stamp_ended);
                    two_way_stamps += usize::from(t.stamp_two_way);
                    if t.effects.any() {
                        closings += 1;
                    }
                    prop_assert_eq!(t.effects, Effects::of_change(before.state, t.facts.state));
                    facts = t.facts;
                }
                Step::Dashboard(event) => {
                    let Ok(state) = facts.state.apply(event) else { continue };
                    if Effects::of_change(facts.state, state).any() {
                        closings += 1;
                    }
                    facts.state = state;
                }
            }
            prop_assert!(actionable(facts), "stuck in {:?} after {:?}", facts, step);
            // The evidence never weakens, and the call never "un-starts".
            prop_assert!(facts.two_way >= before.two_way);
            prop_assert!(facts.started >= before.started);
        }
        prop_assert!(ends <= 1, "ended {} times", ends);
        prop_assert!(two_way_stamps <= 1);
        prop_assert_eq!(closings, usize::from(facts.state.is_over()));

        // Billing of whatever was completed.
        if facts.state == ConsultationState::Completed {
            let decision = decide_billing(
                &ConsultationFacts {
                    id: ConsultationId::from_uuid(Uuid::from_u128(1)),
                    patient: PatientId::from_uuid(Uuid::from_u128(2)),
                    kind: ServiceKind::IndividualVideo,
                    speciale: Speciale::Almen,
                    outcome: ConsultationOutcome::Held {
                        started_at: started(),
                        two_way: facts.two_way,
                    },
                    eligibility_at_start: Eligibility::Eligible,
                    evidence_policy: policy,
                    patient_inactive: false,
                },
                &[],
                &[],
                &FeeSchedule::published(),
            );
            if let BillingDecision::Billable(line) = decision {
                prop_assert_eq!(facts.two_way, Some(line.evidence));
                prop_assert!(policy.accepts(line.evidence));
                prop_assert!(facts.started);
            }
        }
    }
}
