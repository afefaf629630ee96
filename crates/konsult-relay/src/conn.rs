//! Socket wrappers that put the [`Gate`], the peer policy and the media
//! [`Ledger`] in the path of the `turn` server, which only knows sockets as
//! `webrtc_util::Conn`.
//!
//! * [`GateConn`] wraps the listening socket: every client datagram is
//!   screened before the server reads it, and every datagram the server
//!   relays to a client is counted (peer → client media) on its way out.
//! * [`PeerFilterConn`] wraps each allocation's relay socket, handed out by
//!   [`FilteringRelayGenerator`]: it never sends to, and never delivers from,
//!   a denied peer (the gate already refuses permissions for such peers, so
//!   this second layer only matters if a permission ever slipped through);
//!   it counts the media it sends (client → peer); and once its reference is
//!   closed it neither sends nor delivers anything.
//!
//! # How an allocation learns its owner
//!
//! `turn` 0.17's server reads the listening socket in one loop and handles
//! each datagram to the end before it reads the next; it creates an
//! allocation's relay socket (through [`FilteringRelayGenerator`]) while
//! handling the Allocate request. So when [`GateConn`] lets an
//! authenticated Allocate through, it notes the client's address and the
//! credential's reference in [`Meter`], and the relay socket made while that
//! datagram is in hand belongs to them. The note is cleared when the server
//! asks for the next datagram. The relay socket then carries its owner for
//! life: media it sends is counted without any lookup, and the
//! client-address entry that attributes media sent *to* the client lives
//! exactly as long as the relay socket (it is removed when the socket is
//! dropped, with its allocation).

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use stun::message::{is_message, Message};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use turn::proto::chandata::ChannelData;
use turn::relay::RelayAddressGenerator;
use turn::server::Server;
use webrtc_util::Conn;

use crate::credentials::{Reference, TurnUsername};
use crate::gate::{Gate, Refusal, Verdict};
use crate::media::{self, AllocationId, Direction, Ledger, MediaCounters, ToClient, Valve};
use crate::peer_policy::{is_denied_peer, PeerPolicy};
use crate::stats::Counters;

/// The media [`Ledger`] and the owner of the Allocate in the server's hands,
/// shared by the listening socket and the relay sockets.
pub(crate) struct Meter {
    ledger: Mutex<Ledger>,
    /// Monotonic totals for monitoring ([`crate::Relay::stats`]).
    pub(crate) totals: Counters,
    /// Client address and reference of the authenticated Allocate the
    /// server is handling, if any; see the module docs.
    allocating: Mutex<Option<(SocketAddr, Reference)>>,
}

impl Meter {
    /// A meter that forgets references `max_idle` after they were last seen.
    pub(crate) fn new(max_idle: Duration) -> Self {
        Self {
            ledger: Mutex::new(Ledger::new(max_idle)),
            totals: Counters::default(),
            allocating: Mutex::new(None),
        }
    }

    /// Shuts the live allocations of every reference `closed` says is
    /// closed: from now on they start relaying nothing, whatever the server
    /// does. Returns their valves, for [`drain`].
    pub(crate) fn revoke(&self, closed: impl Fn(&Reference) -> bool) -> Vec<Arc<Valve>> {
        self.ledger().revoke(closed)
    }

