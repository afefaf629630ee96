//! The OpenAPI 3.1 document served at `/api/openapi.json`.
//!
//! utoipa generates it from the handlers' annotations, so it cannot drift
//! from the routes. [`document`] then completes it where a rule holds for
//! every operation and writing it 40 times by hand would drift instead:
//!
//! - the cookie session and the CSRF header as security schemes, required
//!   by every operation except setup, login and the public join-link ones
//!   (the CSRF header only on state-changing methods);
//! - the error responses every operation can give: 400 when it takes a body
//!   or query parameters, 401 and (state-changing) 403 when it needs a
//!   session, 404 when its path names a resource, 500 always — each as
//!   `application/problem+json` with the `Problem` schema, which is also
//!   the media type of the errors the handlers list themselves (every
//!   `Problem` has at least one item in `errors` with a stable `code` and
//!   Danish and English text; `detail` is the English alone);
//! - the `PatientExport` schema, taken from `docs/patient-export.schema.json`
//!   (the one description of the export, which a test checks the real
//!   export against), its `$defs` moved into the components.
//!
//! The mirror types below give a schema to store types that do not derive
//! `ToSchema` (the store does not depend on utoipa); a test validates real
//! responses against the served document, so a mirror cannot silently
//! differ from what is sent.

use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

/// Where the patient export's JSON Schema lives in the repository.
pub const PATIENT_EXPORT_SCHEMA: &str = include_str!("../../../../docs/patient-export.schema.json");

/// A reference to the `PatientExport` schema, which [`document`] adds.
pub struct PatientExportRef;

impl utoipa::PartialSchema for PatientExportRef {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::Ref::from_schema_name("PatientExport").into()
    }
}

impl ToSchema for PatientExportRef {}

/// A journal note: the sections of the service description ("Indhold i
/// ydelser"); blank sections are dropped, and at least one must say
/// something.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = JournalNote)]
#[allow(dead_code)]
pub struct JournalNoteSchema {
    /// Status since last time (status siden sidst).
    status_since_last: Option<String>,
    /// Monitoring and evaluation (monitorering/evaluering).
    evaluation: Option<String>,
    /// Complications or side effects (komplikationer/bivirkninger).
    complications: Option<String>,
    /// Training therapy, guidance and instruction in exercises.
    exercises_and_instruction: Option<String>,
    /// Changes to goals and treatment plan, including deviations.
    plan_changes: Option<String>,
    /// The treatment goal is reached and the patient can be discharged.
    #[schema(default = false)]
    goal_reached_discharge: Option<bool>,
    /// Anything else.
    free_text: Option<String>,
}

/// A billing line in export form: no personal data, only the patient's
/// pseudonym.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = BillingLine)]
#[allow(dead_code)]
pub struct ExportLineSchema {
    /// Line id.
    line_id: uuid::Uuid,
    /// The clinic's ydernummer.
    ydernummer: String,
    /// Pseudonymous patient reference (the same for one patient across
    /// periods; merged duplicates share the surviving patient's).
    patient_ref: String,
    /// The therapist who held the consultation (absent for lines from
    /// before therapists were recorded).
    therapist_id: Option<uuid::Uuid>,
    /// Service kind: `individual_video` or `hold_video`.
    #[schema(pattern = "^(individual_video|hold_video)$")]
    kind: String,
    /// Service number, four digits, e.g. `0131`.
    #[schema(pattern = "^[0-9]{4}$")]
    service_number: String,
    /// Speciale: 51 (almen) or 62 (vederlagsfri).
    #[schema(minimum = 51, maximum = 62)]
    speciale: u16,
    /// Fee in øre (negative on a correction).
    fee_ore: i64,
    /// The region's share in øre.
    region_share_ore: i64,
    /// The patient's share in øre.
    patient_share_ore: i64,
    /// The service day: the Danish calendar day the consultation took place.
    calendar_day: chrono::NaiveDate,
    /// The posting day: the Danish day the line was made (a reversal or a
    /// re-priced line posts on the day it is made, in that day's period).
    posting_day: chrono::NaiveDate,
    /// The consultation billed.
    consultation_id: uuid::Uuid,
    /// The evidence of two-way media the line rests on: `relay_observed`
    /// (the relay saw media both ways) or `client_reported`.
    #[schema(pattern = "^(relay_observed|client_reported)$")]
    evidence: String,
    /// How the fee was derived: `<level fee øre>@<level>;<step>…[;unconfirmed:<dates>]`.
    fee_reference: String,
    /// A regulation step up to the service day was not recorded when the
    /// line was priced.
    fee_unconfirmed: bool,
    /// The line this one reverses, for a correction.
    correction_of: Option<uuid::Uuid>,
    /// When first exported (from then on the line never changes).
    exported_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One entry of the audit log, as stored (ids and codes, no personal data).
#[derive(ToSchema, serde::Serialize)]
#[schema(as = AuditEntry)]
#[allow(dead_code)]
pub struct AuditEntrySchema {
    /// Position in the clinic's chain, from 1.
    seq: i64,
    /// When.
    at: chrono::DateTime<chrono::Utc>,
    /// `therapist:<id>`, `patient-link:<consultation>` or `system`.
    actor: String,
    /// Action code, e.g. `patient.read`.
    action: String,
    /// Whose data, when it concerns a patient.
    patient: Option<uuid::Uuid>,
    /// The record acted on, when not the patient itself.
    subject: Option<String>,
    /// Hash of the previous entry (hex SHA-256).
    prev_hash: String,
    /// Hash of this entry.
    hash: String,
}

/// Whether the clinic's audit chain verifies.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = ChainStatus)]
#[serde(tag = "status", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ChainStatusSchema {
    /// Every entry links to its predecessor and hashes to its stored hash.
    Intact {
        /// Entries checked.
        entries: i64,
    },
    /// The first entry where the chain no longer holds.
    Broken {
        /// Its sequence number.
        at_seq: i64,
    },
}

