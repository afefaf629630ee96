//! Is an ended consultation a billable videokonsultation, and with which line?
//!
//! Source: the service description (seed `000_d8df4fec02b1ef05.txt`): "Der kan kun gives et
//! honorar pr. konsultation og kun 1 konsultation/hold pr. kalenderdag", and the IT solution must
//! allow two-way communication. The calendar day is the Danish one of the actual start.
//!
//! [`decide_billing`] is pure and idempotent: the store feeds it the patient's existing lines,
//! saves a returned line only if it is not already among them, and can call it again after a
//! crash without ever billing twice.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::danish_day;
use crate::eligibility::{Eligibility, Failure, InClinicVisit};
use crate::fees::NoValidFee;
use crate::ids::{BillingLineId, ConsultationId, PatientId};
use crate::lifecycle::{Evidence, EvidencePolicy};
use crate::money::{shares, Money, PayerShares};
use crate::regulation::{FeeSchedule, PriceError};
use crate::service::{ServiceKind, ServiceNumber, Speciale};

/// How a consultation ended, as far as billing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ConsultationOutcome {
    /// The call took place and was completed with a journal note.
    Held {
        /// When the call actually started (not when it was scheduled); decides the calendar day.
        started_at: DateTime<Utc>,
        /// The strongest evidence that both sides' media actually flowed, if any.
        two_way: Option<Evidence>,
    },
    /// The therapist closed the consultation as a technical failure (whatever flowed before).
    TechnicalFailure,
    /// Cancelled before it took place.
    Cancelled,
    /// The patient did not show up.
    NoShow,
}

/// What billing needs to know about one ended consultation of one patient.
///
/// For a group (hold) consultation, decide once per participating patient with the same
/// consultation id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsultationFacts {
    /// The consultation.
    pub id: ConsultationId,
    /// The patient the line would be for.
    pub patient: PatientId,
    /// Individual or group (hold) video.
    pub kind: ServiceKind,
    /// The speciale of the patient's course.
    pub speciale: Speciale,
    /// How it ended.
    pub outcome: ConsultationOutcome,
    /// The eligibility gate's answer recorded when the consultation started (a later revocation
    /// does not change what was true at the start).
    pub eligibility_at_start: Eligibility,
    /// Which evidence of two-way media the clinic accepts.
    pub evidence_policy: EvidencePolicy,
    /// Whether the patient's personal data has been erased or the patient deactivated: such a
    /// patient is never billed.
    pub patient_inactive: bool,
}

/// A billable videokonsultation: one fee for one patient's consultation on one Danish day.
///
/// The store gives it a [`crate::ids::BillingLineId`] when it saves it. Once exported a line is
/// immutable; corrections are new lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BillingLine {
    /// The consultation billed.
    pub consultation: ConsultationId,
    /// The patient billed for.
    pub patient: PatientId,
    /// Individual or group (hold) video.
    pub kind: ServiceKind,
    /// The service number valid on the calendar day, e.g. `0131`.
    pub service_number: ServiceNumber,
    /// The speciale billed under.
    pub speciale: Speciale,
    /// The fee valid on the calendar day.
    pub fee: Money,
    /// Region's and patient's shares of the fee.
    pub shares: PayerShares,
    /// The Danish calendar day of the actual start.
    pub calendar_day: NaiveDate,
    /// What the evidence of two-way media rests on. Lines decided before evidence was recorded
    /// read as [`Evidence::ClientReported`].
    #[serde(default = "weakest_evidence")]
    pub evidence: Evidence,
    /// How the fee was derived ([`crate::regulation::FeeReference::code`]), e.g.
    /// `30795@2022-10-01;2023-04-01+1.06%;2024-04-01+2.77%`. Empty on lines decided before fees
    /// were regulated.
    #[serde(default)]
    pub fee_reference: String,
    /// A regulation date up to the calendar day had no recorded step when the line was decided:
    /// the fee is the best known one and can be re-priced ([`reprice`]) once the step is recorded.
    #[serde(default)]
    pub fee_unconfirmed: bool,
}

fn weakest_evidence() -> Evidence {
    Evidence::ClientReported
}

