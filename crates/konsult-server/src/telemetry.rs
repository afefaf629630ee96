//! The one place that builds the tracing subscriber.
//!
//! Log lines carry pseudonymous ids only: never names, CPR numbers, contact
//! data, journal text, SDP, ICE candidates or IP addresses.

use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// Installs a subscriber that writes to `sink`, filtered by `RUST_LOG`
/// (default `info`). Tests pass an in-memory sink to grep the logs.
pub fn init<W>(sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .try_init();
}