    /// See [`crate::Relay::media_counters`].
    pub(crate) fn counters(&self, reference: &Reference) -> HashMap<Reference, MediaCounters> {
        self.ledger().counters(reference)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_allocating(&self, owner: Option<(SocketAddr, Reference)>) {
        *self
            .allocating
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = owner;
    }

    /// Registers a relay socket the server is creating for the Allocate in
    /// hand; `None` if there is none (which `turn` 0.17 never does).
    fn allocation_made(self: &Arc<Self>) -> Option<Owner> {
        let (client, reference) = self
            .allocating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        let (id, valve) = self
            .ledger()
            .allocation_made(Instant::now(), client, reference);
        Some(Owner {
            id,
            valve,
            meter: Arc::clone(self),
        })
    }
}

/// Waits until every valve is drained (shut, and nothing still being
/// written), checking every millisecond, for at most `max_wait`. Returns at
/// once when there are none.
pub(crate) async fn drain(valves: &[Arc<Valve>], max_wait: Duration) {
    let deadline = tokio::time::Instant::now() + max_wait;
    while !valves.iter().all(|valve| valve.is_drained()) {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The owner of one relay socket, as registered in the [`Meter`].
struct Owner {
    id: AllocationId,
    valve: Arc<Valve>,
    meter: Arc<Meter>,
}

/// Lets [`crate::Relay::close_references`] wait for exactly the datagrams
/// that may have passed the gate before a close, instead of for a moment
/// when the server happens to be idle (which, under media load, may not
/// come for a long time).
pub(crate) struct InFlight {
    /// Datagrams taken from the listening socket so far.
    taken: Arc<AtomicU64>,
    /// How many of those the server has finished with.
    done: watch::Receiver<u64>,
}

impl InFlight {
    /// Waits until the server has finished with every datagram taken from
    /// the socket before this call, for at most `max_wait`. Returns at once
    /// when nothing is in hand; also when the server has stopped.
    ///
    /// Call it after changing the gate: a datagram taken later is screened
    /// after the change (it is counted before it is screened, under the
    /// gate's lock).
    pub(crate) async fn settle(&self, max_wait: Duration) {
        let taken = self.taken.load(Ordering::SeqCst);
        let mut done = self.done.clone();
        // Err: the socket is gone with the server, nothing is in flight.
        let _ = tokio::time::timeout(max_wait, done.wait_for(|done| *done >= taken)).await;
    }
}

/// The listening socket, screened by the [`Gate`].
pub(crate) struct GateConn {
    socket: Arc<UdpSocket>,
    gate: Arc<Mutex<Gate>>,
    /// Set once the server exists; used to count a username's allocations.
    server: Arc<OnceLock<Weak<Server>>>,
    meter: Arc<Meter>,
    /// See [`InFlight`]. `taken` goes up when a datagram arrives, before it
    /// is screened; `done` catches up when the server asks for the next
    /// datagram, i.e. when it has finished with every earlier one (the
    /// server handles one datagram at a time).
    taken: Arc<AtomicU64>,
    done: watch::Sender<u64>,
}

impl GateConn {
    pub(crate) fn new(
        socket: Arc<UdpSocket>,
        gate: Arc<Mutex<Gate>>,
        server: Arc<OnceLock<Weak<Server>>>,
        meter: Arc<Meter>,
    ) -> (Self, InFlight) {
        let taken = Arc::new(AtomicU64::new(0));
        let (done, done_rx) = watch::channel(0);
        (
            Self {
                socket,
                gate,
                server,
                meter,
                taken: Arc::clone(&taken),
                done,
            },
            InFlight {
                taken,
                done: done_rx,
            },
        )
    }

    async fn verdict(&self, datagram: &[u8], src: SocketAddr) -> Verdict {
        if ChannelData::is_channel_data(datagram) || !is_message(datagram) {
            return Verdict::Forward;
        }
        let mut msg = Message {
            raw: datagram.to_vec(),
            ..Default::default()
        };
        if msg.decode().is_err() {
            return Verdict::Forward;
        }
        let verdict = self
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .screen(SystemTime::now(), &msg);
        match verdict {
            Verdict::CheckQuota(check) => match self.count_allocations(&check.reference).await {
                Some((consultation, total)) => {
                    let reference = check.reference.clone();
                    let verdict = check.verdict(consultation, total);
                    if verdict == Verdict::Forward {
                        self.meter.set_allocating(Some((src, reference)));
                    }
                    verdict
                }
                // The server is not up yet (or is gone): let the client
                // retransmit rather than guess.
                None => Verdict::Drop(Refusal::NotReady),
            },
            Verdict::CheckAllocation(mismatch) => match self.holds_allocation(src).await {
                Some(true) => Verdict::Forward,
                Some(false) => {
                    Verdict::Reply(Refusal::Invalid("no allocation to refresh"), mismatch)
                }
                None => Verdict::Drop(Refusal::NotReady),
            },
            other => other,
        }
    }

    /// Whether the client at `src` holds a live allocation (UDP: its 5-tuple
    /// is its address and the listening socket).
    async fn holds_allocation(&self, src: SocketAddr) -> Option<bool> {
        let server = self.server.get()?.upgrade()?;
        let infos = server.get_allocations_info(None).await.ok()?;
        Some(infos.keys().any(|tuple| tuple.src_addr == src))
    }

    /// The live allocations of `reference`'s consultation, whatever the
    /// participant or credential that made them, and of the whole relay.
    async fn count_allocations(&self, reference: &Reference) -> Option<(usize, usize)> {
        let server = self.server.get()?.upgrade()?;
        let infos = server.get_allocations_info(None).await.ok()?;
        let consultation = reference.consultation_str();
        let of_consultation = infos
            .values()
            .filter(|i| {
                TurnUsername::parse(&i.username)
                    .is_ok_and(|u| u.reference().consultation_str() == consultation)
            })
            .count();
        Some((of_consultation, infos.len()))
    }

    /// The server has finished with every datagram taken so far.
    fn caught_up(&self) {
        let taken = self.taken.load(Ordering::SeqCst);
        self.done.send_if_modified(|done| {
            let behind = *done != taken;
            *done = taken;
            behind
        });
        self.meter.set_allocating(None);
    }
}

#[async_trait]
impl Conn for GateConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.recv(buf).await?)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            self.caught_up();
            let (n, src) = match self.socket.recv_from(buf).await {
                Ok(read) => read,
                Err(err) if is_transient(&err) => continue,
                Err(err) => return Err(err.into()),
            };
            self.taken.fetch_add(1, Ordering::SeqCst);
            match self.verdict(&buf[..n], src).await {
                Verdict::Forward => return Ok((n, src)),
                Verdict::Drop(why) => {
                    self.meter.totals.refused(&why);
                    tracing::debug!(refusal = ?why, "dropped TURN datagram");
                }
                Verdict::Reply(why, response) => {
                    self.meter.totals.refused(&why);
                    tracing::debug!(refusal = ?why, "refused TURN request");
                    if let Err(err) = self.socket.send_to(&response, src).await {
                        tracing::debug!(error = %err, "could not send TURN error response");
                    }
                }
                Verdict::CheckQuota(_) | Verdict::CheckAllocation(_) => {
                    // `verdict` always resolves these checks.
                }
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.send(buf).await?)
    }

