//! Parsing of free-text input at the edge: an invalid value never gets past
//! the handler (parse, don't validate).

use crate::error::ApiError;

/// A Danish CPR number, normalised to `DDMMYY-SSSS`.
///
/// The date part must be a real calendar date; the century follows from
/// the seventh digit (CPR-kontoret's table), which is how a leap day is
/// checked. The modulus-11 check is not applied: numbers without it have
/// been issued since 2007.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpr(String);

impl Cpr {
    /// Parses `DDMMYY-SSSS`, `DDMMYY SSSS` or `DDMMYYSSSS` (one hyphen or
    /// space after the birth date, or none).
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::bad_request(
                "invalid_cpr",
                "CPR-nummeret skal skrives som ddmmåå-xxxx og begynde med en rigtig fødselsdato.",
                "the CPR number must be DDMMYY-SSSS with a real birth date",
            )
        };
        let text = text.trim();
        let is_separator = |c: char| c == '-' || c == ' ';
        let digits: String = text.chars().filter(|c| !is_separator(*c)).collect();
        let separators = text.chars().filter(|c| is_separator(*c)).count();
        if digits.len() != 10 || !digits.chars().all(|c| c.is_ascii_digit()) || separators > 1 {
            return Err(bad());
        }
        if separators == 1 && text.find(is_separator) != Some(6) {
            return Err(bad());
        }
        let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().expect("digits");
        let (day, month, yy, seventh) = (n(0..2), n(2..4), n(4..6), n(6..7));
        let century = match (seventh, yy) {
            (0..=3, _) => 1900,
            (4 | 9, 0..=36) => 2000,
            (4 | 9, _) => 1900,
            (5..=8, 0..=57) => 2000,
            (5..=8, _) => 1800,
            _ => return Err(bad()),
        };
        chrono::NaiveDate::from_ymd_opt((century + yy) as i32, month, day).ok_or_else(bad)?;
        Ok(Cpr(format!("{}-{}", &digits[..6], &digits[6..])))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name or short text field: 1–200 characters, no control characters.
/// `field` is the API's field name (in the English message), `label_da`
/// how the form names it in Danish with its article (`"Navnet"`,
/// `"Klinikkens navn"`).
pub fn name(text: &str, field: &str, label_da: &str) -> Result<String, ApiError> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{label_da} skal udfyldes og må højst have 200 tegn (ingen linjeskift)."),
            format!("{field} must be 1–200 characters without control characters"),
        ));
    }
    Ok(t.to_owned())
}

/// A phone number: digits, spaces and an optional leading `+`, 8–20 chars.
pub fn phone(text: &str) -> Result<String, ApiError> {
    let t = text.trim();
    let ok = (8..=20).contains(&t.len())
        && t.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || c == ' ' || (i == 0 && c == '+'))
        && t.chars().filter(char::is_ascii_digit).count() >= 8;
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_phone",
            "Telefonnummeret skal have mindst 8 cifre (mellemrum og + foran er tilladt).",
            "the phone number must have at least 8 digits (spaces and a leading + allowed)",
        ));
    }
    Ok(t.to_owned())
}

/// An e-mail address: one `@`, something on both sides, a dot in the domain.
pub fn email(text: &str) -> Result<String, ApiError> {
    let t = text.trim();
    let valid = t.len() <= 254
        && !t.chars().any(|c| c.is_whitespace() || c.is_control())
        && t.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_email",
            "E-mailadressen er ikke gyldig.",
            "the e-mail address is not valid",
        ));
    }
    Ok(t.to_owned())
}

/// A ydernummer: six digits.
pub fn ydernummer(text: &str) -> Result<String, ApiError> {
    let t = text.trim();
    if t.len() != 6 || !t.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "invalid_ydernummer",
            "Ydernummeret skal være seks cifre.",
            "the ydernummer must be six digits",
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpr_numbers_parse_and_normalise() {
        assert_eq!(Cpr::parse("0101701234").unwrap().as_str(), "010170-1234");
        assert_eq!(Cpr::parse("010170-1234").unwrap().as_str(), "010170-1234");
        // 29 Feb 2000 (seventh digit 4, year 00 → 2000, a leap year).
        assert!(Cpr::parse("290200-4000").is_ok());
        // 29 Feb 1900 was no leap day (seventh digit 0 → 1900).
        assert!(Cpr::parse("290200-0000").is_err());
        for bad in [
            "",
            "3201701234",
            "0113701234",
            "01017-01234",
            "abcdefghij",
            "010170--1234",
            "01017012345",
        ] {
            assert!(Cpr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_phones_and_emails() {
        assert_eq!(
            name("  Grethe Hansen ", "name", "Navnet").unwrap(),
            "Grethe Hansen"
        );
        assert!(name("", "name", "Navnet").is_err());
        assert!(name("a\u{0}b", "name", "Navnet").is_err());
        assert!(phone("+45 12 34 56 78").is_ok());
        assert!(phone("1234").is_err());
        assert!(phone("12-34-56-78").is_err());
        assert!(email("a@b.dk").is_ok());
        assert!(email("a@b").is_err());
        assert!(email("a b@c.dk").is_err());
        assert!(ydernummer("123456").is_ok());
        assert!(ydernummer("12345").is_err());
    }
}
