//! Identifiers of the domain's entities.
//!
//! Every id is a newtype over [`Uuid`] with a private field, so a patient id can never be passed
//! where a clinic id is expected. Ids are made by the caller (the store or the server) and passed
//! in: this crate never generates one, because generating needs randomness and the domain is pure.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string could not be read as an id: it is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: {source}")]
pub struct ParseIdError {
    /// The id type that was being parsed, e.g. `PatientId`.
    pub kind: &'static str,
    /// Why the text is not a UUID.
    #[source]
    pub source: uuid::Error,
}

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        ///
        /// Serialised as the bare UUID string (serde transparent); `Display` and `FromStr` use the
        /// hyphenated lowercase form.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID that the caller made or read from storage.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside, e.g. to bind it in a database query.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|source| ParseIdError {
                    kind: stringify!($name),
                    source,
                })
            }
        }
    };
}

id_newtype!(
    /// A physiotherapy clinic (one tenant).
    ClinicId
);
id_newtype!(
    /// A therapist (fysioterapeut) working in a clinic.
    TherapistId
);
id_newtype!(
    /// A patient of a clinic.
    PatientId
);
id_newtype!(
    /// A patient's course of treatment (forløb).
    CourseId
);
id_newtype!(
    /// A recorded in-clinic visit (the patient was seen physically in the clinic).
    VisitId
);
id_newtype!(
    /// A therapist's recorded assessment that video is suitable for a patient.
    AssessmentId
);
id_newtype!(
    /// A video consultation.
    ConsultationId
);
id_newtype!(
    /// A billing line, assigned by the store when it saves a line this crate decided on.
    BillingLineId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_from_str_round_trip() {
        let uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let id = PatientId::from_uuid(uuid);
        let text = id.to_string();
        assert_eq!(text, "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(text.parse::<PatientId>().unwrap(), id);
        assert_eq!(id.as_uuid(), uuid);
    }

    #[test]
    fn from_str_rejects_garbage_with_the_type_name() {
        let err = "not-a-uuid".parse::<ClinicId>().unwrap_err();
        assert_eq!(err.kind, "ClinicId");
        assert!(err.to_string().starts_with("not a valid ClinicId"));
    }

    #[test]
    fn serde_is_the_bare_uuid_string() {
        let id = ConsultationId::from_uuid(Uuid::from_u128(1));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000-0000-0000-0000-000000000001\"");
        let back: ConsultationId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<ConsultationId>("\"nope\"").is_err());
    }
}
