//! What is billed: the billing specialty ([`Speciale`]), the kind of video service
//! ([`ServiceKind`]) and its four-digit service number ([`ServiceNumber`]).
//!
//! Service numbers are data with validity periods (see [`crate::fees`]), never constants in the
//! rules: the seed service description still shows the older number 4531, which the 2024
//! agreements replaced by 0131.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The billing specialty (speciale) a consultation is billed under.
///
/// Serialised as its number (`51` or `62`), which is how the agreements and the regions'
/// systems name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
pub enum Speciale {
    /// Speciale 51, almen fysioterapi: on a doctor's referral; the region pays 39.3 % of the fee.
    Almen,
    /// Speciale 62, vederlagsfri fysioterapi: free for the patient; the public side pays 100 %.
    Vederlagsfri,
}

/// A number that is not a speciale this crate knows (only 51 and 62 are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown speciale {0}: only 51 (almen fysioterapi) and 62 (vederlagsfri fysioterapi) are known"
)]
pub struct UnknownSpeciale(pub u16);

/// Text that is not a speciale number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a speciale: {0:?} (expected 51 or 62)")]
pub struct ParseSpecialeError(pub String);

impl Speciale {
    /// Both specialer, in code order.
    pub const ALL: [Speciale; 2] = [Speciale::Almen, Speciale::Vederlagsfri];

    /// The speciale number: 51 or 62.
    pub const fn code(self) -> u16 {
        match self {
            Speciale::Almen => 51,
            Speciale::Vederlagsfri => 62,
        }
    }

    /// The Danish name, as the agreements write it.
    pub const fn danish_name(self) -> &'static str {
        match self {
            Speciale::Almen => "almen fysioterapi",
            Speciale::Vederlagsfri => "vederlagsfri fysioterapi",
        }
    }

    /// The English name, for the English UI.
    pub const fn english_name(self) -> &'static str {
        match self {
            Speciale::Almen => "general physiotherapy",
            Speciale::Vederlagsfri => "free physiotherapy",
        }
    }
}

impl TryFrom<u16> for Speciale {
    type Error = UnknownSpeciale;

    fn try_from(code: u16) -> Result<Self, Self::Error> {
        match code {
            51 => Ok(Speciale::Almen),
            62 => Ok(Speciale::Vederlagsfri),
            other => Err(UnknownSpeciale(other)),
        }
    }
}

impl From<Speciale> for u16 {
    fn from(speciale: Speciale) -> Self {
        speciale.code()
    }
}

/// Displays the number, e.g. `51`.
impl fmt::Display for Speciale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Parses the number, e.g. `"62"`.
impl FromStr for Speciale {
    type Err = ParseSpecialeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u16>()
            .ok()
            .and_then(|code| Speciale::try_from(code).ok())
            .ok_or_else(|| ParseSpecialeError(s.to_owned()))
    }
}

/// Which video service a consultation is: individual or group (hold).
///
/// Serialised as a stable snake_case code (`individual_video`, `hold_video`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Individuel videokonsultation (0131 from 2024-01-01; 4531 before).
    IndividualVideo,
    /// Videokonsultation på hold, a group session by video (0132 from 2024-01-01).
    HoldVideo,
}

/// Text that is not a service kind code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service kind {0:?} (expected \"individual_video\" or \"hold_video\")")]
pub struct ParseServiceKindError(pub String);

impl ServiceKind {
    /// Both kinds.
    pub const ALL: [ServiceKind; 2] = [ServiceKind::IndividualVideo, ServiceKind::HoldVideo];

    /// The stable code used in files, JSON and the database.
    pub const fn code(self) -> &'static str {
        match self {
            ServiceKind::IndividualVideo => "individual_video",
            ServiceKind::HoldVideo => "hold_video",
        }
    }

    /// The Danish name.
    pub const fn danish_name(self) -> &'static str {
        match self {
            ServiceKind::IndividualVideo => "individuel videokonsultation",
            ServiceKind::HoldVideo => "videokonsultation på hold",
        }
    }

    /// The English name.
    pub const fn english_name(self) -> &'static str {
        match self {
            ServiceKind::IndividualVideo => "individual video consultation",
            ServiceKind::HoldVideo => "group video session",
        }
    }
}

