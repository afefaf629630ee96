//! What the operator does from the command line, on the installation's own
//! settings and database (next to a running server, or before it starts):
//! `konsult clinic add`, `konsult audit heads` and `konsult audit check`.

use chrono::{DateTime, Utc};
use konsult_domain::ClinicId;
use konsult_store::clinics::NewClinic;

use crate::config::Settings;
use crate::{input, startup};

/// A clinic the operator added, and the one-time link for its first admin.
#[derive(Clone)]
pub struct AddedClinic {
    /// The new clinic.
    pub clinic: ClinicId,
    /// `<public URL>/app/setup#<token>`: creates the clinic's first admin.
    pub link: String,
    /// When the link stops working (`setup_link_hours` after now).
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for AddedClinic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The link is a bearer token.
        f.debug_struct("AddedClinic")
            .field("clinic", &self.clinic)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Adds a clinic (name, six-digit ydernummer, specialer 51 and/or 62)
/// without any account, audited as the operator's (`clinic.create_by_operator`
/// in the new clinic's own audit chain), and returns the setup link for its
/// first admin. The link's address is `public_url`, or derived from
/// `listen` as the server derives it.
pub async fn add_clinic(
    settings: &Settings,
    name: &str,
    ydernummer: &str,
    specialer: &[u16],
    now: DateTime<Utc>,
) -> anyhow::Result<AddedClinic> {
    let clinic = NewClinic {
        name: input::name(name, "name", "Navnet").map_err(|e| anyhow::anyhow!("{e}"))?,
        ydernummer: input::ydernummer(ydernummer).map_err(|e| anyhow::anyhow!("{e}"))?,
        specialer: crate::routes::account::parse_specialer(specialer)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let store = startup::open_store(settings).await?;
    let added = store.add_clinic(clinic, now).await;
    store.close().await;
    let (id, token) = added?;
    tracing::info!(clinic = %id, "clinic added by the operator");
    Ok(AddedClinic {
        clinic: id,
        link: format!("{}/app/setup#{token}", public_base(settings)),
        expires_at: now + settings.setup_link_max_age(),
    })
}

/// The base URL links point to: `public_url`, else the listen address with
/// the scheme the server would serve.
fn public_base(settings: &Settings) -> String {
    match &settings.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if settings.serves_tls() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", settings.listen)
        }
    }
}

/// Every clinic's audit chain head, signed with the installation's audit
/// key (`konsult audit heads`).
pub async fn audit_heads(
    settings: &Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<konsult_store::audit::SignedHead>> {
    let store = startup::open_store(settings).await?;
    let heads = store.signed_heads(now).await;
    store.close().await;
    Ok(heads?)
}

/// What `konsult audit check` found: one line per exported head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadReport {
    /// `<clinic> seq <n>: holds` or what is wrong.
    pub lines: Vec<String>,
    /// Every head holds.
    pub all_hold: bool,
}

/// Checks exported heads (JSON lines as `konsult audit heads` prints them)
/// against the database.
pub async fn check_audit_heads(settings: &Settings, text: &str) -> anyhow::Result<HeadReport> {
    use konsult_store::audit::{HeadCheck, SignedHead};
    let mut heads = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let head: SignedHead = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("line {}: not an exported head: {e}", n + 1))?;
        heads.push(head);
    }
    let store = startup::open_store(settings).await?;
    let mut report = HeadReport {
        lines: Vec::new(),
        all_hold: true,
    };
    for head in &heads {
        let check = match store.check_signed_head(head).await {
            Ok(check) => check,
            Err(e) => {
                store.close().await;
                return Err(e.into());
            }
        };
        let what = match check {
            HeadCheck::Holds => "holds".to_owned(),
            HeadCheck::BadSignature => "NOT signed by this installation".to_owned(),
            HeadCheck::ChainBroken { at_seq } => format!("the chain is BROKEN at entry {at_seq}"),
            HeadCheck::Rewritten => {
                "the chain no longer holds this head: entries were REMOVED or REWRITTEN".to_owned()
            }
        };
        report.all_hold &= check == HeadCheck::Holds;
        report
            .lines
            .push(format!("clinic {} entry {}: {what}", head.clinic, head.seq));
    }
    store.close().await;
    Ok(report)
}
