//! Money in whole øre, and who pays which part of a fee.
//!
//! Amounts are integers (øre, 1/100 krone) throughout: no floating point ever touches a fee.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::service::Speciale;

/// An amount of Danish money in whole øre (1 kr = 100 øre). Can be negative (corrections).
///
/// `Display` writes Danish style: `307,95 kr`, `1.234,50 kr`, `-5,00 kr`.
/// Serialised as the integer number of øre (e.g. `30795`), so no decimal ever crosses a wire.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

/// Text that is not an amount of kroner in Danish notation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseMoneyError {
    /// Nothing (or only a sign or `kr`) was given.
    #[error("no amount given")]
    Empty,
    /// The text is not digits with an optional `,` and at most two decimals, optionally grouped
    /// in thousands with `.`.
    #[error("not an amount in kroner: {0:?} (write e.g. \"307,95\" or \"1.234,50\")")]
    Malformed(String),
    /// The amount does not fit in 64-bit øre.
    #[error("amount too large: {0:?}")]
    Overflow(String),
}

impl Money {
    /// Zero kroner.
    pub const ZERO: Money = Money(0);

    /// An amount of øre: `Money::from_ore(30795)` is 307,95 kr.
    pub const fn from_ore(ore: i64) -> Self {
        Money(ore)
    }

    /// The amount in øre.
    pub const fn ore(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub const fn checked_add(self, other: Money) -> Option<Money> {
        match self.0.checked_add(other.0) {
            Some(sum) => Some(Money(sum)),
            None => None,
        }
    }

    /// `self - other`, or `None` on overflow.
    pub const fn checked_sub(self, other: Money) -> Option<Money> {
        match self.0.checked_sub(other.0) {
            Some(difference) => Some(Money(difference)),
            None => None,
        }
    }

    /// Whether the amount is above zero (a fee must be).
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Parses kroner as a person types them in Denmark: `307,95`, `307`, `307,9` (= 307,90),
    /// `1.234,50` (`.` groups thousands, `,` is the decimal comma), `-5,00`. Surrounding
    /// whitespace and a trailing `kr` or `kr.` are allowed. A `.` that does not separate groups of
    /// three digits is rejected, so the English `307.95` is an error rather than 30.795 kr.
    pub fn parse_kroner(text: &str) -> Result<Money, ParseMoneyError> {
        let malformed = || ParseMoneyError::Malformed(text.to_owned());
        let mut rest = text.trim();
        for suffix in ["kr.", "kr"] {
            if let Some(stripped) = rest.strip_suffix(suffix) {
                rest = stripped.trim_end();
                break;
            }
        }
        let (negative, rest) = match rest.strip_prefix('-') {
            Some(unsigned) => (true, unsigned),
            None => (false, rest),
        };
        if rest.is_empty() {
            return Err(ParseMoneyError::Empty);
        }
        let (whole, decimals) = match rest.split_once(',') {
            Some((whole, decimals)) => (whole, Some(decimals)),
            None => (rest, None),
        };

        let groups: Vec<&str> = whole.split('.').collect();
        let grouping_ok = groups.len() == 1
            || (!groups[0].is_empty()
                && groups[0].len() <= 3
                && groups[1..].iter().all(|group| group.len() == 3));
        let digits: String = groups.concat();
        if !grouping_ok || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }

        let cents: i64 = match decimals {
            None => 0,
            Some(d) if (1..=2).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) => {
                let value: i64 = d.parse().map_err(|_| malformed())?;
                if d.len() == 1 {
                    value * 10
                } else {
                    value
                }
            }
            Some(_) => return Err(malformed()),
        };

        let overflow = || ParseMoneyError::Overflow(text.to_owned());
        let kroner: i64 = digits.parse().map_err(|_| overflow())?;
        let ore = kroner
            .checked_mul(100)
            .and_then(|ore| ore.checked_add(cents))
            .ok_or_else(overflow)?;
        Ok(Money(if negative { -ore } else { ore }))
    }
}

