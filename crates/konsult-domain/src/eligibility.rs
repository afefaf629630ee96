//! May this patient have a video consultation starting at a given instant?
//!
//! Source: the service description (seed `000_d8df4fec02b1ef05.txt`), "Forudsætninger for
//! brug/indikation" and "Målgruppe": the patient has been seen in the clinic before, and the
//! therapist has judged that the patient is cognitively and technically able to benefit from
//! video, that video is clinically relevant and patient-safe for the current problem, and that
//! it matches the patient's preference. Every failed criterion is named.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AssessmentId, PatientId, TherapistId, VisitId};

/// The therapist's judgement, criterion by criterion. `true` means the criterion is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct AssessmentCriteria {
    /// The patient is cognitively able to benefit from video (kognitivt i stand til).
    pub cognitively_able: bool,
    /// The patient is technically able to take part by video (teknisk i stand til).
    pub technically_able: bool,
    /// Video is clinically relevant for the patient's current problem (relevant behandling).
    pub clinically_relevant: bool,
    /// Video is patient-safe for the current problem (patientsikkert).
    pub patient_safe: bool,
    /// The patient prefers video (patientens præferencer).
    pub patient_prefers_video: bool,
}

impl AssessmentCriteria {
    /// All criteria met.
    pub const ALL_MET: AssessmentCriteria = AssessmentCriteria {
        cognitively_able: true,
        technically_able: true,
        clinically_relevant: true,
        patient_safe: true,
        patient_prefers_video: true,
    };

    /// The failures for the criteria not met, in field order; empty when all are met.
    pub fn failures(&self) -> Vec<Failure> {
        [
            (self.cognitively_able, Failure::NotCognitivelyAble),
            (self.technically_able, Failure::NotTechnicallyAble),
            (self.clinically_relevant, Failure::NotClinicallyRelevant),
            (self.patient_safe, Failure::NotPatientSafe),
            (
                self.patient_prefers_video,
                Failure::PatientDoesNotPreferVideo,
            ),
        ]
        .into_iter()
        .filter(|(met, _)| !met)
        .map(|(_, failure)| failure)
        .collect()
    }
}

/// A therapist's recorded assessment of one patient (the caller passes only that patient's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assessment {
    /// The assessment's id.
    pub id: AssessmentId,
    /// When the assessment was recorded.
    pub made_at: DateTime<Utc>,
    /// The therapist who made it.
    pub made_by: TherapistId,
    /// The judgement.
    pub criteria: AssessmentCriteria,
    /// When it was revoked, if it was. A revoked assessment never counts, whenever it was
    /// revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A recorded visit where the patient was seen physically in the clinic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InClinicVisit {
    /// The visit's id.
    pub id: VisitId,
    /// The patient seen.
    pub patient: PatientId,
    /// When the visit took place.
    pub at: DateTime<Utc>,
}

/// One reason a patient may not have a video consultation. Serialised as its stable snake_case
/// code; [`Failure::danish`] and [`Failure::english`] give the sentence to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// No in-clinic visit strictly before the start.
    NoInClinicVisitBefore,
    /// No assessment recorded at all.
    NoAssessment,
    /// The only assessments that could count have been revoked.
    AssessmentRevoked,
    /// An assessment exists, but only made after the start.
    AssessmentAfterStart,
    /// The assessment says the patient is not cognitively able.
    NotCognitivelyAble,
    /// The assessment says the patient is not technically able.
    NotTechnicallyAble,
    /// The assessment says video is not clinically relevant.
    NotClinicallyRelevant,
    /// The assessment says video is not patient-safe.
    NotPatientSafe,
    /// The assessment says the patient does not prefer video.
    PatientDoesNotPreferVideo,
}

impl Failure {
    /// Every failure, in the order they are reported.
    pub const ALL: [Failure; 9] = [
        Failure::NoInClinicVisitBefore,
        Failure::NoAssessment,
        Failure::AssessmentRevoked,
        Failure::AssessmentAfterStart,
        Failure::NotCognitivelyAble,
        Failure::NotTechnicallyAble,
        Failure::NotClinicallyRelevant,
        Failure::NotPatientSafe,
        Failure::PatientDoesNotPreferVideo,
    ];