    /// The server writes responses and relayed data to clients here. Relayed
    /// data for a closed reference's allocation is dropped; relayed media is
    /// counted as received by the client's reference once it is sent.
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let ToClient::Relayed { media } = media::to_client(buf) else {
            return Ok(self.socket.send_to(buf, target).await?);
        };
        let Some((id, valve)) = self.meter.ledger().client_allocation(target) else {
            // Not an allocation the gate saw accepted; `turn` 0.17 makes none.
            return Ok(self.socket.send_to(buf, target).await?);
        };
        let Some(_passing) = valve.pass() else {
            return Ok(buf.len());
        };
        let n = self.socket.send_to(buf, target).await?;
        if let Some(bytes) = media {
            self.meter
                .ledger()
                .record(id, Direction::Received, Instant::now(), bytes);
            self.meter.totals.media(Direction::Received, bytes);
        }
        Ok(n)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// Whether a receive error only reports an ICMP message about an earlier
/// send (some platforms report those on unconnected UDP sockets; Linux does
/// not). Ending the read loop on one would let any client stop the server,
/// or any peer end an allocation, so the loops keep reading instead.
fn is_transient(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

/// An allocation's relay socket that refuses denied peers, counts the media
/// it sends, and goes silent when its reference is closed.
pub(crate) struct PeerFilterConn {
    inner: Arc<dyn Conn + Send + Sync>,
    policy: PeerPolicy,
    /// `None` only if the socket was made outside an accepted Allocate,
    /// which `turn` 0.17 does not do; such a socket is neither counted nor
    /// revoked (closing still deletes its allocation).
    owner: Option<Owner>,
}

impl PeerFilterConn {
    fn is_revoked(&self) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|owner| owner.valve.is_shut())
    }
}

impl Drop for PeerFilterConn {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner {
            owner
                .meter
                .ledger()
                .allocation_gone(Instant::now(), owner.id);
        }
    }
}

fn denied_error() -> webrtc_util::Error {
    webrtc_util::Error::Other("peer address denied by the relay's policy".to_owned())
}

fn revoked_error() -> webrtc_util::Error {
    webrtc_util::Error::Other("the allocation's reference is closed".to_owned())
}

