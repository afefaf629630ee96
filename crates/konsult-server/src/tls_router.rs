//! The HTTPS listener's TLS acceptor: each connection goes where its
//! ClientHello asks, so TURN over TLS shares port 443, the host and the IP
//! of the dashboard (issue 13): a patient behind a firewall that lets only
//! HTTPS out still reaches the relay.
//!
//! [`route`] decides from the ClientHello alone, before the handshake:
//! TURN when it names the relay's host (`turn.tls_host`, SNI) or offers
//! only the ALPN protocol `stun.turn` (RFC 7443); HTTPS otherwise. Both
//! complete the handshake with the server's one certificate, which must
//! therefore cover the relay's host name too. A TURN connection is handed to
//! the embedded relay ([`crate::relay::Turn::serve_stream`]) and leaves the
//! HTTP server; an HTTPS one is served as before.
//!
//! [`RouteByHello`] keeps what the HTTPS listener had: every connection
//! passes [`connections::Guard`] first (the connection cap, and the
//! deadline for the handshake and first request), the ClientHello and
//! handshake together must finish within the handshake timeout, and a
//! connection that fails any of it is dropped. A TURN connection is freed
//! from the first-request deadline once its handshake is done (it sends no
//! HTTP request) but keeps its place under the connection cap for as long
//! as it lives.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::Accept;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::connections::{self, Guarded, MarkFirstRequest};
use crate::relay::{TlsHost, Turn};

/// The ALPN protocol of TURN over TLS (RFC 7443 §6).
pub const STUN_TURN_ALPN: &[u8] = b"stun.turn";

/// Where a TLS connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The dashboard, the API, signaling: HTTPS.
    Https,
    /// The embedded TURN relay.
    Turn,
}

/// Where a connection whose ClientHello carries `server_name` (SNI) and
/// `alpn` (the protocols offered, in order; `None` without the extension)
/// goes, when the relay is served over TLS as `relay_host` (`None`: TURN
/// over TLS is not offered, everything is HTTPS).
///
/// TURN when the SNI is the relay's host name (compared without regard to
/// case, as DNS names are), or when `stun.turn` is the only protocol
/// offered: a TURN client that names no host (a URL with an IP address
/// sends no SNI) but speaks RFC 7443. Offered next to HTTP protocols,
/// `stun.turn` does not take the connection from HTTPS.
pub fn route<'a>(
    server_name: Option<&str>,
    alpn: Option<impl IntoIterator<Item = &'a [u8]>>,
    relay_host: Option<&TlsHost>,
) -> Route {
    let Some(relay_host) = relay_host else {
        return Route::Https;
    };
    if server_name.is_some_and(|name| relay_host.matches(name)) {
        return Route::Turn;
    }
    let mut offered = alpn.into_iter().flatten();
    match (offered.next(), offered.next()) {
        (Some(only), None) if only == STUN_TURN_ALPN => Route::Turn,
        _ => Route::Https,
    }
}

/// TURN over TLS on the HTTPS listener: where the relay is, and the
/// certificate it is served with.
#[derive(Clone)]
pub struct TurnOverTls {
    host: TlsHost,
    relay: Arc<Turn>,
    /// The server's configuration with `stun.turn` as its only ALPN
    /// protocol, for a client that offered it.
    with_alpn: Arc<ServerConfig>,
    /// The server's configuration without ALPN, for a client that offered
    /// none or only others (a browser naming the relay's host): no protocol
    /// is agreed then, rather than the handshake failing over HTTP's.
    without_alpn: Arc<ServerConfig>,
}

impl TurnOverTls {
    /// TURN over TLS for connections naming `host`, served by `relay` with
    /// the HTTPS configuration's certificate.
    pub fn new(host: TlsHost, relay: Arc<Turn>, https: &ServerConfig) -> Self {
        let mut with_alpn = https.clone();
        with_alpn.alpn_protocols = vec![STUN_TURN_ALPN.to_vec()];
        let mut without_alpn = https.clone();
        without_alpn.alpn_protocols = Vec::new();
        Self {
            host,
            relay,
            with_alpn: Arc::new(with_alpn),
            without_alpn: Arc::new(without_alpn),
        }
    }
}

/// The HTTPS listener's acceptor: [`connections::Guard`], then the
/// ClientHello, then [`route`], then the handshake, within
/// `handshake_timeout` from the first byte read to the last byte of the
/// handshake.
#[derive(Clone)]
pub struct RouteByHello {
    guard: connections::Guard,
    https: Arc<ServerConfig>,
    turn: Option<TurnOverTls>,
    handshake_timeout: Duration,
}

impl RouteByHello {
    /// HTTPS with `https`; TURN over TLS too when `turn` is given.
    pub fn new(
        guard: connections::Guard,
        https: Arc<ServerConfig>,
        turn: Option<TurnOverTls>,
        handshake_timeout: Duration,
    ) -> Self {
        Self {
            guard,
            https,
            turn,
            handshake_timeout,
        }
    }
}

