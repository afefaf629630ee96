//! The eligibility gate names every failed prerequisite and only those, for arbitrary
//! combinations of in-clinic visits and assessments (passing, failing, revoked, before and after
//! the start, with ties), compared with an oracle written out plainly here.

use chrono::{DateTime, TimeDelta, Utc};
use konsult_domain::eligibility::{
    eligibility, Assessment, AssessmentCriteria, Eligibility, Failure, InClinicVisit,
};
use konsult_domain::ids::{AssessmentId, PatientId, TherapistId, VisitId};
use proptest::prelude::*;
use uuid::Uuid;

fn start() -> DateTime<Utc> {
    "2026-10-25T09:00:00Z".parse().unwrap()
}

/// Offsets in hours around the start, narrow enough for frequent ties and "exactly at start".
fn offset() -> impl Strategy<Value = i64> {
    -4i64..=2
}

fn visits() -> impl Strategy<Value = Vec<InClinicVisit>> {
    prop::collection::vec(offset(), 0..3).prop_map(|offsets| {
        offsets
            .into_iter()
            .enumerate()
            .map(|(i, hours)| InClinicVisit {
                id: VisitId::from_uuid(Uuid::from_u128(i as u128 + 1)),
                patient: PatientId::from_uuid(Uuid::from_u128(1)),
                at: start() + TimeDelta::hours(hours),
            })
            .collect()
    })
}

fn criteria() -> impl Strategy<Value = AssessmentCriteria> {
    // Mostly met, so that both eligible and single failures are common.
    let flag = || prop::bool::weighted(0.8);
    (flag(), flag(), flag(), flag(), flag()).prop_map(|(c, t, r, s, p)| AssessmentCriteria {
        cognitively_able: c,
        technically_able: t,
        clinically_relevant: r,
        patient_safe: s,
        patient_prefers_video: p,
    })
}

fn assessments() -> impl Strategy<Value = Vec<Assessment>> {
    prop::collection::vec(
        (offset(), criteria(), prop::option::weighted(0.3, offset())),
        0..4,
    )
    .prop_map(|rows| {
        // Ids are unique, as in the store; shuffling the list later decouples id from position.
        rows.into_iter()
            .enumerate()
            .map(|(i, (hours, criteria, revoked))| Assessment {
                id: AssessmentId::from_uuid(Uuid::from_u128(i as u128 + 1)),
                made_at: start() + TimeDelta::hours(hours),
                made_by: TherapistId::from_uuid(Uuid::from_u128(9)),
                criteria,
                revoked_at: revoked.map(|h| start() + TimeDelta::hours(h)),
            })
            .collect()
    })
}

/// The rules of `docs/domain.md`, written as plainly as possible.
fn oracle(
    visits: &[InClinicVisit],
    assessments: &[Assessment],
    start: DateTime<Utc>,
) -> Vec<Failure> {
    let mut expected = Vec::new();

    let mut seen_before = false;
    for visit in visits {
        if visit.at < start {
            seen_before = true;
        }
    }
    if !seen_before {
        expected.push(Failure::NoInClinicVisitBefore);
    }

    let mut best: Option<&Assessment> = None;
    for a in assessments {
        if a.revoked_at.is_some() || a.made_at > start {
            continue;
        }
        let newer = match best {
            None => true,
            Some(b) => a.made_at > b.made_at || (a.made_at == b.made_at && a.id > b.id),
        };
        if newer {
            best = Some(a);
        }
    }

    if let Some(a) = best {
        if !a.criteria.cognitively_able {
            expected.push(Failure::NotCognitivelyAble);
        }
        if !a.criteria.technically_able {
            expected.push(Failure::NotTechnicallyAble);
        }
        if !a.criteria.clinically_relevant {
            expected.push(Failure::NotClinicallyRelevant);
        }
        if !a.criteria.patient_safe {
            expected.push(Failure::NotPatientSafe);
        }
        if !a.criteria.patient_prefers_video {
            expected.push(Failure::PatientDoesNotPreferVideo);
        }
    } else if assessments.is_empty() {
        expected.push(Failure::NoAssessment);
    } else {
        let mut revoked = 0;
        let mut later = 0;
        for a in assessments {
            if a.revoked_at.is_some() {
                revoked += 1;
            } else if a.made_at > start {
                later += 1;
            }
        }
        if revoked > 0 {
            expected.push(Failure::AssessmentRevoked);
        }
        if later > 0 {
            expected.push(Failure::AssessmentAfterStart);
        }
    }
    expected
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn names_every_failure_and_only_those(
        visits in visits(),
        assessments in assessments().prop_shuffle(),
    ) {
        let expected = oracle(&visits, &assessments, start());
        let got = eligibility(&visits, &assessments, start());
        if expected.is_empty() {
            prop_assert_eq!(got, Eligibility::Eligible);
        } else {
            prop_assert_eq!(got, Eligibility::NotEligible(expected));
        }
    }

    #[test]
    fn order_of_the_records_does_not_matter(
        visits in visits(),
        assessments in assessments(),
        reversed_visits in any::<bool>(),
    ) {
        let forward = eligibility(&visits, &assessments, start());
        let mut other_assessments = assessments.clone();
        other_assessments.reverse();
        let mut other_visits = visits.clone();
        if reversed_visits {
            other_visits.reverse();
        }
        prop_assert_eq!(forward, eligibility(&other_visits, &other_assessments, start()));
    }

    #[test]
    fn a_revoked_assessment_never_makes_a_patient_eligible(
        visits in visits(),
        assessments in assessments(),
    ) {
        // Dropping every revoked assessment can only keep or remove "revoked"; it never turns a
        // not-eligible answer based on criteria into a different criteria answer.
        let without_revoked: Vec<Assessment> = assessments
            .iter()
            .filter(|a| a.revoked_at.is_none())
            .cloned()
            .collect();
        let with = eligibility(&visits, &assessments, start());
        let without = eligibility(&visits, &without_revoked, start());
        let criteria_part = |e: &Eligibility| -> Vec<Failure> {
            e.failures()
                .iter()
                .copied()
                .filter(|f| *f >= Failure::NotCognitivelyAble)
                .collect()
        };
        prop_assert_eq!(criteria_part(&with), criteria_part(&without));
        if with.is_eligible() {
            prop_assert!(without.is_eligible());
        }
    }
}