/// Displays the code, e.g. `individual_video`.
impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Parses the code, e.g. `"hold_video"`.
impl FromStr for ServiceKind {
    type Err = ParseServiceKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceKind::ALL
            .into_iter()
            .find(|kind| kind.code() == s)
            .ok_or_else(|| ParseServiceKindError(s.to_owned()))
    }
}

/// A service number (ydelsesnummer): exactly four decimal digits, leading zeros kept
/// (`0131` is not `131`).
///
/// Serialised as the four-digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ServiceNumber(u16);

/// Text that is not four decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a service number: {0:?} (expected exactly four digits, e.g. \"0131\")")]
pub struct ParseServiceNumberError(pub String);

impl ServiceNumber {
    /// 0131, individual videokonsultation from 2024-01-01.
    pub const INDIVIDUAL_VIDEO_2024: ServiceNumber = ServiceNumber(131);
    /// 0132, videokonsultation på hold from 2024-01-01.
    pub const HOLD_VIDEO_2024: ServiceNumber = ServiceNumber(132);
    /// 4531, the older number of the individual videokonsultation shown in the seed service
    /// description; only for historical fee rows.
    pub const INDIVIDUAL_VIDEO_LEGACY: ServiceNumber = ServiceNumber(4531);

    /// Parses exactly four ASCII digits, e.g. `"0131"`. Whitespace, signs and other lengths are
    /// rejected.
    pub fn parse(text: &str) -> Result<Self, ParseServiceNumberError> {
        let bytes = text.as_bytes();
        if bytes.len() != 4 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(ParseServiceNumberError(text.to_owned()));
        }
        let value = bytes
            .iter()
            .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'));
        Ok(ServiceNumber(value))
    }
}

/// Four digits with leading zeros, e.g. `0131`.
impl fmt::Display for ServiceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl FromStr for ServiceNumber {
    type Err = ParseServiceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceNumber::parse(s)
    }
}

impl TryFrom<String> for ServiceNumber {
    type Error = ParseServiceNumberError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        ServiceNumber::parse(&text)
    }
}

impl From<ServiceNumber> for String {
    fn from(number: ServiceNumber) -> Self {
        number.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speciale_codes_and_names() {
        assert_eq!(Speciale::Almen.code(), 51);
        assert_eq!(Speciale::Vederlagsfri.code(), 62);
        assert_eq!(Speciale::try_from(51), Ok(Speciale::Almen));
        assert_eq!(Speciale::try_from(62), Ok(Speciale::Vederlagsfri));
        assert_eq!(Speciale::try_from(53), Err(UnknownSpeciale(53)));
        assert_eq!(
            Speciale::Vederlagsfri.danish_name(),
            "vederlagsfri fysioterapi"
        );
        assert_eq!("51".parse::<Speciale>(), Ok(Speciale::Almen));
        assert!("53".parse::<Speciale>().is_err());
        assert!("almen".parse::<Speciale>().is_err());
    }

    #[test]
    fn speciale_serde_is_the_number() {
        assert_eq!(serde_json::to_string(&Speciale::Almen).unwrap(), "51");
        assert_eq!(
            serde_json::from_str::<Speciale>("62").unwrap(),
            Speciale::Vederlagsfri
        );
        let err = serde_json::from_str::<Speciale>("53").unwrap_err();
        assert!(err.to_string().contains("unknown speciale 53"), "{err}");
    }

    #[test]
    fn service_number_keeps_leading_zeros() {
        let number = ServiceNumber::parse("0131").unwrap();
        assert_eq!(number, ServiceNumber::INDIVIDUAL_VIDEO_2024);
        assert_eq!(number.to_string(), "0131");
        assert_eq!(ServiceNumber::parse("4531").unwrap().to_string(), "4531");
        assert_eq!(serde_json::to_string(&number).unwrap(), "\"0131\"");
        assert_eq!(
            serde_json::from_str::<ServiceNumber>("\"0132\"").unwrap(),
            ServiceNumber::HOLD_VIDEO_2024
        );
    }

    #[test]
    fn service_number_rejects_anything_but_four_digits() {
        for bad in ["131", "01310", "", " 131", "013a", "+131", "-131", "١٣١٠"] {
            assert!(ServiceNumber::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<ServiceNumber>("131").is_err());
    }

    #[test]
    fn service_kind_codes_round_trip() {
        for kind in ServiceKind::ALL {
            assert_eq!(kind.code().parse::<ServiceKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.code()));
        }
        assert!("video".parse::<ServiceKind>().is_err());
    }
}