/// What an accepted connection turned out to be, once its handshake is done.
enum Accepted<S> {
    Https(TlsStream<Guarded<TcpStream>>, MarkFirstRequest<S>),
    Turn(TlsStream<Guarded<TcpStream>>, SocketAddr, Arc<Turn>),
}

impl<S> Accept<TcpStream, S> for RouteByHello
where
    S: Send + 'static,
{
    type Stream = TlsStream<Guarded<TcpStream>>;
    type Service = MarkFirstRequest<S>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let peer = stream.peer_addr()?;
            let (stream, service) = this.guard.accept(stream, service).await?;
            let handshake = async {
                let start =
                    LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
                let (to, offers_stun_turn) = {
                    let hello = start.client_hello();
                    let relay_host = this.turn.as_ref().map(|t| &t.host);
                    (
                        route(hello.server_name(), hello.alpn(), relay_host),
                        hello
                            .alpn()
                            .is_some_and(|mut p| p.any(|p| p == STUN_TURN_ALPN)),
                    )
                };
                match (to, &this.turn) {
                    (Route::Turn, Some(turn)) => {
                        let config = if offers_stun_turn {
                            Arc::clone(&turn.with_alpn)
                        } else {
                            Arc::clone(&turn.without_alpn)
                        };
                        let stream = start.into_stream(config).await?;
                        Ok(Accepted::Turn(stream, peer, Arc::clone(&turn.relay)))
                    }
                    _ => {
                        let stream = start.into_stream(Arc::clone(&this.https)).await?;
                        Ok::<_, io::Error>(Accepted::Https(stream, service))
                    }
                }
            };
            let accepted = tokio::time::timeout(this.handshake_timeout, handshake)
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            match accepted {
                Accepted::Https(stream, service) => Ok((stream, service)),
                Accepted::Turn(mut stream, peer, relay) => {
                    // TURN sends no HTTP request: the first-request deadline
                    // does not apply; the connection permit stays held.
                    stream.get_mut().0.handed_over();
                    relay.serve_stream(stream, peer).await;
                    // Not an error of the client's: the connection now
                    // belongs to the relay, and the HTTP server lets go of
                    // its side (it drops accept errors silently).
                    Err(io::Error::other("handed to the TURN relay"))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> TlsHost {
        TlsHost::parse("turn.klinik.example").unwrap()
    }

    fn route_of(sni: Option<&str>, alpn: Option<&[&[u8]]>, host: Option<&TlsHost>) -> Route {
        route(sni, alpn.map(|a| a.iter().copied()), host)
    }

    #[test]
    fn the_relay_host_name_goes_to_the_relay_whatever_its_case() {
        let h = host();
        assert_eq!(
            route_of(Some("turn.klinik.example"), None, Some(&h)),
            Route::Turn
        );
        assert_eq!(
            route_of(Some("TURN.Klinik.Example"), None, Some(&h)),
            Route::Turn
        );
        // A browser naming the relay may offer HTTP's protocols: the name
        // decides.
        assert_eq!(
            route_of(
                Some("turn.klinik.example"),
                Some(&[b"h2", b"http/1.1"]),
                Some(&h)
            ),
            Route::Turn
        );
    }

    #[test]
    fn the_dashboard_and_nameless_clients_get_https() {
        let h = host();
        assert_eq!(
            route_of(
                Some("video.klinik.example"),
                Some(&[b"h2", b"http/1.1"]),
                Some(&h)
            ),
            Route::Https
        );
        assert_eq!(route_of(None, None, Some(&h)), Route::Https);
        // Names that only contain or extend the relay's are not it.
        for other in [
            "klinik.example",
            "xturn.klinik.example",
            "turn.klinik.example.evil",
        ] {
            assert_eq!(
                route_of(Some(other), None, Some(&h)),
                Route::Https,
                "{other}"
            );
        }
    }

    #[test]
    fn only_stun_turn_as_alpn_goes_to_the_relay() {
        let h = host();
        assert_eq!(route_of(None, Some(&[b"stun.turn"]), Some(&h)), Route::Turn);
        assert_eq!(
            route_of(
                Some("video.klinik.example"),
                Some(&[b"stun.turn"]),
                Some(&h)
            ),
            Route::Turn
        );
        // Next to HTTP, or with nothing offered, it stays HTTPS.
        assert_eq!(
            route_of(None, Some(&[b"stun.turn", b"http/1.1"]), Some(&h)),
            Route::Https
        );
        assert_eq!(
            route_of(None, Some(&[b"http/1.1", b"stun.turn"]), Some(&h)),
            Route::Https
        );
        assert_eq!(route_of(None, Some(&[]), Some(&h)), Route::Https);
    }

    #[test]
    fn without_turn_over_tls_everything_is_https() {
        assert_eq!(
            route_of(Some("turn.klinik.example"), None, None),
            Route::Https
        );
        assert_eq!(route_of(None, Some(&[b"stun.turn"]), None), Route::Https);
    }
}
