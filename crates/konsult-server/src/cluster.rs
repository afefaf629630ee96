//! Several nodes, one installation: what one node ends, every node hears
//! of, over NATS.
//!
//! The nodes share the database (PostgreSQL), which holds the truth: a
//! logout, a cancelled consultation, a revoked link or an ended call is
//! committed there first. Then the node that did it acts on it locally and
//! publishes a [`Notice`] on `<prefix>.notices`; every other node acts on it
//! too (ends the WebSockets that rest on it, closes the allocations of its
//! embedded relay). NATS delivers at most once, so each node also sweeps the
//! database every `cluster.sweep_seconds` for what it may have missed
//! ([`crate::signaling::Signaling`] runs the sweep): a lost notice delays
//! an ending, it never cancels it.
//!
//! A notice names a consultation, a join link's reference (a hash), a
//! login session's key (the SHA-256 of its token) or the login limits'
//! keyed hashes of an e-mail and a client address: never a person, an
//! address or a bearer token.
//!
//! Each node also answers `<prefix>.node.<id>.ping`, and asks itself every
//! [`PING_INTERVAL`]: the round trip through the NATS server is the
//! `konsult_nats_rtt_seconds` metric, and whether it answered is
//! `konsult_nats_up`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::ClusterSettings;
use crate::metrics::Metrics;

/// How often a node measures its round trip through NATS.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may take before NATS counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What one node tells the others: something ended, and was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Notice {
    /// Login sessions ended (logout, password change or reset, "log out
    /// everywhere", deactivation): their WebSockets end.
    SessionsEnded {
        /// The sessions' keys (`SessionKey::as_hex`).
        sessions: Vec<String>,
    },
    /// The clinic closed the consultation (cancelled, completed, ended): its
    /// WebSockets end and the relays close it.
    ConsultationClosed {
        /// The consultation.
        consultation: Uuid,
    },
    /// The clinic revoked join links: the WebSockets that hold them end and
    /// the relays close them.
    LinksRevoked {
        /// The consultation.
        consultation: Uuid,
        /// The links' references.
        links: Vec<String>,
    },
    /// A call ended (committed by the node that held its room): the relays
    /// close its allocations.
    CallEnded {
        /// The consultation.
        consultation: Uuid,
    },
    /// A login attempt failed or succeeded on another node: the login
    /// limits count it (`crate::login_limits`), so that they hold for the
    /// cluster and not per node.
    LoginOutcome {
        /// The account's limiter key (a keyed hash of the e-mail), hex.
        account: String,
        /// The client's limiter key (a keyed hash of its address), hex.
        client: Option<String>,
        /// Failed (counts) or succeeded (the account's failures are
        /// forgotten).
        failed: bool,
    },
}

impl Notice {
    /// The notice's kind, for the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::SessionsEnded { .. } => "sessions_ended",
            Notice::ConsultationClosed { .. } => "consultation_closed",
            Notice::LinksRevoked { .. } => "links_revoked",
            Notice::CallEnded { .. } => "call_ended",
            Notice::LoginOutcome { .. } => "login_outcome",
        }
    }
}

/// A notice on the wire, with the node that sent it (which ignores its own).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    node: Uuid,
    notice: Notice,
}

/// This node's link to the others; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    client: async_nats::Client,
    prefix: String,
    notices: String,
    node: Uuid,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("notices", &self.notices)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The notices other nodes send, for [`Cluster::listen`].
