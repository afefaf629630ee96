//! For any set of consultations and in-clinic visits of two patients around the October 2026
//! DST change, decided in any order (some twice) with each decision's line fed back in:
//! no patient ever has two lines on one Danish day, no consultation two lines, no line on a day
//! with an in-clinic visit, every day that could be billed is billed once, and deciding again
//! gives the same answer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use konsult_domain::billing::{
    decide_billing, BillingDecision, BillingLine, ConsultationFacts, ConsultationOutcome,
};
use konsult_domain::calendar::danish_day;
use konsult_domain::eligibility::{Eligibility, Failure, InClinicVisit};
use konsult_domain::ids::{ConsultationId, PatientId, VisitId};
use konsult_domain::lifecycle::{Evidence, EvidencePolicy};
use konsult_domain::money::shares;
use konsult_domain::regulation::FeeSchedule;
use konsult_domain::service::{ServiceKind, Speciale};
use proptest::prelude::*;
use uuid::Uuid;

/// 2026-10-23T12:00Z; the window below runs four days across the 25 October change.
fn window_start() -> DateTime<Utc> {
    "2026-10-23T12:00:00Z".parse().unwrap()
}

const WINDOW_MINUTES: i64 = 4 * 24 * 60;

fn patient(n: u8) -> PatientId {
    PatientId::from_uuid(Uuid::from_u128(u128::from(n) + 1))
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0..WINDOW_MINUTES).prop_map(|minutes| window_start() + TimeDelta::minutes(minutes))
}

fn outcome() -> impl Strategy<Value = ConsultationOutcome> {
    prop_oneof![
        6 => (instant(), prop_oneof![
            1 => Just(None),
            3 => Just(Some(Evidence::ClientReported)),
            3 => Just(Some(Evidence::RelayObserved)),
        ]).prop_map(|(started_at, two_way)| {
            ConsultationOutcome::Held { started_at, two_way }
        }),
        1 => Just(ConsultationOutcome::TechnicalFailure),
        1 => Just(ConsultationOutcome::Cancelled),
        1 => Just(ConsultationOutcome::NoShow),
    ]
}

fn consultations() -> impl Strategy<Value = Vec<ConsultationFacts>> {
    prop::collection::vec(
        (
            0u8..2,
            prop_oneof![
                Just(ServiceKind::IndividualVideo),
                Just(ServiceKind::HoldVideo)
            ],
            prop_oneof![Just(Speciale::Almen), Just(Speciale::Vederlagsfri)],
            outcome(),
            prop::bool::weighted(0.85),
            prop_oneof![
                3 => Just(EvidencePolicy::ClientReported),
                1 => Just(EvidencePolicy::RelayObserved)
            ],
        ),
        1..14,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(
                |(i, (who, kind, speciale, outcome, eligible, evidence_policy))| {
                    ConsultationFacts {
                        id: ConsultationId::from_uuid(Uuid::from_u128(1000 + i as u128)),
                        patient: patient(who),
                        kind,
                        speciale,
                        outcome,
                        eligibility_at_start: if eligible {
                            Eligibility::Eligible
                        } else {
                            Eligibility::NotEligible(vec![Failure::NotPatientSafe])
                        },
                        evidence_policy,
                        patient_inactive: false,
                    }
                },
            )
            .collect()
    })
}

fn visits() -> impl Strategy<Value = Vec<InClinicVisit>> {
    prop::collection::vec((0u8..2, instant()), 0..3).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (who, at))| InClinicVisit {
                id: VisitId::from_uuid(Uuid::from_u128(500 + i as u128)),
                patient: patient(who),
                at,
            })
            .collect()
    })
}

/// Consultations with an order to decide them in: every one at least once, some twice.
fn scenario() -> impl Strategy<Value = (Vec<ConsultationFacts>, Vec<usize>)> {
    consultations().prop_flat_map(|facts| {
        let n = facts.len();
        let order = (prop::collection::vec(0..n, 0..n)).prop_flat_map(move |extra| {
            let mut order: Vec<usize> = (0..n).collect();
            order.extend(extra);
            Just(order).prop_shuffle()
        });
        (Just(facts), order)
    })
}