    /// The stable code (same as the serde form), e.g. `not_patient_safe`.
    pub const fn code(self) -> &'static str {
        match self {
            Failure::NoInClinicVisitBefore => "no_in_clinic_visit_before",
            Failure::NoAssessment => "no_assessment",
            Failure::AssessmentRevoked => "assessment_revoked",
            Failure::AssessmentAfterStart => "assessment_after_start",
            Failure::NotCognitivelyAble => "not_cognitively_able",
            Failure::NotTechnicallyAble => "not_technically_able",
            Failure::NotClinicallyRelevant => "not_clinically_relevant",
            Failure::NotPatientSafe => "not_patient_safe",
            Failure::PatientDoesNotPreferVideo => "patient_does_not_prefer_video",
        }
    }

    /// The sentence shown to the therapist in Danish.
    pub const fn danish(self) -> &'static str {
        match self {
            Failure::NoInClinicVisitBefore => {
                "Patienten har ikke tidligere været set i klinikken."
            }
            Failure::NoAssessment => {
                "Der er ikke registreret en faglig vurdering af, om videokonsultation er egnet for patienten."
            }
            Failure::AssessmentRevoked => {
                "Den faglige vurdering af videokonsultation er tilbagekaldt."
            }
            Failure::AssessmentAfterStart => {
                "Den faglige vurdering er registreret efter konsultationens start."
            }
            Failure::NotCognitivelyAble => {
                "Patienten er vurderet ikke kognitivt i stand til at drage nytte af videokonsultation."
            }
            Failure::NotTechnicallyAble => {
                "Patienten er vurderet ikke teknisk i stand til at drage nytte af videokonsultation."
            }
            Failure::NotClinicallyRelevant => {
                "Videokonsultation er vurderet ikke fagligt relevant for patientens aktuelle problemstilling."
            }
            Failure::NotPatientSafe => {
                "Videokonsultation er vurderet ikke patientsikker for patientens aktuelle problemstilling."
            }
            Failure::PatientDoesNotPreferVideo => "Patienten foretrækker ikke videokonsultation.",
        }
    }

    /// The sentence shown to the therapist in English.
    pub const fn english(self) -> &'static str {
        match self {
            Failure::NoInClinicVisitBefore => "The patient has not been seen in the clinic before.",
            Failure::NoAssessment => {
                "No assessment of whether video consultation suits the patient has been recorded."
            }
            Failure::AssessmentRevoked => "The assessment for video consultation has been revoked.",
            Failure::AssessmentAfterStart => {
                "The assessment was recorded after the consultation started."
            }
            Failure::NotCognitivelyAble => {
                "The patient was assessed as not cognitively able to benefit from video consultation."
            }
            Failure::NotTechnicallyAble => {
                "The patient was assessed as not technically able to benefit from video consultation."
            }
            Failure::NotClinicallyRelevant => {
                "Video consultation was assessed as not clinically relevant for the patient's current problem."
            }
            Failure::NotPatientSafe => {
                "Video consultation was assessed as not patient-safe for the patient's current problem."
            }
            Failure::PatientDoesNotPreferVideo => "The patient does not prefer video consultation.",
        }
    }
}

/// Displays the code.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The outcome of the eligibility gate. Serialised as `"eligible"` or
/// `{"not_eligible": ["no_assessment", ...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eligibility {
    /// Every prerequisite is met.
    Eligible,
    /// At least one prerequisite failed; all failures, without duplicates, in the order of
    /// [`Failure::ALL`]. Never empty when made by [`eligibility`].
    NotEligible(Vec<Failure>),
}

impl Eligibility {
    /// Whether video may go ahead.
    pub fn is_eligible(&self) -> bool {
        matches!(self, Eligibility::Eligible)
    }

    /// The failures (empty when eligible).
    pub fn failures(&self) -> &[Failure] {
        match self {
            Eligibility::Eligible => &[],
            Eligibility::NotEligible(failures) => failures,
        }
    }
}

/// The assessment that counts for a consultation starting at `start`: the newest one that is
/// not revoked and was made at or before `start` (ties on `made_at` go to the greatest id, so
/// the answer does not depend on the order of the slice). `None` if there is no such assessment.
pub fn counting_assessment(
    assessments: &[Assessment],
    start: DateTime<Utc>,
) -> Option<&Assessment> {
    assessments
        .iter()
        .filter(|a| a.revoked_at.is_none() && a.made_at <= start)
        .max_by_key(|a| (a.made_at, a.id))
}