#[async_trait]
impl Conn for PeerFilterConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        if is_denied_peer(addr.ip(), &self.policy) {
            return Err(denied_error());
        }
        self.inner.connect(addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        self.inner.recv(buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = match self.inner.recv_from(buf).await {
                Ok(read) => read,
                Err(webrtc_util::Error::Io(io)) if is_transient(&io.0) => continue,
                Err(err) => return Err(err),
            };
            // Drop and keep reading: an error here would end the allocation
            // behind the server's back; a revoked one is deleted by
            // `close_references` right after.
            if !is_denied_peer(from.ip(), &self.policy) && !self.is_revoked() {
                return Ok((n, from));
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.inner.send(buf).await
    }

    /// Only the server's handling of ChannelData and Send indications sends
    /// here, so what it sends is the client's payload to a peer.
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if is_denied_peer(target.ip(), &self.policy) {
            return Err(denied_error());
        }
        let _passing = match &self.owner {
            Some(owner) => Some(owner.valve.pass().ok_or_else(revoked_error)?),
            None => None,
        };
        let n = self.inner.send_to(buf, target).await?;
        if let Some(owner) = self.owner.as_ref().filter(|_| media::is_media(buf)) {
            owner
                .meter
                .ledger()
                .record(owner.id, Direction::Sent, Instant::now(), n);
            owner.meter.totals.media(Direction::Sent, n);
        }
        Ok(n)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.inner.close().await
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// Wraps another generator's relay sockets in [`PeerFilterConn`], owned by
/// the client whose Allocate is in the server's hands.
pub(crate) struct FilteringRelayGenerator {
    pub(crate) inner: Box<dyn RelayAddressGenerator + Send + Sync>,
    pub(crate) policy: PeerPolicy,
    pub(crate) meter: Arc<Meter>,
}

#[async_trait]
impl RelayAddressGenerator for FilteringRelayGenerator {
    fn validate(&self) -> Result<(), turn::Error> {
        self.inner.validate()
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        let (conn, addr) = self.inner.allocate_conn(use_ipv4, requested_port).await?;
        let owner = self.meter.allocation_made();
        if owner.is_none() {
            tracing::debug!("relay socket made outside an accepted Allocate; not counted");
        }
        let filtered: Arc<dyn Conn + Send + Sync> = Arc::new(PeerFilterConn {
            inner: conn,
            policy: self.policy,
            owner,
        });
        Ok((filtered, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn udp() -> Arc<UdpSocket> {
        Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())
    }

    #[tokio::test]
    async fn peer_filter_refuses_sending_to_denied_peers() {
        let target = udp().await;
        let target_addr = target.local_addr().unwrap();
        let strict = PeerFilterConn {
            inner: udp().await,
            policy: PeerPolicy::STRICT,
            owner: None,
        };
        assert!(strict.send_to(b"x", target_addr).await.is_err());
        assert!(strict.connect(target_addr).await.is_err());
        let lax = PeerFilterConn {
            inner: udp().await,
            policy: PeerPolicy {
                allow_loopback: true,
            },
            owner: None,
        };
        assert_eq!(lax.send_to(b"x", target_addr).await.unwrap(), 1);
        let mut buf = [0u8; 8];
        let (n, _) = target.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"x");
    }

    /// A relay socket owned by `reference`, as the generator makes one while
    /// an accepted Allocate from `client` is in hand.
    fn owned(meter: &Arc<Meter>, inner: Arc<UdpSocket>, reference: &str) -> PeerFilterConn {
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        meter.set_allocating(Some((client, Reference::parse(reference).unwrap())));
        let owner = meter.allocation_made();
        meter.set_allocating(None);
        assert!(owner.is_some());
        PeerFilterConn {
            inner,
            policy: PeerPolicy {
                allow_loopback: true,
            },
            owner,
        }
    }

    #[tokio::test]
    async fn relay_sockets_count_media_they_send_and_go_silent_when_revoked() {
        let meter = Arc::new(Meter::new(Duration::from_secs(60)));
        let conn = owned(&meter, udp().await, "c.p1");
        let conn_addr = conn.local_addr().unwrap();
        let peer = udp().await;
        let peer_addr = peer.local_addr().unwrap();
        let p1 = Reference::parse("c.p1").unwrap();

        conn.send_to(&[0x80; 100], peer_addr).await.unwrap();
        conn.send_to(&[22; 40], peer_addr).await.unwrap(); // DTLS: relayed, not counted
        let sent = meter.counters(&p1)[&p1].sent;
        assert_eq!((sent.packets, sent.bytes), (1, 100));
        assert!(sent.first.is_some() && sent.first == sent.last);

        assert_eq!(meter.revoke(|r| r == &p1).len(), 1);
        assert!(conn.send_to(&[0x80; 100], peer_addr).await.is_err());
        assert_eq!(meter.counters(&p1)[&p1].sent.packets, 1);
        peer.send_to(b"to a closed participant", conn_addr)
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(300), conn.recv_from(&mut buf)).await;
        assert!(read.is_err(), "a revoked relay socket delivers nothing");

        // Dropping the socket (with its allocation) forgets the client but
        // keeps the counters.
        drop(conn);
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        assert!(meter.ledger().client_allocation(client).is_none());
        assert_eq!(meter.counters(&p1)[&p1].sent.packets, 1);
    }

    #[tokio::test]
    async fn peer_filter_drops_datagrams_from_denied_peers() {
        let inner = udp().await;
        let addr = inner.local_addr().unwrap();
        let strict = PeerFilterConn {
            inner,
            policy: PeerPolicy::STRICT,
            owner: None,
        };
        let sender = udp().await;
        sender.send_to(b"from loopback", addr).await.unwrap();
        let mut buf = [0u8; 32];
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            strict.recv_from(&mut buf),
        )
        .await;
        assert!(read.is_err(), "a loopback datagram must not be delivered");
    }
}