/// A consultation that could be billed if its day were still free.
fn could_bill(facts: &ConsultationFacts, visits: &[InClinicVisit]) -> Option<NaiveDate> {
    let ConsultationOutcome::Held {
        started_at,
        two_way: Some(evidence),
    } = facts.outcome
    else {
        return None;
    };
    if !facts.evidence_policy.accepts(evidence) {
        return None;
    }
    if !facts.eligibility_at_start.is_eligible() {
        return None;
    }
    let day = danish_day(started_at);
    let visit_that_day = visits
        .iter()
        .any(|v| v.patient == facts.patient && danish_day(v.at) == day);
    (!visit_that_day).then_some(day)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn never_two_lines_a_day_and_deciding_again_is_stable(
        (facts, order) in scenario(),
        visits in visits(),
    ) {
        let fees = FeeSchedule::published();
        let mut lines: Vec<BillingLine> = Vec::new();
        let mut first_decision: BTreeMap<usize, BillingDecision> = BTreeMap::new();

        for &i in &order {
            let decision = decide_billing(&facts[i], &lines, &visits, &fees);
            if let Some(earlier) = first_decision.get(&i) {
                // A consultation decided a second time while others were being decided.
                if let BillingDecision::Billable(line) = earlier {
                    prop_assert_eq!(&decision, &BillingDecision::Billable(line.clone()));
                }
            } else {
                first_decision.insert(i, decision.clone());
            }
            if let BillingDecision::Billable(line) = decision {
                if !lines.contains(&line) {
                    lines.push(line);
                }
            }
        }

        // No patient has two lines on one Danish day; no consultation two lines for a patient.
        let mut days = BTreeSet::new();
        let mut consultations = BTreeSet::new();
        for line in &lines {
            prop_assert!(days.insert((line.patient, line.calendar_day)), "two lines on {}", line.calendar_day);
            prop_assert!(consultations.insert((line.patient, line.consultation)));
        }

        for line in &lines {
            let source = facts.iter().find(|f| f.id == line.consultation).unwrap();
            // The line describes its consultation truthfully.
            let ConsultationOutcome::Held { started_at, two_way } = source.outcome else {
                panic!("line for a consultation that was not held");
            };
            // Never billable without two-way evidence the clinic accepts, and the line says
            // which evidence it rests on.
            prop_assert_eq!(two_way, Some(line.evidence));
            prop_assert!(source.evidence_policy.accepts(line.evidence));
            prop_assert!(source.eligibility_at_start.is_eligible());
            prop_assert_eq!(line.patient, source.patient);
            prop_assert_eq!(line.calendar_day, danish_day(started_at));
            prop_assert_eq!(line.shares, shares(line.speciale, line.fee));
            // No line on a day with an in-clinic visit.
            prop_assert!(!visits.iter().any(|v| v.patient == line.patient && danish_day(v.at) == line.calendar_day));
        }

        for (i, f) in facts.iter().enumerate() {
            let again = decide_billing(f, &lines, &visits, &fees);
            match &first_decision[&i] {
                // Re-deciding a billed consultation gives the very same line.
                BillingDecision::Billable(line) => {
                    prop_assert_eq!(&again, &BillingDecision::Billable(line.clone()));
                }
                // A consultation that was not billed stays unbilled.
                BillingDecision::NotBillable(_) => {
                    prop_assert!(matches!(again, BillingDecision::NotBillable(_)), "{:?}", again);
                }
            }
            // Every day that could be billed for the patient is billed (exactly once, above).
            if let Some(day) = could_bill(f, &visits) {
                prop_assert!(lines.iter().any(|l| l.patient == f.patient && l.calendar_day == day));
            }
        }
    }
}