/// Danish notation: `307,95 kr`, `1.234,50 kr`, `-0,05 kr`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.unsigned_abs();
        let kroner = (magnitude / 100).to_string();
        let cents = magnitude % 100;
        let mut grouped = String::with_capacity(kroner.len() + kroner.len() / 3);
        for (position, digit) in kroner.chars().enumerate() {
            if position > 0 && (kroner.len() - position) % 3 == 0 {
                grouped.push('.');
            }
            grouped.push(digit);
        }
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{grouped},{cents:02} kr")
    }
}

/// Same as [`Money::parse_kroner`].
impl FromStr for Money {
    type Err = ParseMoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse_kroner(s)
    }
}

/// How a fee is split between the public payer (the region) and the patient.
///
/// Invariant: `region + patient` is exactly the fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PayerShares {
    /// What the region (the public side) pays.
    pub region: Money,
    /// What the patient pays (the co-payment the patient must be told about).
    pub patient: Money,
}

impl PayerShares {
    /// The whole fee, `region + patient`; `None` only if hand-built shares overflow (shares
    /// made by [`shares`] always add up to their fee).
    pub fn total(&self) -> Option<Money> {
        self.region.checked_add(self.patient)
    }
}

/// The region's share of a speciale 51 fee, in tenths of a percent: 39.3 %.
const ALMEN_REGION_PER_MILLE: i128 = 393;

