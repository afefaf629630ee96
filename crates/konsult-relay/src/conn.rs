//! Socket wrappers that put the [`Gate`] and the peer policy in the path of
//! the `turn` server, which only knows sockets as `webrtc_util::Conn`.
//!
//! * [`GateConn`] wraps the listening socket: every client datagram is
//!   screened before the server reads it.
//! * [`PeerFilterConn`] wraps each allocation's relay socket, handed out by
//!   [`FilteringRelayGenerator`]: it never sends to, and never delivers from,
//!   a denied peer. The gate already refuses permissions for such peers, so
//!   this second layer only matters if a permission ever slipped through.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::SystemTime;

use async_trait::async_trait;
use stun::message::{is_message, Message};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use turn::proto::chandata::ChannelData;
use turn::relay::RelayAddressGenerator;
use turn::server::Server;
use webrtc_util::Conn;

use crate::gate::{Gate, Refusal, Verdict};
use crate::peer_policy::{is_denied_peer, PeerPolicy};

/// The listening socket, screened by the [`Gate`].
pub(crate) struct GateConn {
    socket: Arc<UdpSocket>,
    gate: Arc<Mutex<Gate>>,
    /// Set once the server exists; used to count a username's allocations.
    server: Arc<OnceLock<Weak<Server>>>,
    /// `true` while the server is waiting in `recv_from` with no datagram in
    /// hand; `false` from the moment a datagram arrives until the server
    /// asks for the next one, i.e. while it is being screened or handled.
    /// [`crate::Relay::close_reference`] waits for `true` so that an
    /// Allocate that passed the gate just before the close is finished (and
    /// swept) rather than created after the sweep.
    idle: watch::Sender<bool>,
}

impl GateConn {
    pub(crate) fn new(
        socket: Arc<UdpSocket>,
        gate: Arc<Mutex<Gate>>,
        server: Arc<OnceLock<Weak<Server>>>,
    ) -> (Self, watch::Receiver<bool>) {
        let (idle, idle_rx) = watch::channel(true);
        (
            Self {
                socket,
                gate,
                server,
                idle,
            },
            idle_rx,
        )
    }

    async fn verdict(&self, datagram: &[u8]) -> Verdict {
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
            Verdict::CheckQuota(check) => match self.count_allocations(&check.username).await {
                Some(n) => check.verdict(n),
                // The server is not up yet (or is gone): let the client
                // retransmit rather than guess.
                None => Verdict::Drop(Refusal::NotReady),
            },
            other => other,
        }
    }

    async fn count_allocations(&self, username: &str) -> Option<usize> {
        let server = self.server.get()?.upgrade()?;
        let infos = server.get_allocations_info(None).await.ok()?;
        Some(infos.values().filter(|i| i.username == username).count())
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
            self.idle.send_replace(true);
            let (n, src) = match self.socket.recv_from(buf).await {
                Ok(read) => read,
                Err(err) if is_transient(&err) => continue,
                Err(err) => return Err(err.into()),
            };
            self.idle.send_replace(false);
            match self.verdict(&buf[..n]).await {
                Verdict::Forward => return Ok((n, src)),
                Verdict::Drop(why) => {
                    tracing::debug!(refusal = ?why, "dropped TURN datagram");
                }
                Verdict::Reply(why, response) => {
                    tracing::debug!(refusal = ?why, "refused TURN request");
                    if let Err(err) = self.socket.send_to(&response, src).await {
                        tracing::debug!(error = %err, "could not send TURN error response");
                    }
                }
                Verdict::CheckQuota(_) => {
                    // `verdict` always resolves quota checks.
                }
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        Ok(self.socket.send(buf).await?)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        Ok(self.socket.send_to(buf, target).await?)
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

/// An allocation's relay socket that refuses denied peers.
pub(crate) struct PeerFilterConn {
    inner: Arc<dyn Conn + Send + Sync>,
    policy: PeerPolicy,
}

fn denied_error() -> webrtc_util::Error {
    webrtc_util::Error::Other("peer address denied by the relay's policy".to_owned())
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
            // Drop and keep reading: an error here would end the allocation.
            if !is_denied_peer(from.ip(), &self.policy) {
                return Ok((n, from));
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.inner.send(buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if is_denied_peer(target.ip(), &self.policy) {
            return Err(denied_error());
        }
        self.inner.send_to(buf, target).await
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

/// Wraps another generator's relay sockets in [`PeerFilterConn`].
pub(crate) struct FilteringRelayGenerator {
    pub(crate) inner: Box<dyn RelayAddressGenerator + Send + Sync>,
    pub(crate) policy: PeerPolicy,
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
        let filtered: Arc<dyn Conn + Send + Sync> = Arc::new(PeerFilterConn {
            inner: conn,
            policy: self.policy,
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
        };
        assert!(strict.send_to(b"x", target_addr).await.is_err());
        assert!(strict.connect(target_addr).await.is_err());
        let lax = PeerFilterConn {
            inner: udp().await,
            policy: PeerPolicy {
                allow_loopback: true,
            },
        };
        assert_eq!(lax.send_to(b"x", target_addr).await.unwrap(), 1);
        let mut buf = [0u8; 8];
        let (n, _) = target.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"x");
    }

    #[tokio::test]
    async fn peer_filter_drops_datagrams_from_denied_peers() {
        let inner = udp().await;
        let addr = inner.local_addr().unwrap();
        let strict = PeerFilterConn {
            inner,
            policy: PeerPolicy::STRICT,
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