/// Why an ended consultation gives no billing line. Serialised with a stable snake_case `code`
/// field plus the variant's data; [`NotBillableReason::danish`] / [`NotBillableReason::english`]
/// tell the therapist why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum NotBillableReason {
    /// Both sides' media never flowed.
    NoTwoWayMedia,
    /// Media flowed both ways by the clients' reports only, and the clinic requires media
    /// observed by Konsult's relay.
    RelayEvidenceRequired,
    /// The therapist closed the consultation as a technical failure.
    TechnicalFailure,
    /// Another consultation of the patient is already billed on this Danish day.
    AlreadyBilledThatDay {
        /// The Danish day.
        day: NaiveDate,
        /// The consultation that holds the day's line.
        billed_consultation: ConsultationId,
    },
    /// The patient had an in-clinic visit on this Danish day.
    InClinicVisitThatDay {
        /// The Danish day.
        day: NaiveDate,
    },
    /// The eligibility gate failed at the start.
    NotEligibleAtStart {
        /// What failed.
        failures: Vec<Failure>,
    },
    /// The consultation was cancelled.
    Cancelled,
    /// The patient did not show up.
    NoShow,
    /// The fee table has no row for the service, speciale and day.
    NoValidFee(NoValidFee),
    /// The regulated fee left the sane range of 0–400 kr: the table or a step is wrong.
    FeeOutOfRange {
        /// The fee the table and steps give.
        fee: Money,
    },
    /// The patient's data was erased or the patient deactivated.
    PatientInactive,
    /// The consultation's line was reversed; deciding again may bill it anew. (Recorded by the
    /// ledger, never returned by [`decide_billing`].)
    Reversed {
        /// The reversed line.
        line: BillingLineId,
    },
}

impl NotBillableReason {
    /// The stable code (same as the serde `code` field), e.g. `already_billed_that_day`.
    pub const fn code(&self) -> &'static str {
        match self {
            NotBillableReason::NoTwoWayMedia => "no_two_way_media",
            NotBillableReason::RelayEvidenceRequired => "relay_evidence_required",
            NotBillableReason::TechnicalFailure => "technical_failure",
            NotBillableReason::AlreadyBilledThatDay { .. } => "already_billed_that_day",
            NotBillableReason::InClinicVisitThatDay { .. } => "in_clinic_visit_that_day",
            NotBillableReason::NotEligibleAtStart { .. } => "not_eligible_at_start",
            NotBillableReason::Cancelled => "cancelled",
            NotBillableReason::NoShow => "no_show",
            NotBillableReason::NoValidFee(_) => "no_valid_fee",
            NotBillableReason::FeeOutOfRange { .. } => "fee_out_of_range",
            NotBillableReason::PatientInactive => "patient_inactive",
            NotBillableReason::Reversed { .. } => "reversed",
        }
    }

    /// Why, in Danish, for the therapist.
    pub fn danish(&self) -> String {
        let one_per_day = "Der kan kun afregnes 1 konsultation/hold pr. kalenderdag.";
        match self {
            NotBillableReason::NoTwoWayMedia => "Der blev ikke etableret tovejs lyd og billede \
                mellem fysioterapeut og patient, så konsultationen kan ikke afregnes som \
                videokonsultation."
                .to_owned(),
            NotBillableReason::RelayEvidenceRequired => "Lyd og billede gik begge veje ifølge \
                deltagernes egne målinger, men klinikken kræver, at Konsults relæ har set det. \
                Konsultationen kan ikke afregnes."
                .to_owned(),
            NotBillableReason::TechnicalFailure => {
                "Konsultationen blev afsluttet som teknisk fejl.".to_owned()
            }
            NotBillableReason::AlreadyBilledThatDay { day, .. } => format!(
                "Patienten har allerede en afregnet konsultation den {}. {one_per_day}",
                danish_date(*day)
            ),
            NotBillableReason::InClinicVisitThatDay { day } => format!(
                "Patienten har været til konsultation i klinikken den {}. {one_per_day}",
                danish_date(*day)
            ),
            NotBillableReason::NotEligibleAtStart { failures } => {
                let mut text =
                    String::from("Betingelserne for videokonsultation var ikke opfyldt ved start.");
                for failure in failures {
                    text.push(' ');
                    text.push_str(failure.danish());
                }
                text
            }
            NotBillableReason::Cancelled => "Konsultationen blev aflyst.".to_owned(),
            NotBillableReason::NoShow => "Patienten mødte ikke op.".to_owned(),
            NotBillableReason::NoValidFee(missing) => format!(
                "Honorartabellen har intet gyldigt honorar for {} under speciale {} den {}. \
                 Kontakt klinikkens administrator.",
                missing.kind.danish_name(),
                missing.speciale.code(),
                danish_date(missing.day)
            ),
            NotBillableReason::FeeOutOfRange { fee } => format!(
                "Honorartabellen giver et honorar på {fee}, som ligger uden for 0–400 kr. \
                 Kontakt klinikkens administrator."
            ),
            NotBillableReason::PatientInactive => "Patientens oplysninger er slettet, eller \
                patienten er deaktiveret. Der kan ikke afregnes for patienten."
                .to_owned(),
            NotBillableReason::Reversed { .. } => "Afregningslinjen er tilbageført. \
                Konsultationen kan afgøres igen."
                .to_owned(),
        }
    }

    /// Why, in English, for the therapist.
    pub fn english(&self) -> String {
        let one_per_day = "Only one consultation or group session per calendar day can be billed.";
        match self {
            NotBillableReason::NoTwoWayMedia => "Two-way audio and video between therapist and \
                patient was never established, so this cannot be billed as a video consultation."
                .to_owned(),
            NotBillableReason::RelayEvidenceRequired => "Two-way media was reported by the \
                participants' own devices only, and the clinic requires media observed by \
                Konsult's relay. This cannot be billed."
                .to_owned(),
            NotBillableReason::TechnicalFailure => {
                "The consultation was closed as a technical failure.".to_owned()
            }
            NotBillableReason::AlreadyBilledThatDay { day, .. } => {
                format!("The patient already has a billed consultation on {day}. {one_per_day}")
            }
            NotBillableReason::InClinicVisitThatDay { day } => {
                format!("The patient had an in-clinic consultation on {day}. {one_per_day}")
            }
            NotBillableReason::NotEligibleAtStart { failures } => {
                let mut text = String::from(
                    "The conditions for video consultation were not met at the start.",
                );
                for failure in failures {
                    text.push(' ');
                    text.push_str(failure.english());
                }
                text
            }
            NotBillableReason::Cancelled => "The consultation was cancelled.".to_owned(),
            NotBillableReason::NoShow => "The patient did not show up.".to_owned(),
            NotBillableReason::NoValidFee(missing) => format!(
                "The fee table has no valid fee for {} under speciale {} on {}. \
                 Contact the clinic's administrator.",
                missing.kind.english_name(),
                missing.speciale.code(),
                missing.day
            ),
            NotBillableReason::FeeOutOfRange { fee } => format!(
                "The fee table gives a fee of {fee}, outside 0–400 kr. \
                 Contact the clinic's administrator."
            ),
            NotBillableReason::PatientInactive => "The patient's data was erased or the \
                patient deactivated. Nothing can be billed for the patient."
                .to_owned(),
            NotBillableReason::Reversed { .. } => "The billing line was reversed. The \
                consultation can be decided again."
                .to_owned(),
        }
    }
}

