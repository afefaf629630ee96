//! The API, signaling, operator and web tests of the server, one module per
//! file, in one test binary (one link instead of twenty-nine).
//! `hardening`, `api_logs` and `call_logs` stay binaries of their own: the
//! first measures a server under load with timing bounds, the other two
//! install a process-wide log subscriber.

#[macro_use]
mod common;

#[path = "api_accounts.rs"]
mod api_accounts;
#[path = "api_activity.rs"]
mod api_activity;
#[path = "api_alerts.rs"]
mod api_alerts;
#[path = "api_bad_input.rs"]
mod api_bad_input;
#[path = "api_billing_audit.rs"]
mod api_billing_audit;
#[path = "api_concurrency.rs"]
mod api_concurrency;
#[path = "api_history.rs"]
mod api_history;
#[path = "api_join_limits.rs"]
mod api_join_limits;
#[path = "api_lifecycle.rs"]
mod api_lifecycle;
#[path = "api_openapi.rs"]
mod api_openapi;
#[path = "api_overlap.rs"]
mod api_overlap;
#[path = "api_patient_rights.rs"]
mod api_patient_rights;
#[path = "api_privacy.rs"]
mod api_privacy;
#[path = "api_problem_language.rs"]
mod api_problem_language;
#[path = "api_records.rs"]
mod api_records;
#[path = "api_retention.rs"]
mod api_retention;
#[path = "api_scenario.rs"]
mod api_scenario;
#[path = "api_secretary.rs"]
mod api_secretary;
#[path = "api_setup.rs"]
mod api_setup;
#[path = "api_tenant_isolation.rs"]
mod api_tenant_isolation;
#[path = "audit_heads.rs"]
mod audit_heads;
#[path = "call_writes.rs"]
mod call_writes;
#[path = "cli.rs"]
mod cli;
#[path = "compliance_map.rs"]
mod compliance_map;
#[path = "health.rs"]
mod health;
#[path = "ledger_props.rs"]
mod ledger_props;
#[path = "signaling_admission.rs"]
mod signaling_admission;
#[path = "signaling_auth.rs"]
mod signaling_auth;
#[path = "signaling_bad_input.rs"]
mod signaling_bad_input;
#[path = "signaling_shards.rs"]
mod signaling_shards;
#[path = "signaling_v2.rs"]
mod signaling_v2;
#[path = "tls.rs"]
mod tls;
#[path = "web_rehearsal.rs"]
mod web_rehearsal;