/// A clinic's retention periods.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = Retention)]
#[allow(dead_code)]
pub struct RetentionSchema {
    /// Journal notes: years after the patient's last entry (at least 5).
    #[schema(minimum = 5)]
    journal_years: u32,
    /// Billing lines: years after the end of their financial year (at least 2).
    #[schema(minimum = 2)]
    billing_years: u32,
    /// Call events, login events, expired join links: days (at least 1).
    #[schema(minimum = 1)]
    event_days: u32,
}

/// An RTCIceServer entry with short-lived TURN REST credentials.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = IceServer)]
#[allow(dead_code)]
pub struct IceServerSchema {
    /// `turn:`/`turns:`/`stun:` URLs.
    urls: Vec<String>,
    /// TURN username (`expiry:reference`).
    username: Option<String>,
    /// TURN password.
    credential: Option<String>,
}

/// An account's role.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = Role)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RoleSchema {
    /// Runs consultations and manages patients.
    Therapist,
    /// Also manages accounts, clinic settings, fee tables and exports.
    Admin,
}

/// Paths that need no session.
fn is_public(path: &str) -> bool {
    path == "/api/setup" || path == "/api/login" || path.starts_with("/api/join/")
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// Completes the generated document (see the module docs).
pub fn complete(doc: &mut Value) {
    let components = doc
        .as_object_mut()
        .expect("a document is an object")
        .entry("components")
        .or_insert_with(|| json!({}));
    components["securitySchemes"] = json!({
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": crate::auth::SESSION_COOKIE,
            "description": "The session cookie set by POST /api/login (HttpOnly, SameSite=Strict). Under TLS (or behind a TLS-terminating proxy) it is named __Host-konsult_session and is Secure, Path=/, without Domain."
        },
        "csrf": {
            "type": "apiKey",
            "in": "header",
            "name": crate::auth::CSRF_HEADER,
            "description": "The session's CSRF token (csrf_token of POST /api/login or GET /api/me), required on every POST, PUT, PATCH and DELETE."
        }
    });
    let schemas = components
        .as_object_mut()
        .expect("components is an object")
        .entry("schemas")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("schemas is an object");
    add_patient_export(schemas);

    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            complete_operation(path, method, op);
        }
    }
}