/// Decides whether a video consultation of one patient may start at `start`.
///
/// `visits` and `assessments` are that patient's. The rules, each failure named:
///
/// * [`Failure::NoInClinicVisitBefore`]: no visit with `at < start` (a visit earlier the same
///   day counts; one at or after the start does not).
/// * The assessment that counts is [`counting_assessment`]: the newest non-revoked one made at or
///   before `start`. If there is one, each criterion it does not meet is named
///   ([`Failure::NotCognitivelyAble`] … [`Failure::PatientDoesNotPreferVideo`]), and nothing is
///   said about other assessments (an older failed one or a newer revoked one is superseded).
/// * If none counts:
///   - no assessments at all → [`Failure::NoAssessment`];
///   - any revoked assessment → [`Failure::AssessmentRevoked`] (a revoked assessment never
///     counts, whenever it was made or revoked);
///   - any non-revoked assessment made after `start` → [`Failure::AssessmentAfterStart`];
///   - both of the last two can be named together.
///
/// Revoking therefore blocks video as long as no other non-revoked assessment made at or before
/// the start exists: to stop video for a patient with several standing assessments, revoke them
/// all or record a new assessment with the failed criteria.
pub fn eligibility(
    visits: &[InClinicVisit],
    assessments: &[Assessment],
    start: DateTime<Utc>,
) -> Eligibility {
    let mut failures = Vec::new();
    if !visits.iter().any(|visit| visit.at < start) {
        failures.push(Failure::NoInClinicVisitBefore);
    }
    match counting_assessment(assessments, start) {
        Some(assessment) => failures.extend(assessment.criteria.failures()),
        None if assessments.is_empty() => failures.push(Failure::NoAssessment),
        None => {
            if assessments.iter().any(|a| a.revoked_at.is_some()) {
                failures.push(Failure::AssessmentRevoked);
            }
            if assessments
                .iter()
                .any(|a| a.revoked_at.is_none() && a.made_at > start)
            {
                failures.push(Failure::AssessmentAfterStart);
            }
        }
    }
    if failures.is_empty() {
        Eligibility::Eligible
    } else {
        Eligibility::NotEligible(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn visit(time: &str) -> InClinicVisit {
        InClinicVisit {
            id: VisitId::from_uuid(Uuid::from_u128(100)),
            patient: PatientId::from_uuid(Uuid::from_u128(1)),
            at: at(time),
        }
    }

    fn assessment(
        n: u128,
        made_at: &str,
        criteria: AssessmentCriteria,
        revoked_at: Option<&str>,
    ) -> Assessment {
        Assessment {
            id: AssessmentId::from_uuid(Uuid::from_u128(n)),
            made_at: at(made_at),
            made_by: TherapistId::from_uuid(Uuid::from_u128(7)),
            criteria,
            revoked_at: revoked_at.map(at),
        }
    }

    const START: &str = "2026-03-10T09:00:00Z";

    #[test]
    fn all_met_is_eligible() {
        let result = eligibility(
            &[visit("2026-02-01T10:00:00Z")],
            &[assessment(
                1,
                "2026-02-01T10:30:00Z",
                AssessmentCriteria::ALL_MET,
                None,
            )],
            at(START),
        );
        assert_eq!(result, Eligibility::Eligible);
        assert!(result.is_eligible());
        assert!(result.failures().is_empty());
    }

    #[test]
    fn nothing_recorded_names_visit_and_assessment() {
        assert_eq!(
            eligibility(&[], &[], at(START)),
            Eligibility::NotEligible(vec![Failure::NoInClinicVisitBefore, Failure::NoAssessment])
        );
    }

    #[test]
    fn visit_must_be_strictly_before_start() {
        let ok = [assessment(
            1,
            "2026-02-01T10:30:00Z",
            AssessmentCriteria::ALL_MET,
            None,
        )];
        assert_eq!(
            eligibility(&[visit(START)], &ok, at(START)).failures(),
            &[Failure::NoInClinicVisitBefore]
        );
        assert_eq!(
            eligibility(&[visit("2026-03-11T09:00:00Z")], &ok, at(START)).failures(),
            &[Failure::NoInClinicVisitBefore]
        );
        // Earlier the same day counts.
        assert!(eligibility(&[visit("2026-03-10T07:00:00Z")], &ok, at(START)).is_eligible());
    }

    #[test]
    fn names_every_failed_criterion_and_only_those() {
        let criteria = AssessmentCriteria {
            cognitively_able: true,
            technically_able: false,
            clinically_relevant: true,
            patient_safe: false,
            patient_prefers_video: false,
        };
        assert_eq!(
            eligibility(
                &[visit("2026-02-01T10:00:00Z")],
                &[assessment(1, "2026-02-01T10:30:00Z", criteria, None)],
                at(START)
            ),
            Eligibility::NotEligible(vec![
                Failure::NotTechnicallyAble,
                Failure::NotPatientSafe,
                Failure::PatientDoesNotPreferVideo
            ])
        );
        assert_eq!(
            AssessmentCriteria::default().failures(),
            Failure::ALL[4..].to_vec()
        );
    }

    #[test]
    fn newest_revoked_and_no_other_is_revoked() {
        let assessments = [assessment(
            1,
            "2026-02-01T10:30:00Z",
            AssessmentCriteria::ALL_MET,
            Some("2026-03-01T10:00:00Z"),
        )];
        assert_eq!(
            eligibility(&[visit("2026-02-01T10:00:00Z")], &assessments, at(START)).failures(),
            &[Failure::AssessmentRevoked]
        );
    }

    #[test]
    fn revoked_later_than_start_still_never_counts() {
        let assessments = [assessment(
            1,
            "2026-02-01T10:30:00Z",
            AssessmentCriteria::ALL_MET,
            Some("2026-04-01T10:00:00Z"),
        )];
        assert_eq!(
            eligibility(&[visit("2026-02-01T10:00:00Z")], &assessments, at(START)).failures(),
            &[Failure::AssessmentRevoked]
        );
    }

    #[test]
    fn only_later_assessments_is_after_start() {
        let assessments = [assessment(
            1,
            "2026-03-10T09:00:01Z",
            AssessmentCriteria::ALL_MET,
            None,
        )];
        assert_eq!(
            eligibility(&[visit("2026-02-01T10:00:00Z")], &assessments, at(START)).failures(),
            &[Failure::AssessmentAfterStart]
        );
        // Made exactly at the start counts.
        let assessments = [assessment(1, START, AssessmentCriteria::ALL_MET, None)];
        assert!(
            eligibility(&[visit("2026-02-01T10:00:00Z")], &assessments, at(START)).is_eligible()
        );
    }

    #[test]
    fn revoked_earlier_and_later_one_names_both() {
        let assessments = [
            assessment(
                1,
                "2026-02-01T10:30:00Z",
                AssessmentCriteria::ALL_MET,
                Some("2026-03-01T00:00:00Z"),
            ),
            assessment(2, "2026-03-10T12:00:00Z", AssessmentCriteria::ALL_MET, None),
        ];
        assert_eq!(
            eligibility(&[visit("2026-02-01T10:00:00Z")], &assessments, at(START)).failures(),
            &[Failure::AssessmentRevoked, Failure::AssessmentAfterStart]
        );
    }

    #[test]
    fn newest_non_revoked_counts() {
        let failing = AssessmentCriteria {
            patient_safe: false,
            ..AssessmentCriteria::ALL_MET
        };
        let visits = [visit("2026-02-01T10:00:00Z")];
        // Older passing, newer failing: the newer one decides.
        let assessments = [
            assessment(1, "2026-02-01T10:30:00Z", AssessmentCriteria::ALL_MET, None),
            assessment(2, "2026-03-01T10:30:00Z", failing, None),
        ];
        assert_eq!(
            eligibility(&visits, &assessments, at(START)).failures(),
            &[Failure::NotPatientSafe]
        );
        // Newer failing one revoked: the older passing one counts again.
        let assessments = [
            assessment(1, "2026-02-01T10:30:00Z", AssessmentCriteria::ALL_MET, None),
            assessment(
                2,
                "2026-03-01T10:30:00Z",
                failing,
                Some("2026-03-02T00:00:00Z"),
            ),
        ];
        assert!(eligibility(&visits, &assessments, at(START)).is_eligible());
        // A failing one made after the start does not count yet.
        let assessments = [
            assessment(2, "2026-03-11T10:30:00Z", failing, None),
            assessment(1, "2026-02-01T10:30:00Z", AssessmentCriteria::ALL_MET, None),
        ];
        assert!(eligibility(&visits, &assessments, at(START)).is_eligible());
    }

    #[test]
    fn ties_do_not_depend_on_slice_order() {
        let failing = AssessmentCriteria {
            cognitively_able: false,
            ..AssessmentCriteria::ALL_MET
        };
        let a = assessment(1, "2026-02-01T10:30:00Z", AssessmentCriteria::ALL_MET, None);
        let b = assessment(2, "2026-02-01T10:30:00Z", failing, None);
        let visits = [visit("2026-02-01T10:00:00Z")];
        let forward = eligibility(&visits, &[a.clone(), b.clone()], at(START));
        let backward = eligibility(&visits, &[b, a], at(START));
        assert_eq!(forward, backward);
        assert_eq!(forward.failures(), &[Failure::NotCognitivelyAble]);
    }

    #[test]
    fn failure_codes_and_sentences() {
        for failure in Failure::ALL {
            assert_eq!(
                serde_json::to_string(&failure).unwrap(),
                format!("\"{}\"", failure.code())
            );
            assert!(failure.danish().ends_with('.') && failure.english().ends_with('.'));
        }
        let json =
            serde_json::to_string(&Eligibility::NotEligible(vec![Failure::NoAssessment])).unwrap();
        assert_eq!(json, r#"{"not_eligible":["no_assessment"]}"#);
        assert_eq!(
            serde_json::to_string(&Eligibility::Eligible).unwrap(),
            r#""eligible""#
        );
    }
}