/// `25.10.2026`, the way Danish text writes a date.
fn danish_date(day: NaiveDate) -> String {
    day.format("%d.%m.%Y").to_string()
}

/// The decision for one patient's ended consultation. Serialised as `{"billable": {...}}` or
/// `{"not_billable": {"code": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingDecision {
    /// Bill this line (or keep it: it may be the line that already exists).
    Billable(BillingLine),
    /// No line, and why.
    NotBillable(NotBillableReason),
}

/// Decides whether a patient's ended consultation is billable.
///
/// `active_lines` are the lines in force (reversed lines and reversals left out) and `visits` the
/// in-clinic visits; entries of other patients are ignored. The checks, first match wins:
///
/// 1. An active line for this consultation and patient already exists → that same line,
///    unchanged (idempotent: deciding again never makes a second line, whatever changed since).
///    A reversed line is not active, so a consultation whose line was reversed is decided anew.
/// 2. The patient's data is erased or the patient deactivated →
///    [`NotBillableReason::PatientInactive`].
/// 3. Cancelled → [`NotBillableReason::Cancelled`]; no-show → [`NotBillableReason::NoShow`];
///    technical failure → [`NotBillableReason::TechnicalFailure`].
/// 4. Media did not flow both ways → [`NotBillableReason::NoTwoWayMedia`]; it did by evidence
///    the clinic's [`EvidencePolicy`] does not accept → [`NotBillableReason::RelayEvidenceRequired`].
/// 5. Not eligible at the start → [`NotBillableReason::NotEligibleAtStart`] with the failures.
/// 6. Calendar day = [`danish_day`] of the actual start. Another active line of the patient on
///    that day → [`NotBillableReason::AlreadyBilledThatDay`].
/// 7. An in-clinic visit of the patient on that day →
///    [`NotBillableReason::InClinicVisitThatDay`] (the agreement allows one consultation per
///    calendar day; [`visit_conflicts`] gives the same result when the visit is recorded later).
/// 8. No fee row for kind, speciale and day → [`NotBillableReason::NoValidFee`]; a regulated fee
///    outside 0–400 kr → [`NotBillableReason::FeeOutOfRange`].
/// 9. Otherwise billable, with the day's service number, the regulated fee, [`shares`] of it and
///    the fee's reference (marked unconfirmed when a regulation step is missing).
pub fn decide_billing(
    facts: &ConsultationFacts,
    active_lines: &[BillingLine],
    visits: &[InClinicVisit],
    fees: &FeeSchedule,
) -> BillingDecision {
    use BillingDecision::{Billable, NotBillable};

    let patient_lines = || {
        active_lines
            .iter()
            .filter(|line| line.patient == facts.patient)
    };
    if let Some(line) = patient_lines().find(|line| line.consultation == facts.id) {
        return Billable(line.clone());
    }
    if facts.patient_inactive {
        return NotBillable(NotBillableReason::PatientInactive);
    }

    let (started_at, evidence) = match facts.outcome {
        ConsultationOutcome::Cancelled => return NotBillable(NotBillableReason::Cancelled),
        ConsultationOutcome::NoShow => return NotBillable(NotBillableReason::NoShow),
        ConsultationOutcome::TechnicalFailure => {
            return NotBillable(NotBillableReason::TechnicalFailure)
        }
        ConsultationOutcome::Held { two_way: None, .. } => {
            return NotBillable(NotBillableReason::NoTwoWayMedia)
        }
        ConsultationOutcome::Held {
            started_at,
            two_way: Some(evidence),
        } => (started_at, evidence),
    };
    if !facts.evidence_policy.accepts(evidence) {
        return NotBillable(NotBillableReason::RelayEvidenceRequired);
    }

    if let Eligibility::NotEligible(failures) = &facts.eligibility_at_start {
        return NotBillable(NotBillableReason::NotEligibleAtStart {
            failures: failures.clone(),
        });
    }

    let day = danish_day(started_at);
    if let Some(line) = patient_lines().find(|line| line.calendar_day == day) {
        return NotBillable(NotBillableReason::AlreadyBilledThatDay {
            day,
            billed_consultation: line.consultation,
        });
    }
    if visits
        .iter()
        .any(|visit| visit.patient == facts.patient && danish_day(visit.at) == day)
    {
        return NotBillable(NotBillableReason::InClinicVisitThatDay { day });
    }

    match fees.price(facts.kind, facts.speciale, day) {
        Err(PriceError::NoValidFee(missing)) => NotBillable(NotBillableReason::NoValidFee(missing)),
        Err(PriceError::OutOfRange(fee)) => NotBillable(NotBillableReason::FeeOutOfRange { fee }),
        Ok(priced) => Billable(BillingLine {
            consultation: facts.id,
            patient: facts.patient,
            kind: facts.kind,
            service_number: priced.service_number,
            speciale: facts.speciale,
            fee: priced.fee,
            shares: shares(facts.speciale, priced.fee),
            calendar_day: day,
            evidence,
            fee_unconfirmed: priced.reference.unconfirmed(),
            fee_reference: priced.reference.code(),
        }),
    }
}

