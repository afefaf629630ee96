//! The one HTTP error type: every failure is answered with RFC 9457
//! problem details (`application/problem+json`). Internal errors are logged
//! with their cause chain and answered with a generic message.
//!
//! Every problem carries its explanation in Danish and English: a problem
//! with one message has exactly one item in `errors` (`code`, `da`, `en`),
//! and a rule refusal has one item per reason. `detail`, when present, is
//! the English text, kept for API integrators. Clients show `errors[].da`
//! or `errors[].en` by the user's language and never put `detail` in front
//! of a Danish reader.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use konsult_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem details body (RFC 9457).
///
/// What the user is told is in `errors`: every problem has at least one
/// item, each with a stable `code` and a Danish (`da`) and English (`en`)
/// text. A problem with one message has exactly one item, whose `en` is
/// also the `detail`; a rule refusal (422) has one item per reason.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:konsult:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary (English).
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this case, in English, for API integrators (the
    /// same text as the one item's `en`). Show `errors[].da`/`.en` to
    /// people instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What to tell the user: at least one item, each a stable code with a
    /// Danish and an English sentence. One item when the problem has one
    /// message; one per failed criterion or field for a rule refusal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
    /// For `duplicate_patient`: the patient who already has the CPR number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_patient_id: Option<uuid::Uuid>,
}

/// One named reason inside a problem, told in both languages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemItem {
    /// Stable code, e.g. `no_in_clinic_visit_before` or `invalid_phone`.
    pub code: String,
    /// Danish explanation, for clinic staff and patients.
    pub da: String,
    /// English explanation.
    pub en: String,
}

/// A message for people in Danish and English, with a stable code: what a
/// problem with one message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Stable code (the problem item's `code`).
    pub code: &'static str,
    /// Danish.
    pub da: String,
    /// English (also the problem's `detail`).
    pub en: String,
}

impl Text {
    /// A message with its code.
    pub fn new(code: &'static str, da: impl Into<String>, en: impl Into<String>) -> Self {
        Text {
            code,
            da: da.into(),
            en: en.into(),
        }
    }

