//! Background jobs of the server: the retention job.

use std::time::Duration;

use crate::state::AppState;

/// How often the retention job runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Applies every clinic's retention periods once.
pub async fn run_retention(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now();
    for clinic in state.store.clinic_ids().await? {
        let report = state.store.enforce_retention(clinic, now).await?;
        tracing::info!(
            clinic = %clinic,
            journals_erased = report.journals_erased,
            billing_lines_deleted = report.billing_lines_deleted,
            events_deleted = report.events_deleted,
            links_deleted = report.links_deleted,
            "retention applied"
        );
    }
    Ok(())
}

/// Runs the retention job at start and then every [`RETENTION_INTERVAL`]
/// until the returned task is aborted.
pub fn spawn_retention(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = run_retention(&state).await {
                tracing::error!(error = ?e, "retention job failed");
            }
        }
    })
}