/// The line that reverses `line`: the same line with fee and shares negated, so the two sum to
/// zero share for share.
pub fn reversal(line: &BillingLine) -> BillingLine {
    let negate = |m: Money| Money::from_ore(-m.ore());
    BillingLine {
        fee: negate(line.fee),
        shares: PayerShares {
            region: negate(line.shares.region),
            patient: negate(line.shares.patient),
        },
        ..line.clone()
    }
}

/// The active video lines an in-clinic visit conflicts with: the visit's patient's lines on the
/// visit's Danish day. The agreement allows one consultation per patient per calendar day, so a
/// visit recorded after the video line was billed gives the same result as a visit recorded
/// first ([`NotBillableReason::InClinicVisitThatDay`]): the conflicting lines are reversed and
/// the therapist told.
pub fn visit_conflicts<'a>(
    visit: &InClinicVisit,
    active_lines: &'a [BillingLine],
) -> Vec<&'a BillingLine> {
    let day = danish_day(visit.at);
    active_lines
        .iter()
        .filter(|line| line.patient == visit.patient && line.calendar_day == day)
        .collect()
}

/// The line `line` becomes under the fee schedule as it is now, or `None` when nothing the region
/// sees would change: the same fee and service number, and either still unconfirmed or derived the
/// same way. A line priced before fees were regulated is left as it is. So recording the last
/// missing step (the fee becomes confirmed), correcting a step, or a new fee replaces the line;
/// recording one of several missing steps of an unconfirmed line at an unchanged fee does not. The
/// new line keeps the consultation, patient, day and evidence; the fee, service number, shares and
/// reference are the schedule's.
pub fn reprice(line: &BillingLine, fees: &FeeSchedule) -> Option<BillingLine> {
    if line.fee_reference.is_empty() && !line.fee_unconfirmed {
        // Priced before fees were regulated: its fee stands as exported.
        return None;
    }
    let priced = fees
        .price(line.kind, line.speciale, line.calendar_day)
        .ok()?;
    let new = BillingLine {
        service_number: priced.service_number,
        fee: priced.fee,
        shares: shares(line.speciale, priced.fee),
        fee_unconfirmed: priced.reference.unconfirmed(),
        fee_reference: priced.reference.code(),
        ..line.clone()
    };
    // A line that stays unconfirmed at the same fee is left alone (recording
    // one of several missing steps changes nothing the region sees); a line
    // that becomes confirmed, or whose confirmed derivation changed (a
    // corrected step), or whose fee or number changed is replaced.
    let changed = new.fee != line.fee
        || new.service_number != line.service_number
        || (!new.fee_unconfirmed && new.fee_reference != line.fee_reference);
    changed.then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fees::{FeeRow, FeeTable};
    use crate::ids::VisitId;
    use crate::regulation::Regulations;
    use uuid::Uuid;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    const PATIENT: PatientId = PatientId::from_uuid(Uuid::from_u128(1));

    fn consultation(n: u128) -> ConsultationId {
        ConsultationId::from_uuid(Uuid::from_u128(n))
    }

    fn held(n: u128, started_at: &str) -> ConsultationFacts {
        ConsultationFacts {
            id: consultation(n),
            patient: PATIENT,
            kind: ServiceKind::IndividualVideo,
            speciale: Speciale::Almen,
            outcome: ConsultationOutcome::Held {
                started_at: at(started_at),
                two_way: Some(Evidence::ClientReported),
            },
            eligibility_at_start: Eligibility::Eligible,
            evidence_policy: EvidencePolicy::ClientReported,
            patient_inactive: false,
        }
    }

    fn line_of(decision: BillingDecision) -> BillingLine {
        match decision {
            BillingDecision::Billable(line) => line,
            other => panic!("expected a line, got {other:?}"),
        }
    }

    fn reason_of(decision: BillingDecision) -> NotBillableReason {
        match decision {
            BillingDecision::NotBillable(reason) => reason,
            other => panic!("expected no line, got {other:?}"),
        }
    }

    #[test]
    fn bills_an_eligible_two_way_consultation() {
        let fees = FeeSchedule::published();
        let line = line_of(decide_billing(
            &held(1, "2026-05-04T08:00:00Z"),
            &[],
            &[],
            &fees,
        ));
        assert_eq!(
            line,
            BillingLine {
                consultation: consultation(1),
                patient: PATIENT,
                kind: ServiceKind::IndividualVideo,
                service_number: ServiceNumber::INDIVIDUAL_VIDEO_2024,
                speciale: Speciale::Almen,
                // 307,95 kr at the October 2022 level, +1,06 % and +2,77 %.
                fee: Money::from_ore(31983),
                shares: PayerShares {
                    region: Money::from_ore(12569),
                    patient: Money::from_ore(19414)
                },
                calendar_day: date("2026-05-04"),
                evidence: Evidence::ClientReported,
                fee_reference: "30795@2022-10-01;2023-04-01+1.06%;2024-04-01+2.77%;\
                    unconfirmed:2023-10-01,2024-10-01,2025-04-01,2025-10-01,2026-04-01"
                    .to_owned(),
                fee_unconfirmed: true,
            }
        );
    }

    #[test]
    fn calendar_day_is_the_danish_day_of_the_actual_start() {
        let fees = FeeSchedule::published();
        let line = line_of(decide_billing(
            &held(1, "2026-10-24T22:30:00Z"),
            &[],
            &[],
            &fees,
        ));
        assert_eq!(line.calendar_day, date("2026-10-25"));
        let line = line_of(decide_billing(
            &held(1, "2026-03-28T23:30:00Z"),
            &[],
            &[],
            &fees,
        ));
        assert_eq!(line.calendar_day, date("2026-03-29"));
    }

    #[test]
    fn vederlagsfri_hold_line() {
        let fees = FeeSchedule::published();
        let facts = ConsultationFacts {
            kind: ServiceKind::HoldVideo,
            speciale: Speciale::Vederlagsfri,
            ..held(1, "2026-05-04T08:00:00Z")
        };
        let line = line_of(decide_billing(&facts, &[], &[], &fees));
        assert_eq!(line.service_number, ServiceNumber::HOLD_VIDEO_2024);
        assert_eq!(line.fee, Money::from_ore(23137));
        assert_eq!(line.shares.patient, Money::ZERO);
    }

    #[test]
    fn deciding_again_returns_the_same_line() {
        let fees = FeeSchedule::published();
        let facts = held(1, "2026-05-04T08:00:00Z");
        let line = line_of(decide_billing(&facts, &[], &[], &fees));
        let again = decide_billing(&facts, std::slice::from_ref(&line), &[], &fees);
        assert_eq!(again, BillingDecision::Billable(line.clone()));
        // Even if the fee table changed in between, the existing line stands.
        let newer = FeeSchedule::new(
            FeeTable::new(vec![FeeRow {
                fee: Money::from_ore(40000),
                ..fees.table().rows()[0].clone()
            }])
            .unwrap(),
            Regulations::default(),
        );
        assert_eq!(
            decide_billing(&facts, std::slice::from_ref(&line), &[], &newer),
            BillingDecision::Billable(line)
        );
    }

    #[test]
    fn second_consultation_the_same_danish_day_is_not_billed() {
        let fees = FeeSchedule::published();
        // 22:30Z on the 24th and 20:00Z on the 25th are both 2026-10-25 in Denmark.
        let first = line_of(decide_billing(
            &held(1, "2026-10-24T22:30:00Z"),
            &[],
            &[],
            &fees,
        ));
        let second = decide_billing(&held(2, "2026-10-25T20:00:00Z"), &[first], &[], &fees);
        let reason = reason_of(second);
        assert_eq!(
            reason,
            NotBillableReason::AlreadyBilledThatDay {
                day: date("2026-10-25"),
                billed_consultation: consultation(1)
            }
        );
        assert_eq!(
            reason.danish(),
            "Patienten har allerede en afregnet konsultation den 25.10.2026. \
             Der kan kun afregnes 1 konsultation/hold pr. kalenderdag."
        );
        assert!(reason.english().contains("2026-10-25"));
    }

    #[test]
    fn the_next_danish_day_is_billable_again() {
        let fees = FeeSchedule::published();
        let first = line_of(decide_billing(
            &held(1, "2026-10-25T08:00:00Z"),
            &[],
            &[],
            &fees,
        ));
        // 23:00Z on the 25th is 00:00 on the 26th (winter time).
        let second = decide_billing(&held(2, "2026-10-25T23:00:00Z"), &[first], &[], &fees);
        assert_eq!(line_of(second).calendar_day, date("2026-10-26"));
    }

    #[test]
    fn other_patients_lines_and_visits_do_not_count() {
        let fees = FeeSchedule::published();
        let other = PatientId::from_uuid(Uuid::from_u128(99));
        let mut other_line = line_of(decide_billing(
            &held(5, "2026-05-04T07:00:00Z"),
            &[],
            &[],
            &fees,
        ));
        other_line.patient = other;
        let other_visit = InClinicVisit {
            id: VisitId::from_uuid(Uuid::from_u128(3)),
            patient: other,
            at: at("2026-05-04T06:00:00Z"),
        };
        // Same consultation id for another patient (a hold) is not this patient's line either.
        let mut hold_line = other_line.clone();
        hold_line.consultation = consultation(1);
        let decision = decide_billing(
            &held(1, "2026-05-04T08:00:00Z"),
            &[other_line, hold_line],
            &[other_visit],
            &fees,
        );
        assert_eq!(line_of(decision).patient, PATIENT);
    }

    #[test]
    fn in_clinic_visit_the_same_day_blocks_billing() {
        let fees = FeeSchedule::published();
        let visit = InClinicVisit {
            id: VisitId::from_uuid(Uuid::from_u128(3)),
            patient: PATIENT,
            // 22:15Z on 28 March is 23:15 Danish time on 28 March…
            at: at("2026-03-28T22:15:00Z"),
        };
        // …and 23:30Z is 00:30 on the 29th: different Danish days, billable.
        let decision = decide_billing(
            &held(1, "2026-03-28T23:30:00Z"),
            &[],
            std::slice::from_ref(&visit),
            &fees,
        );
        assert!(matches!(decision, BillingDecision::Billable(_)));
        // 21:00Z is the 28th as well: blocked.
        let reason = reason_of(decide_billing(
            &held(1, "2026-03-28T21:00:00Z"),
            &[],
            &[visit],
            &fees,
        ));
        assert_eq!(
            reason,
            NotBillableReason::InClinicVisitThatDay {
                day: date("2026-03-28")
            }
        );
        assert!(reason.danish().contains("28.03.2026"));
    }

    #[test]
    fn no_two_way_media_cancelled_no_show() {
        let fees = FeeSchedule::published();
        let mut facts = held(1, "2026-05-04T08:00:00Z");
        facts.outcome = ConsultationOutcome::Held {
            started_at: at("2026-05-04T08:00:00Z"),
            two_way: None,
        };
        assert_eq!(
            reason_of(decide_billing(&facts, &[], &[], &fees)),
            NotBillableReason::NoTwoWayMedia
        );
        facts.outcome = ConsultationOutcome::TechnicalFailure;
        assert_eq!(
            reason_of(decide_billing(&facts, &[], &[], &fees)),
            NotBillableReason::TechnicalFailure
        );
        facts.outcome = ConsultationOutcome::Cancelled;
        assert_eq!(
            reason_of(decide_billing(&facts, &[], &[], &fees)),
            NotBillableReason::Cancelled
        );
        facts.outcome = ConsultationOutcome::NoShow;
        assert_eq!(
            reason_of(decide_billing(&facts, &[], &[], &fees)),
            NotBillableReason::NoShow
        );
    }

    #[test]
    fn not_eligible_at_start_names_the_failures() {
        let fees = FeeSchedule::published();
        let facts = ConsultationFacts {
            eligibility_at_start: Eligibility::NotEligible(vec![
                Failure::NoInClinicVisitBefore,
                Failure::NotPatientSafe,
            ]),
            ..held(1, "2026-05-04T08:00:00Z")
        };
        let reason = reason_of(decide_billing(&facts, &[], &[], &fees));
        assert_eq!(
            reason,
            NotBillableReason::NotEligibleAtStart {
                failures: vec![Failure::NoInClinicVisitBefore, Failure::NotPatientSafe]
            }
        );
        assert!(reason.danish().contains(Failure::NotPatientSafe.danish()));
        assert!(reason
            .english()
            .contains(Failure::NoInClinicVisitBefore.english()));
    }

    #[test]
    fn no_valid_fee_is_not_billed_at_zero() {
        let fees = FeeSchedule::published();
        let reason = reason_of(decide_billing(
            &held(1, "2023-06-01T08:00:00Z"),
            &[],
            &[],
            &fees,
        ));
        assert_eq!(
            reason,
            NotBillableReason::NoValidFee(NoValidFee {
                kind: ServiceKind::IndividualVideo,
                speciale: Speciale::Almen,
                day: date("2023-06-01")
            })
        );
        assert!(reason
            .danish()
            .contains("individuel videokonsultation under speciale 51"));
    }

    #[test]
    fn serde_forms() {
        let reason = NotBillableReason::InClinicVisitThatDay {
            day: date("2026-03-28"),
        };
        assert_eq!(
            serde_json::to_string(&reason).unwrap(),
            r#"{"code":"in_clinic_visit_that_day","day":"2026-03-28"}"#
        );
        let reason = NotBillableReason::NoValidFee(NoValidFee {
            kind: ServiceKind::IndividualVideo,
            speciale: Speciale::Almen,
            day: date("2023-06-01"),
        });
        let json = serde_json::to_string(&BillingDecision::NotBillable(reason.clone())).unwrap();
        assert_eq!(
            json,
            r#"{"not_billable":{"code":"no_valid_fee","kind":"individual_video","speciale":51,"day":"2023-06-01"}}"#
        );
        assert_eq!(
            serde_json::from_str::<BillingDecision>(&json).unwrap(),
            BillingDecision::NotBillable(reason)
        );
        let fees = FeeSchedule::published();
        let decision = decide_billing(&held(1, "2026-05-04T08:00:00Z"), &[], &[], &fees);
        let json = serde_json::to_value(&decision).unwrap();
        assert_eq!(json["billable"]["fee"], 31983);
        assert_eq!(json["billable"]["service_number"], "0131");
        assert_eq!(json["billable"]["shares"]["region"], 12569);
        assert_eq!(json["billable"]["fee_unconfirmed"], true);
        assert_eq!(
            serde_json::from_value::<BillingDecision>(json).unwrap(),
            decision
        );
        for reason in [
            NotBillableReason::Cancelled,
            NotBillableReason::NoShow,
            NotBillableReason::NoTwoWayMedia,
        ] {
            let json = serde_json::to_value(&reason).unwrap();
            assert_eq!(json["code"], reason.code());
        }
        let outcome = ConsultationOutcome::Held {
            started_at: at("2026-05-04T08:00:00Z"),
            two_way: Some(Evidence::RelayObserved),
        };
        assert_eq!(
            serde_json::to_string(&outcome).unwrap(),
            r#"{"outcome":"held","started_at":"2026-05-04T08:00:00Z","two_way":"relay_observed"}"#
        );
    }

    #[test]
    fn the_clinics_evidence_policy_decides_which_evidence_bills() {
        let fees = FeeSchedule::published();
        let mut facts = held(1, "2026-05-04T08:00:00Z");
        facts.evidence_policy = EvidencePolicy::RelayObserved;
        assert_eq!(
            reason_of(decide_billing(&facts, &[], &[], &fees)),
            NotBillableReason::RelayEvidenceRequired
        );
        facts.outcome = ConsultationOutcome::Held {
            started_at: at("2026-05-04T08:00:00Z"),
            two_way: Some(Evidence::RelayObserved),
        };
        let line = line_of(decide_billing(&facts, &[], &[], &fees));
        assert_eq!(line.evidence, Evidence::RelayObserved);
        // A line stored before evidence was recorded reads as client-reported.
        let mut json = serde_json::to_value(&line).unwrap();
        json.as_object_mut().unwrap().remove("evidence");
        let old: BillingLine = serde_json::from_value(json).unwrap();
        assert_eq!(old.evidence, Evidence::ClientReported);
    }

    #[test]
    fn an_inactive_patient_is_never_billed() {
        let fees = FeeSchedule::published();
        let facts = ConsultationFacts {
            patient_inactive: true,
            ..held(1, "2026-05-04T08:00:00Z")
        };
        let reason = reason_of(decide_billing(&facts, &[], &[], &fees));
        assert_eq!(reason, NotBillableReason::PatientInactive);
        assert_eq!(reason.code(), "patient_inactive");
    }

    #[test]
    fn a_reversed_line_leaves_the_consultation_to_be_decided_again() {
        let fees = FeeSchedule::published();
        let facts = held(1, "2026-05-04T08:00:00Z");
        let line = line_of(decide_billing(&facts, &[], &[], &fees));
        let back = reversal(&line);
        assert_eq!(line.fee.ore() + back.fee.ore(), 0);
        assert_eq!(line.shares.region.ore() + back.shares.region.ore(), 0);
        assert_eq!(line.shares.patient.ore() + back.shares.patient.ore(), 0);
        // With the line no longer active, deciding again gives a new line of the same day.
        let again = line_of(decide_billing(&facts, &[], &[], &fees));
        assert_eq!(again, line);
    }

    #[test]
    fn a_visit_recorded_after_the_line_conflicts_with_it() {
        let fees = FeeSchedule::published();
        let line = line_of(decide_billing(
            &held(1, "2026-03-28T21:00:00Z"),
            &[],
            &[],
            &fees,
        ));
        let visit = |at_text| InClinicVisit {
            id: VisitId::from_uuid(Uuid::from_u128(3)),
            patient: PATIENT,
            at: at(at_text),
        };
        let lines = [line];
        // Same Danish day (28 March): conflict, whatever the hour.
        assert_eq!(
            visit_conflicts(&visit("2026-03-28T06:00:00Z"), &lines).len(),
            1
        );
        // 23:30Z is the 29th in Denmark: no conflict.
        assert!(visit_conflicts(&visit("2026-03-28T23:30:00Z"), &lines).is_empty());
    }

    #[test]
    fn an_unconfirmed_line_is_repriced_once_the_steps_arrive() {
        let fees = FeeSchedule::published();
        let line = line_of(decide_billing(
            &held(1, "2024-06-01T08:00:00Z"),
            &[],
            &[],
            &fees,
        ));
        assert!(line.fee_unconfirmed);
        assert_eq!(reprice(&line, &fees), None, "nothing new: stays as it is");
        let confirmed = FeeSchedule::new(
            FeeTable::default_table(),
            Regulations::published()
                .with(vec![crate::regulation::RegulationStep {
                    speciale: Speciale::Almen,
                    effective_from: date("2023-10-01"),
                    change: crate::regulation::StepChange::Percent { ppm: 0 },
                    source: "test".into(),
                }])
                .unwrap(),
        );
        let new = reprice(&line, &confirmed).expect("now confirmed");
        assert!(!new.fee_unconfirmed);
        assert_eq!(new.fee, line.fee);
        assert_eq!(new.consultation, line.consultation);
        assert_eq!(reprice(&new, &confirmed), None);
    }
}