    /// The message as a problem item.
    pub fn item(&self) -> ProblemItem {
        ProblemItem {
            code: self.code.to_owned(),
            da: self.da.clone(),
            en: self.en.clone(),
        }
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en)
    }
}

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a value is invalid.
    #[error("{0}")]
    BadRequest(Text),
    /// 401: not logged in, or the session expired.
    #[error("not logged in")]
    Unauthorized,
    /// 403: logged in but not allowed (role, CSRF).
    #[error("{0}")]
    Forbidden(Text),
    /// 404: not found, or another clinic's (never told apart). Names what
    /// was looked for (`"patient"`, `"fee step"`), see [`not_found_text`].
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409 `conflict`: conflicts with the current state; nothing changed.
    #[error("{0}")]
    Conflict(Text),
    /// 409 whose `type` is the text's own stable code (e.g.
    /// `patient_inactive`, `speciale_not_offered`, `period_not_closed`);
    /// nothing changed.
    #[error("{0}")]
    CodedConflict(Text),
    /// 409 `duplicate_patient`: a patient with this CPR number exists.
    #[error("a patient with this CPR number already exists in the clinic")]
    DuplicatePatient {
        /// That patient.
        existing: uuid::Uuid,
    },
    /// 422: understood but refused by a rule, with every reason named.
    #[error("{title}")]
    Rule {
        /// Stable problem code.
        code: &'static str,
        /// Summary.
        title: String,
        /// Each reason (at least one).
        items: Vec<ProblemItem>,
    },
    /// 429: too many attempts.
    #[error("too many attempts, try again later")]
    TooManyRequests,
    /// 429 with `Retry-After`: this client tried too often.
    #[error("too many attempts, try again later")]
    Throttled {
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// 503 with `Retry-After`: the server is too busy for this now.
    #[error("the server is busy, try again shortly")]
    Busy {
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// 503 `database_unavailable` with `Retry-After`: the database cannot
    /// serve now (unreachable, no connection in time, locked, full,
    /// read-only); nothing was changed.
    #[error("the database is unavailable, try again shortly")]
    DatabaseUnavailable {
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// 500: our fault; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a client answered `database_unavailable` is told to wait.
pub const DATABASE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl ApiError {
    /// 400 with one message.
    pub fn bad_request(code: &'static str, da: impl Into<String>, en: impl Into<String>) -> Self {
        ApiError::BadRequest(Text::new(code, da, en))
    }

    /// 403 with one message.
    pub fn forbidden(code: &'static str, da: impl Into<String>, en: impl Into<String>) -> Self {
        ApiError::Forbidden(Text::new(code, da, en))
    }

    /// 409 `conflict` with one message.
    pub fn conflict(code: &'static str, da: impl Into<String>, en: impl Into<String>) -> Self {
        ApiError::Conflict(Text::new(code, da, en))
    }

    /// 409 whose problem `type` is `code`, with one message.
    pub fn coded_conflict(
        code: &'static str,
        da: impl Into<String>,
        en: impl Into<String>,
    ) -> Self {
        ApiError::CodedConflict(Text::new(code, da, en))
    }
}

/// What a 404 says about what was looked for: a stable code and Danish.
/// An unknown name still gets a Danish text (`not_found`).
pub fn not_found_text(what: &'static str) -> Text {
    let (code, da) = match what {
        "patient" => ("patient_not_found", "Patienten findes ikke."),
        "consultation" => ("consultation_not_found", "Konsultationen findes ikke."),
        "course" => ("course_not_found", "Forløbet findes ikke."),
        "assessment" => ("assessment_not_found", "Vurderingen findes ikke."),
        "journal note" => ("journal_note_not_found", "Journalnotatet findes ikke."),
        "join link" => (
            "join_link_not_found",
            "Der er intet gyldigt link at vise igen. Lav et nyt link.",
        ),
        "therapist" => ("therapist_not_found", "Brugeren findes ikke."),
        "clinic" => ("clinic_not_found", "Klinikken findes ikke."),
        "billing line" => ("billing_line_not_found", "Afregningslinjen findes ikke."),
        "fee step" => ("fee_step_not_found", "Reguleringen findes ikke."),
        "setup token" => (
            "setup_token_not_found",
            "Opsætningslinket findes ikke eller er allerede brugt.",
        ),
        "link" => (
            "link_not_found",
            "Linket findes ikke eller gælder ikke længere.",
        ),
        "file" => ("file_not_found", "Filen findes ikke."),
        "route" => ("route_not_found", "Adressen findes ikke."),
        "resource" => ("resource_not_found", "Det, du leder efter, findes ikke."),
        _ => ("not_found", "Det, du leder efter, findes ikke."),
    };
    Text::new(code, da, format!("{what} not found"))
}

/// The Danish text of a refusal the store names by a stable code
/// (`StoreError::Refused`). The store's English message may name more
/// (dates, ids); the Danish says what the rule is and what to do.
fn refused_danish(code: &str) -> &'static str {
    match code {
        "patient_inactive" => {
            "Patienten er slettet eller lagt sammen med en anden patient og kan ikke bookes, \
             lukkes ind eller afregnes."
        }
        "speciale_not_offered" => {
            "Klinikken arbejder ikke under dette speciale. Vælg et af klinikkens specialer."
        }
        "overlapping_consultation" => {
            "Patienten har allerede en videokonsultation på det tidspunkt. \
             Der er ikke planlagt en ny."
        }
        "same_patient" => "En patient kan ikke lægges sammen med sig selv.",
        "call_in_progress" => "Læg patienterne sammen, når ingen af deres samtaler er i gang.",
        "last_admin" => {
            "Klinikkens sidste aktive administrator kan ikke deaktiveres. \
             Gør en anden til administrator først."
        }
        "setup_link_expired" => "Linket er udløbet. Bed driften om et nyt link.",
        "clinic_details_missing" => "Udfyld klinikkens navn, ydernummer og specialer.",
        "published_fee_step" => {
            "Denne regulering er offentliggjort og følger med Konsult; den kan ikke ændres."
        }
        "invalid_fee_step" => {
            "Reguleringen kan ikke registreres: der er allerede en regulering for samme speciale \
             og dato, eller den gælder ikke fra 1. april eller 1. oktober."
        }
        _ => "Det kan ikke lade sig gøre med de nuværende oplysninger. Intet er ændret.",
    }
}

/// The Danish text of the store's plain conflicts (`StoreError::Conflict`),
/// whose English names the case: a state that changed in the meantime, a
/// duplicate. Handlers whose store call has one known conflict give it its
/// own code and text with [`OnConflict::on_conflict`].
const CONFLICT_DA: &str = "Det kan ikke lade sig gøre, fordi noget er ændret i mellemtiden \
     eller allerede er sket. Intet er ændret. Opdater siden, og prøv igen.";

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            e if e.is_unavailable() => {
                // The cause (an sqlx error of a connection, a lock, the
                // disk) holds no request data.
                match &e {
                    StoreError::Database(cause) => {
                        tracing::warn!(error = %cause, "database unavailable")
                    }
                    other => tracing::warn!(error = %other, "database unavailable"),
                }
                ApiError::DatabaseUnavailable {
                    retry_after: DATABASE_RETRY_AFTER,
                }
            }
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(msg) => ApiError::conflict("conflict", CONFLICT_DA, msg),
            StoreError::Refused { code, message } => {
                ApiError::coded_conflict(code, refused_danish(code), message)
            }
            StoreError::DuplicatePatient { existing } => ApiError::DuplicatePatient {
                existing: existing.as_uuid(),
            },
            e @ StoreError::PeriodOpen { last_day, today } => ApiError::coded_conflict(
                "period_not_closed",
                format!(
                    "Perioden er ikke slut endnu: der kan stadig bogføres linjer i den til og med \
                     {} (i dag er det {}). Eksportér perioden fra dagen efter.",
                    last_day.format("%d.%m.%Y"),
                    today.format("%d.%m.%Y"),
                ),
                e.to_string(),
            ),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Gives the plain conflict of one store call its own code and Danish
/// text, where the handler knows the only conflict that call can have
/// (e.g. a taken e-mail address when creating an account). The English
/// stays the store's. Every other error converts as usual.
pub trait OnConflict<T> {
    /// Maps `StoreError::Conflict` to a 409 `conflict` with this item.
    fn on_conflict(self, code: &'static str, da: &str) -> ApiResult<T>;
}

impl<T> OnConflict<T> for Result<T, StoreError> {
    fn on_conflict(self, code: &'static str, da: &str) -> ApiResult<T> {
        self.map_err(|e| match e {
            StoreError::Conflict(en) => ApiError::conflict(code, da, en),
            other => other.into(),
        })
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::CodedConflict(text) => (StatusCode::CONFLICT, text.code),
            ApiError::DuplicatePatient { .. } => (StatusCode::CONFLICT, "duplicate_patient"),
            ApiError::Rule { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::TooManyRequests | ApiError::Throttled { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::DatabaseUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// What a problem with one message says, in both languages (`None`
    /// for a rule refusal, which lists its reasons itself).
    pub fn text(&self) -> Option<Text> {
        let fixed = |code, da: &str| Some(Text::new(code, da, self.to_string()));
        match self {
            ApiError::BadRequest(text)
            | ApiError::Forbidden(text)
            | ApiError::Conflict(text)
            | ApiError::CodedConflict(text) => Some(text.clone()),
            ApiError::NotFound(what) => Some(not_found_text(what)),
            ApiError::Rule { .. } => None,
            ApiError::Unauthorized => fixed(
                "unauthorized",
                "Du er ikke logget ind, eller din session er udløbet. Log ind igen.",
            ),
            ApiError::DuplicatePatient { .. } => fixed(
                "duplicate_patient",
                "Der findes allerede en patient med dette CPR-nummer i klinikken.",
            ),
            ApiError::TooManyRequests | ApiError::Throttled { .. } => fixed(
                "too_many_requests",
                "Der har været for mange forsøg. Vent lidt, og prøv igen.",
            ),
            ApiError::Busy { .. } => fixed(
                "busy",
                "Serveren har travlt lige nu. Prøv igen om et øjeblik.",
            ),
            ApiError::DatabaseUnavailable { .. } => fixed(
                "database_unavailable",
                "Databasen kan ikke svare lige nu, og intet er ændret. Prøv igen om et øjeblik.",
            ),
            ApiError::Internal(_) => Some(Text::new(
                "internal",
                "Der skete en fejl på serveren, og intet er ændret. Prøv igen. \
                 Sker det igen, så kontakt driften.",
                "Something went wrong on the server and nothing was changed. Try again; \
                 if it happens again, contact the operator.",
            )),
        }
    }

    /// The problem details body of this error.
    pub fn problem(&self) -> Problem {
        let (status, code) = self.parts();
        let text = self.text();
        let items = || text.iter().map(Text::item).collect::<Vec<_>>();
        let (title, detail, errors) = match self {
            ApiError::Rule { title, items, .. } => (title.clone(), None, items.clone()),
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                ("Internal error".to_owned(), None, items())
            }
            _ => (
                status.canonical_reason().unwrap_or("Error").to_owned(),
                text.as_ref().map(|t| t.en.clone()),
                items(),
            ),
        };
        let existing_patient_id = match self {
            ApiError::DuplicatePatient { existing } => Some(*existing),
            _ => None,
        };
        Problem {
            kind: format!("urn:konsult:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
            existing_patient_id,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&problem).unwrap_or_default(),
        )
            .into_response();
        if let ApiError::Throttled { retry_after }
        | ApiError::Busy { retry_after }
        | ApiError::DatabaseUnavailable { retry_after } = self
        {
            // Whole seconds, rounded up (RFC 9110 §10.2.3).
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(seconds.max(1)),
            );
        }
        response
    }
}

/// Result alias of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use std::time::Duration;

    /// One error of each kind. The match below has no wildcard, so a new
    /// variant does not compile until it is listed here too.
    fn one_of_each() -> Vec<ApiError> {
        let examples = vec![
            ApiError::bad_request("invalid_phone", "Telefonnummeret …", "the phone number …"),
            ApiError::Unauthorized,
            ApiError::forbidden("admin_only", "Det kan kun …", "only a clinic admin …"),
            ApiError::NotFound("patient"),
            ApiError::NotFound("something new"),
            ApiError::conflict("email_taken", "Der findes …", "an account …"),
            ApiError::coded_conflict("own_account", "Skift …", "change …"),
            ApiError::DuplicatePatient {
                existing: uuid::Uuid::nil(),
            },
            ApiError::Rule {
                code: "weak_password",
                title: "The password was not accepted".into(),
                items: vec![ProblemItem {
                    code: "password_too_short".into(),
                    da: "Adgangskoden …".into(),
                    en: "The password …".into(),
                }],
            },
            ApiError::TooManyRequests,
            ApiError::Throttled {
                retry_after: Duration::from_secs(3),
            },
            ApiError::Busy {
                retry_after: Duration::from_secs(1),
            },
            ApiError::DatabaseUnavailable {
                retry_after: DATABASE_RETRY_AFTER,
            },
            ApiError::Internal(anyhow::anyhow!("secret cause")),
        ];
        for e in &examples {
            match e {
                ApiError::BadRequest(_)
                | ApiError::Unauthorized
                | ApiError::Forbidden(_)
                | ApiError::NotFound(_)
                | ApiError::Conflict(_)
                | ApiError::CodedConflict(_)
                | ApiError::DuplicatePatient { .. }
                | ApiError::Rule { .. }
                | ApiError::TooManyRequests
                | ApiError::Throttled { .. }
                | ApiError::Busy { .. }
                | ApiError::DatabaseUnavailable { .. }
                | ApiError::Internal(_) => {}
            }
        }
        examples
    }

    /// Every problem tells the user what happened in Danish and English;
    /// `detail` is the English of its one message.
    fn assert_bilingual(problem: &Problem) {
        assert!(!problem.errors.is_empty(), "no item: {problem:?}");
        for item in &problem.errors {
            assert!(!item.code.is_empty(), "{problem:?}");
            assert!(!item.da.trim().is_empty(), "no Danish: {problem:?}");
            assert!(!item.en.trim().is_empty(), "no English: {problem:?}");
            assert_ne!(item.da, item.en, "Danish is the English: {problem:?}");
        }
        if let Some(detail) = &problem.detail {
            assert_eq!(problem.errors.len(), 1, "{problem:?}");
            assert_eq!(&problem.errors[0].en, detail, "{problem:?}");
        }
    }

    #[test]
    fn every_error_is_told_in_danish_and_english() {
        for e in one_of_each() {
            let problem = e.problem();
            assert_bilingual(&problem);
            let json = serde_json::to_value(&problem).unwrap();
            assert!(json["errors"][0]["da"].is_string(), "{json}");
        }
    }

    #[test]
    fn codes_statuses_and_details_stay_as_they_were() {
        let p = ApiError::bad_request(
            "scheduled_in_past",
            "En konsultation kan ikke planlægges i fortiden.",
            "a consultation cannot be scheduled in the past",
        )
        .problem();
        assert_eq!(p.kind, "urn:konsult:problem:bad_request");
        assert_eq!(p.status, 400);
        assert_eq!(
            p.detail.as_deref(),
            Some("a consultation cannot be scheduled in the past")
        );
        assert_eq!(p.errors[0].code, "scheduled_in_past");
        assert_eq!(
            p.errors[0].da,
            "En konsultation kan ikke planlægges i fortiden."
        );

        let p = ApiError::NotFound("route").problem();
        assert_eq!(p.kind, "urn:konsult:problem:not_found");
        assert_eq!(p.detail.as_deref(), Some("route not found"));
        assert_eq!(p.errors[0].code, "route_not_found");

        let p = ApiError::coded_conflict("own_account", "Skift …", "change …").problem();
        assert_eq!(p.kind, "urn:konsult:problem:own_account");
        assert_eq!(p.status, 409);

        // An internal error still names nothing of its cause.
        let p = ApiError::Internal(anyhow::anyhow!("secret cause")).problem();
        assert_eq!(p.detail, None);
        assert!(!format!("{p:?}").contains("secret"), "{p:?}");
    }

    #[test]
    fn store_errors_become_bilingual_problems() {
        let cases = [
            (
                StoreError::Conflict("the consultation is cancelled".into()),
                "conflict",
                "conflict",
            ),
            (
                StoreError::Refused {
                    code: "overlapping_consultation",
                    message: "the patient already has a consultation at 10:00".into(),
                },
                "overlapping_consultation",
                "overlapping_consultation",
            ),
            (
                StoreError::PeriodOpen {
                    last_day: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
                    today: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
                },
                "period_not_closed",
                "period_not_closed",
            ),
            (
                StoreError::NotFound("patient"),
                "not_found",
                "patient_not_found",
            ),
            (
                StoreError::DuplicatePatient {
                    existing: konsult_domain::PatientId::from_uuid(uuid::Uuid::nil()),
                },
                "duplicate_patient",
                "duplicate_patient",
            ),
        ];
        for (store, kind, item) in cases {
            let english = store.to_string();
            let problem = ApiError::from(store).problem();
            assert_eq!(problem.kind, format!("urn:konsult:problem:{kind}"));
            assert_eq!(problem.errors[0].code, item);
            assert_bilingual(&problem);
            // The English stays the store's words, for integrators.
            if kind != "not_found" && kind != "duplicate_patient" {
                assert_eq!(problem.detail.as_deref(), Some(english.as_str()));
            }
        }
        let p = ApiError::from(StoreError::PeriodOpen {
            last_day: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            today: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        })
        .problem();
        assert!(p.errors[0].da.contains("30.11.2026"), "{p:?}");
    }

    #[test]
    fn a_conflict_the_handler_knows_gets_its_own_code() {
        let result: Result<(), StoreError> = Err(StoreError::Conflict(
            "an account with this e-mail already exists in the clinic".into(),
        ));
        let p = result
            .on_conflict("email_taken", "Der findes allerede en bruger …")
            .unwrap_err()
            .problem();
        assert_eq!(p.kind, "urn:konsult:problem:conflict");
        assert_eq!(p.errors[0].code, "email_taken");
        assert_eq!(
            p.detail.as_deref(),
            Some("an account with this e-mail already exists in the clinic")
        );
        // Other errors convert as usual.
        let result: Result<(), StoreError> = Err(StoreError::NotFound("therapist"));
        let p = result
            .on_conflict("email_taken", "…")
            .unwrap_err()
            .problem();
        assert_eq!(p.kind, "urn:konsult:problem:not_found");
    }

    /// The string literals that follow `pattern` in the Rust sources under
    /// `crates/<crate>/src`.
    fn literals_in(krate: &str, pattern: &str) -> Vec<String> {
        let re = regex::Regex::new(pattern).unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(krate)
            .join("src");
        let mut found = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    found.extend(re.captures_iter(&text).map(|c| c[1].to_owned()));
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// Every refusal code the store can give and everything a 404 can name
    /// has a Danish text of its own, not the generic one.
    #[test]
    fn every_store_refusal_and_not_found_has_its_own_danish() {
        let codes = literals_in("konsult-store", r#"Refused \{\s*code: "([a-z_]+)""#);
        assert!(codes.contains(&"patient_inactive".to_owned()), "{codes:?}");
        for code in &codes {
            assert_ne!(
                refused_danish(code),
                refused_danish("no such code"),
                "no Danish for the store's refusal {code}"
            );
        }
        let mut names = literals_in("konsult-store", r#"NotFound\("([a-z ]+)"\)"#);
        names.extend(literals_in("konsult-server", r#"NotFound\("([a-z ]+)"\)"#));
        assert!(names.contains(&"patient".to_owned()), "{names:?}");
        for name in names {
            if name == "something new" {
                continue; // the test's own example of an unknown name
            }
            let name: &'static str = Box::leak(name.into_boxed_str());
            assert_ne!(
                not_found_text(name).code,
                "not_found",
                "no Danish for a missing {name}"
            );
        }
    }
}