fn complete_operation(path: &str, method: &str, op: &mut Value) {
    let public = is_public(path);
    let state_changing = method != "get";
    let has_query = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let has_body = op.get("requestBody").is_some();
    op["security"] = match (public, state_changing) {
        (true, _) => json!([]),
        (false, false) => json!([{"session": []}]),
        (false, true) => json!([{"session": [], "csrf": []}]),
    };
    let responses = op
        .as_object_mut()
        .expect("an operation is an object")
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    // Errors are always problem details.
    for (status, response) in responses.iter_mut() {
        if status.starts_with('4') || status.starts_with('5') {
            if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
                if let Some(json) = content.remove("application/json") {
                    content.insert("application/problem+json".into(), json);
                }
            }
        }
    }
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(description));
    };
    if has_body || has_query {
        add(
            "400",
            "Bad request: malformed JSON, a wrong type, an unknown field or an invalid query value.",
        );
    }
    if !public {
        add("401", "Not logged in, or the session has expired.");
        if state_changing {
            add(
                "403",
                "Missing or wrong CSRF token (x-csrf-token), or the account's role may not do this.",
            );
        }
    }
    if path.contains('{') {
        add(
            "404",
            "No such resource, or it belongs to another clinic (never told apart).",
        );
    }
    if state_changing && !public {
        // Any write goes through the store, which refuses what conflicts
        // with the current state, and through the domain's rules.
        add(
            "409",
            "The change conflicts with the current state (e.g. `consultation_state`, `duplicate_patient`, `patient_inactive`, `period_not_closed`); `errors[].code` says which. Nothing was changed.",
        );
        add(
            "422",
            "A domain rule refuses it (e.g. `journal_note_required`, `not_eligible`); `errors[].code` names the rule. Nothing was changed.",
        );
    }
    if public {
        add(
            "429",
            "`too_many_requests`: too many attempts from this client (login, join links); try again after `Retry-After` seconds.",
        );
    }
    add("500", "Internal error; the cause is logged, never shown.");
    add(
        "503",
        "`database_unavailable`: the database cannot serve now (unreachable, locked, full or read-only), or `busy`: every password check is taken (login); nothing was changed. Try again after `Retry-After` seconds.",
    );
}

/// Moves the export schema and its `$defs` into the components, with the
/// references rewritten from `#/$defs/X` to `#/components/schemas/PatientExport.X`.
fn add_patient_export(schemas: &mut Map<String, Value>) {
    let mut root: Value = serde_json::from_str(PATIENT_EXPORT_SCHEMA)
        .expect("docs/patient-export.schema.json is JSON");
    let root_obj = root
        .as_object_mut()
        .expect("the export schema is an object");
    root_obj.remove("$schema");
    root_obj.remove("$id");
    let defs = root_obj.remove("$defs").unwrap_or_else(|| json!({}));
    fn rewrite(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref") {
                    if let Some(name) = r.strip_prefix("#/$defs/") {
                        *r = format!("#/components/schemas/PatientExport.{name}");
                    }
                }
                map.values_mut().for_each(rewrite);
            }
            Value::Array(items) => items.iter_mut().for_each(rewrite),
            _ => {}
        }
    }
    rewrite(&mut root);
    if let Value::Object(defs) = defs {
        for (name, mut schema) in defs {
            rewrite(&mut schema);
            schemas.insert(format!("PatientExport.{name}"), schema);
        }
    }
    schemas.insert("PatientExport".into(), root);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_schema_moves_into_the_components() {
        let mut schemas = Map::new();
        add_patient_export(&mut schemas);
        let text = Value::Object(schemas.clone()).to_string();
        assert!(!text.contains("#/$defs/"), "a reference was not rewritten");
        assert!(schemas.contains_key("PatientExport"));
        assert!(schemas.keys().any(|k| k.starts_with("PatientExport.")));
        assert!(schemas["PatientExport"].get("$schema").is_none());
    }

    #[test]
    fn operations_get_security_and_their_errors() {
        let mut op = json!({"responses": {"200": {"description": "ok"},
            "409": {"description": "c", "content": {"application/json": {"schema": {}}}}},
            "requestBody": {}});
        complete_operation("/api/patients/{id}", "put", &mut op);
        assert_eq!(op["security"], json!([{"session": [], "csrf": []}]));
        for status in ["400", "401", "403", "404", "409", "422", "500", "503"] {
            assert!(op["responses"].get(status).is_some(), "{status}");
        }
        assert!(op["responses"]["409"]["content"]
            .get("application/problem+json")
            .is_some());
        let mut public = json!({"responses": {}});
        complete_operation("/api/join/{token}", "get", &mut public);
        assert_eq!(public["security"], json!([]));
        assert!(public["responses"].get("401").is_none());
        assert!(public["responses"].get("403").is_none());
        assert!(public["responses"].get("429").is_some());
        let mut read = json!({"responses": {}});
        complete_operation("/api/patients/{id}", "get", &mut read);
        assert!(
            read["responses"].get("409").is_none(),
            "a read conflicts with nothing"
        );
    }
}