/// Splits a fee between the region and the patient.
///
/// * Speciale 51 (almen): the region pays 39.3 % of the fee, rounded half up to whole øre
///   (`(fee × 393 + 500) / 1000` in integer arithmetic); the patient pays the rest, so the two
///   always add up to the fee. 307,95 kr → region 121,02 kr (121,02435 rounded), patient 186,93 kr.
/// * Speciale 62 (vederlagsfri): the public side pays everything; the patient pays 0.
///
/// A negative amount (a correction) is split as the mirror image of the positive one, i.e. ties
/// round away from zero, so a correction line cancels the original line share for share.
pub fn shares(speciale: Speciale, fee: Money) -> PayerShares {
    match speciale {
        Speciale::Vederlagsfri => PayerShares {
            region: fee,
            patient: Money::ZERO,
        },
        Speciale::Almen => {
            let magnitude = i128::from(fee.0).abs();
            let region_magnitude = (magnitude * ALMEN_REGION_PER_MILLE + 500) / 1000;
            let region = if fee.0 < 0 {
                -region_magnitude
            } else {
                region_magnitude
            };
            let patient = i128::from(fee.0) - region;
            // |region| <= 0.393·|fee| + 1 and |patient| <= |fee|, and both have the fee's sign,
            // so both fit in i64; the conversion cannot fail for any i64 fee.
            PayerShares {
                region: Money(i64::try_from(region).unwrap_or(fee.0)),
                patient: Money(i64::try_from(patient).unwrap_or(0)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_danish_style() {
        assert_eq!(Money::from_ore(30795).to_string(), "307,95 kr");
        assert_eq!(Money::from_ore(32768).to_string(), "327,68 kr");
        assert_eq!(Money::from_ore(123450).to_string(), "1.234,50 kr");
        assert_eq!(Money::from_ore(-123450).to_string(), "-1.234,50 kr");
        assert_eq!(Money::from_ore(-5).to_string(), "-0,05 kr");
        assert_eq!(Money::ZERO.to_string(), "0,00 kr");
        assert_eq!(Money::from_ore(100_000_000).to_string(), "1.000.000,00 kr");
        assert_eq!(
            Money::from_ore(i64::MIN).to_string(),
            "-92.233.720.368.547.758,08 kr"
        );
    }

    #[test]
    fn parses_danish_kroner() {
        let cases = [
            ("307,95", 30795),
            ("307", 30700),
            ("307,9", 30790),
            ("1.234,50", 123450),
            ("1.234", 123400),
            ("12.345.678,01", 1234567801),
            ("-5,00", -500),
            (" 307,95 kr ", 30795),
            ("307,95 kr.", 30795),
            ("0,05", 5),
        ];
        for (text, ore) in cases {
            assert_eq!(
                Money::parse_kroner(text),
                Ok(Money::from_ore(ore)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_ambiguous_or_broken_amounts() {
        for text in [
            "307.95", "307,955", "3,0,7", "1.23,00", ".123", "1..234", "abc", "30 7", "307,",
            ",95", "+5", "1.2345",
        ] {
            assert!(
                matches!(
                    Money::parse_kroner(text),
                    Err(ParseMoneyError::Malformed(_))
                ),
                "{text:?} accepted"
            );
        }
        assert_eq!(Money::parse_kroner(""), Err(ParseMoneyError::Empty));
        assert_eq!(Money::parse_kroner(" kr"), Err(ParseMoneyError::Empty));
        assert!(matches!(
            Money::parse_kroner("99999999999999999999"),
            Err(ParseMoneyError::Overflow(_))
        ));
    }

    #[test]
    fn display_output_parses_back() {
        for ore in [0, 1, -1, 30795, 123450, -123450, 999_999_999] {
            let money = Money::from_ore(ore);
            assert_eq!(Money::parse_kroner(&money.to_string()), Ok(money));
        }
    }

    #[test]
    fn checked_arithmetic() {
        let a = Money::from_ore(30795);
        assert_eq!(
            a.checked_add(Money::from_ore(5)),
            Some(Money::from_ore(30800))
        );
        assert_eq!(a.checked_sub(a), Some(Money::ZERO));
        assert_eq!(
            Money::from_ore(i64::MAX).checked_add(Money::from_ore(1)),
            None
        );
        assert_eq!(
            Money::from_ore(i64::MIN).checked_sub(Money::from_ore(1)),
            None
        );
    }

    #[test]
    fn serde_is_integer_ore() {
        assert_eq!(
            serde_json::to_string(&Money::from_ore(30795)).unwrap(),
            "30795"
        );
        assert_eq!(
            serde_json::from_str::<Money>("-12").unwrap(),
            Money::from_ore(-12)
        );
        assert!(serde_json::from_str::<Money>("307.95").is_err());
    }

    #[test]
    fn almen_shares_of_the_oct_2022_fee() {
        let split = shares(Speciale::Almen, Money::from_ore(30795));
        assert_eq!(split.region, Money::from_ore(12102));
        assert_eq!(split.patient, Money::from_ore(18693));
        assert_eq!(split.total(), Some(Money::from_ore(30795)));
    }

    #[test]
    fn almen_rounds_half_up() {
        // 1000 øre × 39.3 % = 393 exactly; 500 øre → 196.5 → 197; 10 øre → 3.93 → 4; 1 øre → 0.393 → 0.
        assert_eq!(
            shares(Speciale::Almen, Money::from_ore(1000)).region.ore(),
            393
        );
        assert_eq!(
            shares(Speciale::Almen, Money::from_ore(500)).region.ore(),
            197
        );
        assert_eq!(shares(Speciale::Almen, Money::from_ore(10)).region.ore(), 4);
        assert_eq!(shares(Speciale::Almen, Money::from_ore(1)).region.ore(), 0);
        // Hold video sp. 51: 199,26 × 0.393 = 78,309... → 78,31.
        let hold = shares(Speciale::Almen, Money::from_ore(19926));
        assert_eq!((hold.region.ore(), hold.patient.ore()), (7831, 12095));
    }

    #[test]
    fn vederlagsfri_is_all_public() {
        let split = shares(Speciale::Vederlagsfri, Money::from_ore(32768));
        assert_eq!(split.region, Money::from_ore(32768));
        assert_eq!(split.patient, Money::ZERO);
    }

    #[test]
    fn negative_fee_mirrors_positive() {
        let positive = shares(Speciale::Almen, Money::from_ore(500));
        let negative = shares(Speciale::Almen, Money::from_ore(-500));
        assert_eq!(negative.region.ore(), -positive.region.ore());
        assert_eq!(negative.patient.ore(), -positive.patient.ore());
    }

    #[test]
    fn extreme_fees_still_sum() {
        for ore in [i64::MAX, i64::MIN, i64::MIN + 1] {
            let split = shares(Speciale::Almen, Money::from_ore(ore));
            assert_eq!(
                i128::from(split.region.ore()) + i128::from(split.patient.ore()),
                i128::from(ore)
            );
        }
    }
}
