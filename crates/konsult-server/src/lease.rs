//! Who owns a room in a cluster: a lease in NATS JetStream key-value
//! (issue 16, item 2). The node that owns a room runs its hub; when it dies
//! (kill -9) or stalls, its lease runs out and another node may claim the
//! room and restore it from the saved room record.
//!
//! Why JetStream key-value rather than PostgreSQL advisory locks: an
//! advisory lock lives as long as the owner's database connection, so a
//! node that is paused (a long GC-like stall, `SIGSTOP`, a frozen VM) keeps
//! its rooms for ever and nobody can take over; a lease with a time to live
//! runs out by itself. And a key-value entry has a revision that every
//! renewal must name (compare-and-set), so a node can never renew a lease
//! another node has taken since.
//!
//! The bucket `<prefix>_rooms` keeps one entry per owned room: the owner's
//! node id, written with `create` (only if absent) and renewed with
//! `update` at the revision last written. The bucket's `max_age` is the
//! lease's time to live: an entry not renewed within it is removed by the
//! NATS server, and the room may be claimed again.
//!
//! **Split brain.** A holder counts its lease as valid only until
//! `sent + ttl − margin`, where `sent` is when it *sent* its last successful
//! claim or renewal, by its own monotonic clock ([`Leases::valid`]). The
//! server cannot remove the entry before `commit + ttl`, and the commit
//! came after the sending: so the holder stops counting itself the owner
//! before anyone else can become it. A paused owner that wakes up finds its
//! lease out of date by its own clock before doing anything, and its next
//! renewal fails (the revision moved on).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::kv;
use uuid::Uuid;

/// How long before the end of its time to live a holder stops trusting a
/// lease: covers the rate at which two machines' clocks can drift apart
/// over one time to live, with a wide margin.
const SAFETY_MARGIN_PER_SECOND: Duration = Duration::from_millis(50);

/// The leases of one node.
#[derive(Clone)]
pub struct Leases {
    kv: kv::Store,
    node: Uuid,
    ttl: Duration,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A room this node owns, while [`Leases::valid`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The room (its consultation).
    pub room: Uuid,
    /// The revision of the entry last written: what the next renewal names,
    /// and a fencing token (higher for every new owner of the room).
    pub revision: u64,
    /// When the claim or renewal that wrote it was sent.
    sent: Instant,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node owns the room now.
    Owned(Lease),
    /// Another node owns it.
    OwnedBy(Uuid),
}

/// The lease was lost: another node has claimed the room since (or the
/// entry ran out). The holder must stop acting on the room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the lease on room {room} was lost")]
pub struct Lost {
    /// The room.
    pub room: Uuid,
}

impl Leases {
    /// Opens (or makes) the bucket `<prefix>_rooms` with a time to live of
    /// `ttl`, for `node`.
    pub async fn open(
        client: async_nats::Client,
        prefix: &str,
        node: Uuid,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let bucket = format!("{prefix}_rooms");
        create_bucket(&client, &bucket, ttl).await?;
        let kv = async_nats::jetstream::new(client)
            .get_key_value(bucket)
            .await
            .context("could not open the rooms' lease bucket in NATS JetStream")?;
        Ok(Self { kv, node, ttl })
    }

    /// This node.
    pub fn node(&self) -> Uuid {
        self.node
    }

    /// The lease's time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Claims `room` for this node if nobody owns it.
    pub async fn claim(&self, room: Uuid) -> anyhow::Result<Claim> {
        let sent = Instant::now();
        match self
            .kv
            .create(key(room), self.node.as_bytes().to_vec().into())
            .await
        {
            Ok(revision) => Ok(Claim::Owned(Lease {
                room,
                revision,
                sent,
            })),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                match self.owner(room).await? {
                    Some(owner) => Ok(Claim::OwnedBy(owner)),
                    // It ran out between the two requests.
                    None => Box::pin(self.claim(room)).await,
                }
            }
            Err(error) => Err(error).context("could not claim a room's lease"),
        }
    }