pub struct Inbox {
    notices: async_nats::Subscriber,
    node: Uuid,
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// Connects to NATS (`settings.nats_url`, which must be set) as a new
    /// node, subscribes to the notices and starts answering and measuring
    /// pings. NATS reconnects by itself after a connection is lost.
    pub async fn connect(
        settings: &ClusterSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Self, Inbox)> {
        let url = settings
            .nats_url
            .as_deref()
            .context("cluster.nats_url is not set")?;
        let prefix = subject_token(&settings.subject_prefix)?;
        let node = Uuid::new_v4();
        let client = async_nats::ConnectOptions::new()
            .name(format!("konsult {node}"))
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("could not reach NATS at {url}"))?;
        let notices = format!("{prefix}.notices");
        let subscriber = client.subscribe(notices.clone()).await?;
        let pings = client.subscribe(ping_subject(prefix, node)).await?;
        tokio::spawn(answer_pings(client.clone(), pings));
        let cluster = Self {
            client,
            prefix: prefix.to_owned(),
            notices,
            node,
            metrics: Arc::clone(&metrics),
        };
        tokio::spawn(measure(cluster.clone(), ping_subject(prefix, node)));
        tracing::info!(%node, subject = %cluster.notices, "joined the cluster over NATS");
        Ok((
            cluster,
            Inbox {
                notices: subscriber,
                node,
                metrics,
            },
        ))
    }

    /// This node's id in the cluster (new at each start).
    pub fn node(&self) -> Uuid {
        self.node
    }

    /// The NATS connection (shared by everything of this node).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// The first token of the installation's subjects.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Tells the other nodes. What a notice says was committed already; a
    /// notice that cannot be sent is left to their sweeps.
    pub async fn tell(&self, notice: Notice) {
        let kind = notice.kind();
        let envelope = Envelope {
            node: self.node,
            notice,
        };
        let payload = serde_json::to_vec(&envelope).expect("a notice serialises");
        match self
            .client
            .publish(self.notices.clone(), payload.into())
            .await
        {
            Ok(()) => self.metrics.cluster_notice("sent", kind),
            Err(error) => {
                tracing::warn!(%error, kind, "could not tell the other nodes; their sweep will find it")
            }
        }
    }
}

impl Inbox {
    /// Hands each notice of another node to `act`, until NATS is gone for
    /// good. Malformed notices are logged and dropped.
    pub async fn listen<F, Fut>(mut self, act: F)
    where
        F: Fn(Notice) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        while let Some(message) = self.notices.next().await {
            match serde_json::from_slice::<Envelope>(&message.payload) {
                Ok(envelope) if envelope.node == self.node => {}
                Ok(envelope) => {
                    self.metrics
                        .cluster_notice("received", envelope.notice.kind());
                    act(envelope.notice).await;
                }
                Err(error) => tracing::warn!(%error, "dropped a malformed cluster notice"),
            }
        }
    }
}

/// `prefix` if it is one NATS subject token of letters, digits, `-` and `_`.
fn subject_token(prefix: &str) -> anyhow::Result<&str> {
    let valid = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    anyhow::ensure!(
        valid,
        "cluster.subject_prefix must be letters, digits, '-' or '_' (got {prefix:?})"
    );
    Ok(prefix)
}

/// The subject each node answers pings on: its own round-trip measure,
/// and other nodes' check that it lives (`signaling::remote`).
pub fn ping_subject(prefix: &str, node: Uuid) -> String {
    format!("{prefix}.node.{node}.ping")
}

async fn answer_pings(client: async_nats::Client, mut pings: async_nats::Subscriber) {
    while let Some(ping) = pings.next().await {
        if let Some(reply) = ping.reply {
            let _ = client.publish(reply, ping.payload).await;
        }
    }
}

/// Measures the round trip of a request to this node's own ping subject
/// through the NATS server, every [`PING_INTERVAL`].
async fn measure(cluster: Cluster, subject: String) {
    let mut every = tokio::time::interval(PING_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            PING_TIMEOUT,
            cluster.client.request(subject.clone(), Vec::new().into()),
        )
        .await;
        match answer {
            Ok(Ok(_)) => cluster.metrics.nats_answered(started.elapsed()),
            _ => cluster.metrics.nats_unreachable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back_as_written() {
        let notices = [
            Notice::SessionsEnded {
                sessions: vec!["ab".repeat(32)],
            },
            Notice::ConsultationClosed {
                consultation: Uuid::from_u128(7),
            },
            Notice::LinksRevoked {
                consultation: Uuid::from_u128(7),
                links: vec!["l1".into()],
            },
            Notice::CallEnded {
                consultation: Uuid::from_u128(9),
            },
            Notice::LoginOutcome {
                account: "00".repeat(16),
                client: None,
                failed: true,
            },
        ];
        for notice in notices {
            let text = serde_json::to_string(&Envelope {
                node: Uuid::from_u128(1),
                notice: notice.clone(),
            })
            .unwrap();
            let back: Envelope = serde_json::from_str(&text).unwrap();
            assert_eq!(back.notice, notice, "{text}");
        }
        let unknown =
            r#"{"node":"00000000-0000-0000-0000-000000000001","notice":{"type":"reboot"}}"#;
        assert!(serde_json::from_str::<Envelope>(unknown).is_err());
    }

    #[test]
    fn the_prefix_is_one_subject_token() {
        assert!(subject_token("konsult").is_ok());
        assert!(subject_token("test_1-a").is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b"] {
            assert!(subject_token(bad).is_err(), "{bad:?}");
        }
    }
}
