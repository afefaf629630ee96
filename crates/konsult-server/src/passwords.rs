//! The password policy for new passwords (setup, a new account, a change,
//! an admin's reset): at least [`MIN_CHARS`] characters, at most
//! [`MAX_CHARS`], and none of the most common passwords, compared ignoring
//! case, from the list shipped in `data/common-passwords.txt` (its header
//! says where it comes from). Length rather than composition rules, and a
//! blocklist of known passwords, as NIST SP 800-63B §5.1.1.2 recommends.
//!
//! A [`NewPassword`] exists only when it passes; a refusal names every
//! reason in Danish and English.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::error::{ApiError, ProblemItem};

/// Fewest characters (Unicode scalar values) of a new password.
pub const MIN_CHARS: usize = 12;
/// Most characters of a new password: enough for any passphrase, and a
/// bound on what argon2 is asked to hash.
pub const MAX_CHARS: usize = 256;

/// The shipped list: one password a line, `#` lines are comments.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

fn common_passwords() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_lowercase)
            .collect()
    })
}

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    /// Fewer than [`MIN_CHARS`] characters.
    TooShort,
    /// More than [`MAX_CHARS`] characters.
    TooLong,
    /// One of the most common passwords (ignoring case).
    TooCommon,
}

impl PasswordProblem {
    /// The stable code of this reason.
    pub fn code(self) -> &'static str {
        match self {
            PasswordProblem::TooShort => "password_too_short",
            PasswordProblem::TooLong => "password_too_long",
            PasswordProblem::TooCommon => "password_too_common",
        }
    }

    fn item(self) -> ProblemItem {
        let (da, en) = match self {
            PasswordProblem::TooShort => (
                format!("Adgangskoden skal have mindst {MIN_CHARS} tegn. Brug gerne flere ord."),
                format!("The password must have at least {MIN_CHARS} characters. Several words make a good one."),
            ),
            PasswordProblem::TooLong => (
                format!("Adgangskoden må højst have {MAX_CHARS} tegn."),
                format!("The password may have at most {MAX_CHARS} characters."),
            ),
            PasswordProblem::TooCommon => (
                "Adgangskoden er blandt de mest brugte og gættes let. Vælg en anden.".to_owned(),
                "The password is among the most common ones and easily guessed. Choose another."
                    .to_owned(),
            ),
        };
        ProblemItem {
            code: self.code().to_owned(),
            da,
            en,
        }
    }
}

impl From<PasswordProblem> for ApiError {
    fn from(problem: PasswordProblem) -> Self {
        ApiError::Rule {
            code: "weak_password",
            title: "The password was not accepted".into(),
            items: vec![problem.item()],
        }
    }
}

/// A password that passes the policy. Its `Debug` never prints it.
pub struct NewPassword(String);

impl NewPassword {
    /// Checks `password` against the policy.
    pub fn parse(password: &str) -> Result<Self, PasswordProblem> {
        let chars = password.chars().count();
        if chars < MIN_CHARS {
            return Err(PasswordProblem::TooShort);
        }
        if chars > MAX_CHARS {
            return Err(PasswordProblem::TooLong);
        }
        if common_passwords().contains(&password.to_lowercase()) {
            return Err(PasswordProblem::TooCommon);
        }
        Ok(Self(password.to_owned()))
    }

    /// The argon2id PHC string to store.
    pub fn hash(&self) -> anyhow::Result<String> {
        crate::auth::hash_password(&self.0)
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_is_loaded_in_lower_case() {
        let set = common_passwords();
        assert_eq!(set.len(), 10_000, "the header says 10,000 entries");
        assert!(set.contains("123456") && set.contains("password"));
        assert!(set.iter().all(|p| *p == p.to_lowercase()));
        assert!(!set.iter().any(|p| p.starts_with('#')));
    }

    #[test]
    fn length_and_commonness_decide() {
        assert_eq!(
            NewPassword::parse("kort").unwrap_err(),
            PasswordProblem::TooShort
        );
        // Eleven characters, counted as characters, not bytes.
        assert_eq!(
            NewPassword::parse("æøåæøåæøåæø").unwrap_err(),
            PasswordProblem::TooShort
        );
        assert!(NewPassword::parse("æøåæøåæøåæøå").is_ok());
        assert_eq!(
            NewPassword::parse(&"x".repeat(MAX_CHARS + 1)).unwrap_err(),
            PasswordProblem::TooLong
        );
        // In the list (twelve characters or more), in any case.
        for common in [
            "qwerty123456",
            "QWERTY123456",
            "1q2w3e4r5t6y",
            "LeaveMeAlone",
        ] {
            assert_eq!(
                NewPassword::parse(common).unwrap_err(),
                PasswordProblem::TooCommon,
                "{common}"
            );
        }
        assert!(NewPassword::parse("correct horse battery").is_ok());
    }

    #[test]
    fn a_refusal_is_told_in_danish_and_english() {
        let problem = ApiError::from(PasswordProblem::TooCommon).problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.kind, "urn:konsult:problem:weak_password");
        assert_eq!(problem.errors[0].code, "password_too_common");
        assert!(problem.errors[0].da.contains("mest brugte"));
        assert!(problem.errors[0].en.contains("most common"));
    }
}
