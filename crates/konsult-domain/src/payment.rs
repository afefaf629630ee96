//! What the patient is told they will pay for a video consultation.
//!
//! The agreement asks for special care that the patient knows a consultation is starting and,
//! under speciale 51, what their own payment is (docs/domain.md, "What the patient is told").
//! The amount is the patient's share of the fee in force on the consultation's Danish day;
//! under speciale 62 the consultation is free of charge for the patient.

use chrono::NaiveDate;
use serde::Serialize;

use crate::money::{shares, Money};
use crate::regulation::FeeSchedule;
use crate::service::{ServiceKind, Speciale};

/// The patient's own payment for one consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PatientPayment {
    /// Speciale 62: the public side pays everything.
    Free,
    /// Speciale 51: the patient pays `amount` of `fee`.
    OwnPayment {
        /// What the patient pays.
        amount: Money,
        /// The whole fee.
        fee: Money,
        /// A regulation step up to the day is not recorded yet: the amount may still change.
        unconfirmed: bool,
    },
    /// No fee applies on the day (the clinic's fee table has a gap): the clinic tells the
    /// patient itself.
    Unknown,
}

impl PatientPayment {
    /// The patient's payment for a consultation of `kind` under `speciale` on the Danish day
    /// `day`, by the clinic's fee schedule.
    pub fn on(
        schedule: &FeeSchedule,
        kind: ServiceKind,
        speciale: Speciale,
        day: NaiveDate,
    ) -> PatientPayment {
        if speciale == Speciale::Vederlagsfri {
            return PatientPayment::Free;
        }
        match schedule.price(kind, speciale, day) {
            Ok(priced) => PatientPayment::OwnPayment {
                amount: shares(speciale, priced.fee).patient,
                fee: priced.fee,
                unconfirmed: priced.reference.unconfirmed(),
            },
            Err(_) => PatientPayment::Unknown,
        }
    }

    /// One sentence for the patient, in Danish.
    pub fn danish(&self) -> String {
        match self {
            PatientPayment::Free => "Konsultationen er gratis for dig.".to_owned(),
            PatientPayment::OwnPayment {
                amount,
                unconfirmed: false,
                ..
            } => format!("Din egenbetaling er {amount}."),
            PatientPayment::OwnPayment {
                amount,
                unconfirmed: true,
                ..
            } => format!(
                "Din egenbetaling er {amount}. Beløbet kan ændre sig lidt, når årets nye takst kommer."
            ),
            PatientPayment::Unknown => "Klinikken fortæller dig, hvad du skal betale.".to_owned(),
        }
    }

    /// One sentence for the patient, in English.
    pub fn english(&self) -> String {
        match self {
            PatientPayment::Free => "The consultation is free of charge for you.".to_owned(),
            PatientPayment::OwnPayment {
                amount,
                unconfirmed,
                ..
            } => {
                let amount = english_kroner(*amount);
                if *unconfirmed {
                    format!(
                        "You pay {amount} yourself. The amount may change a little when this year's new fee is published."
                    )
                } else {
                    format!("You pay {amount} yourself.")
                }
            }
            PatientPayment::Unknown => "The clinic will tell you what you pay.".to_owned(),
        }
    }
}

/// `DKK 194.14`: the English notation of an amount.
fn english_kroner(amount: Money) -> String {
    let ore = amount.ore();
    let sign = if ore < 0 { "-" } else { "" };
    let magnitude = ore.unsigned_abs();
    format!("{sign}DKK {}.{:02}", magnitude / 100, magnitude % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fees::FeeTable;
    use crate::regulation::{RegulationStep, Regulations, StepChange};

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn speciale_51_pays_the_patient_share_of_the_regulated_fee() {
        // With the October 2023 step recorded (0 %), June 2024 is confirmed: 307,95 kr
        // regulated +1,06 % and +2,77 % = 319,83 kr, of which the region pays 125,69 kr.
        let october_2023 = RegulationStep {
            speciale: Speciale::Almen,
            effective_from: day("2023-10-01"),
            change: StepChange::Percent { ppm: 0 },
            source: "test".into(),
        };
        let schedule = FeeSchedule::new(
            FeeTable::default_table(),
            Regulations::published().with(vec![october_2023]).unwrap(),
        );
        let payment = PatientPayment::on(
            &schedule,
            ServiceKind::IndividualVideo,
            Speciale::Almen,
            day("2024-06-03"),
        );
        assert_eq!(
            payment,
            PatientPayment::OwnPayment {
                amount: Money::from_ore(19414),
                fee: Money::from_ore(31983),
                unconfirmed: false,
            }
        );
        assert_eq!(payment.danish(), "Din egenbetaling er 194,14 kr.");
        assert_eq!(payment.english(), "You pay DKK 194.14 yourself.");
    }

    #[test]
    fn an_unconfirmed_fee_says_the_amount_may_change() {
        let schedule = FeeSchedule::published();
        let payment = PatientPayment::on(
            &schedule,
            ServiceKind::IndividualVideo,
            Speciale::Almen,
            day("2026-01-12"),
        );
        assert!(matches!(
            payment,
            PatientPayment::OwnPayment {
                unconfirmed: true,
                ..
            }
        ));
        assert!(payment.danish().contains("kan ændre sig"));
    }

    #[test]
    fn speciale_62_is_free_and_a_gap_is_unknown() {
        let schedule = FeeSchedule::published();
        let free = PatientPayment::on(
            &schedule,
            ServiceKind::IndividualVideo,
            Speciale::Vederlagsfri,
            day("2026-01-12"),
        );
        assert_eq!(free, PatientPayment::Free);
        assert_eq!(free.danish(), "Konsultationen er gratis for dig.");
        let before_any_row = PatientPayment::on(
            &schedule,
            ServiceKind::IndividualVideo,
            Speciale::Almen,
            day("2001-01-01"),
        );
        assert_eq!(before_any_row, PatientPayment::Unknown);
    }
}