    /// The node that owns `room`, if any.
    pub async fn owner(&self, room: Uuid) -> anyhow::Result<Option<Uuid>> {
        let entry = self
            .kv
            .entry(key(room))
            .await
            .context("could not read a room's lease")?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| Uuid::from_slice(&e.value).ok()))
    }

    /// The rooms some node holds a lease on now (a released or run-out
    /// lease is not listed).
    pub async fn held(&self) -> anyhow::Result<std::collections::HashSet<Uuid>> {
        use futures_util::TryStreamExt as _;
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .context("could not list the rooms' leases")?
            .try_collect()
            .await
            .context("could not list the rooms' leases")?;
        Ok(keys
            .iter()
            .filter_map(|k| Uuid::try_parse(k).ok())
            .collect())
    }

    /// Renews `lease` for another time to live; [`Lost`] if another node
    /// owns the room now or the entry ran out. Also lost when this node
    /// itself stopped counting on it ([`Leases::valid`]): a late renewal
    /// must not revive a lease its holder already gave up.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), Lost> {
        let lost = Lost { room: lease.room };
        if !self.valid(lease, Instant::now()) {
            return Err(lost);
        }
        let sent = Instant::now();
        match self
            .kv
            .update(
                key(lease.room),
                self.node.as_bytes().to_vec().into(),
                lease.revision,
            )
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                lease.sent = sent;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(room = %lease.room, %error, "a room's lease could not be renewed");
                Err(lost)
            }
        }
    }

    /// Whether this node may still act as the owner of `lease`'s room at
    /// `now`: before the lease's time to live, less a safety margin, has
    /// passed since its last claim or renewal was sent.
    pub fn valid(&self, lease: &Lease, now: Instant) -> bool {
        now < lease.sent + self.trusted_for()
    }

    /// How long after sending a claim or renewal this node trusts it.
    fn trusted_for(&self) -> Duration {
        let margin = SAFETY_MARGIN_PER_SECOND.mul_f64(self.ttl.as_secs_f64());
        self.ttl
            .saturating_sub(margin.max(Duration::from_millis(100)))
    }

    /// Gives the room up (its call ended, or the node shuts down): another
    /// node may claim it at once.
    pub async fn release(&self, lease: Lease) {
        if let Err(error) = self
            .kv
            .delete_expect_revision(key(lease.room), Some(lease.revision))
            .await
        {
            // Lost already, or NATS is away: the entry runs out by itself.
            tracing::debug!(room = %lease.room, %error, "a room's lease was not released");
        }
    }
}

/// Makes the key-value bucket's stream by the JetStream API itself, as a
/// key-value bucket is defined (`KV_<bucket>`, one message per subject,
/// roll-ups, direct gets): `async-nats`' own `create_key_value` first reads
/// the account's information and cannot parse what the nats-server of
/// Debian 12 (2.9) answers. Making an existing bucket again with the same
/// settings is harmless.
async fn create_bucket(
    client: &async_nats::Client,
    bucket: &str,
    ttl: Duration,
) -> anyhow::Result<()> {
    let nanos = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
    let config = serde_json::json!({
        "name": format!("KV_{bucket}"),
        "description": "Konsult: which node owns each room (leases)",
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "max_msgs_per_subject": 1,
        "max_age": nanos,
        // Leases outlive no NATS restart: the nodes claim again.
        "storage": "memory",
        "num_replicas": 1,
        "discard": "new",
        "duplicate_window": nanos.min(120_000_000_000),
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
    });
    let answer = client
        .request(
            format!("$JS.API.STREAM.CREATE.KV_{bucket}"),
            serde_json::to_vec(&config)?.into(),
        )
        .await
        .context("NATS JetStream did not answer (is it enabled? nats-server -js)")?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
    match answer.get("error") {
        // 10058: a stream of that name exists already (another node made it).
        Some(error) if error["err_code"] != 10058 => {
            anyhow::bail!("NATS JetStream refused the lease bucket: {error}")
        }
        _ => Ok(()),
    }
}

/// A room's key in the bucket.
fn key(room: Uuid) -> String {
    room.simple().to_string()
}
