//! Alerts in the log that help notice a breach early (GDPR art. 33): one
//! account opening many different patients' records in a short time, as a
//! stolen session or a curious insider would. The measure is counted in
//! the audit log, so it holds across restarts and several nodes.
//!
//! An alert is one structured `WARN` line with `alert = "unusual_access"`,
//! the clinic and account ids (pseudonymous), the count, the window and the
//! threshold, and never a name, patient id or other personal data. It goes
//! to the log only; whoever watches the logs decides what to do.

use chrono::Duration;
use konsult_store::therapists::Session;

use crate::state::AppState;

/// Whether the `distinct`-th patient opened within the window deserves an
/// alert: when the count first passes `threshold`, and again each time it
/// passes another `threshold` patients (a scrape that goes on keeps being
/// reported, a single crossing is reported once). `threshold` 0: never.
pub fn should_alert(distinct: i64, threshold: u32) -> bool {
    let threshold = i64::from(threshold);
    threshold > 0 && distinct > threshold && (distinct - threshold - 1) % threshold == 0
}

/// Called after a session opened one patient's record (details, journal
/// note, export, history): counts the distinct patients it opened within
/// the window and logs an alert when [`should_alert`] says so. Never fails
/// the request; a failed count is logged.
pub async fn after_patient_opened(state: &AppState, session: &Session) {
    let settings = &state.settings.alerts;
    if settings.unusual_access_patients == 0 {
        return;
    }
    let window = Duration::minutes(i64::from(settings.unusual_access_minutes.max(1)));
    let since = state.clock.now() - window;
    let actor = konsult_store::audit::Actor::Therapist(session.therapist);
    match state
        .store
        .patients_opened_since(session.clinic, actor, since)
        .await
    {
        Ok(distinct) if should_alert(distinct, settings.unusual_access_patients) => {
            tracing::warn!(
                alert = "unusual_access",
                clinic = %session.clinic,
                account = %session.therapist,
                patients = distinct,
                window_minutes = settings.unusual_access_minutes,
                threshold = settings.unusual_access_patients,
                "unusual access: one account opened many patients' records in a short time"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::error!(error = ?error, "unusual-access check failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::should_alert;

    #[test]
    fn alerts_when_the_count_passes_the_threshold_and_every_threshold_after() {
        let fired: Vec<i64> = (0..=40).filter(|n| should_alert(*n, 10)).collect();
        assert_eq!(fired, [11, 21, 31]);
        assert!(!(0..1000).any(|n| should_alert(n, 0)), "0 turns it off");
        assert_eq!(
            (0..=4).filter(|n| should_alert(*n, 1)).collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }
}
