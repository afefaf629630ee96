//! `konsult relay-check`: an allocation through every TURN URL patients are
//! given, over the transport the URL names (UDP, TCP or TLS), as a
//! patient's browser would make it; and [`StreamClient`], the small TURN
//! client over a byte stream (RFC 8656 §3.1 framing) it uses for TCP and TLS.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use konsult_relay::{Reference, TurnCredentials};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use secrecy::{ExposeSecret, SecretString};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::{ErrorCodeAttribute, CODE_STALE_NONCE, CODE_UNAUTHORIZED};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST,
    CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_REFRESH,
};
use stun::textattrs::{Nonce, Realm, Username};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

use super::{advertised_ip, tls_offer, turn_url_host, url_host, EmbeddedUrls, SECRET_FILE};
use crate::config::Settings;

/// How a relay URL is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `turn:…` or `turn:…?transport=udp`.
    Udp,
    /// `turn:…?transport=tcp`.
    Tcp,
    /// `turns:…` (TLS over TCP).
    Tls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        })
    }
}

/// What `konsult relay-check` found for one relay URL a patient is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCheck {
    /// The URL, as handed out.
    pub url: String,
    /// How it is reached; `None` when it cannot be checked from here.
    pub transport: Option<Transport>,
    /// The relayed address an allocation through it got, or why it failed
    /// (or why it could not be checked from here).
    pub outcome: Result<SocketAddr, String>,
    /// What else a patient should know: for TLS, whether and how the
    /// certificate was checked.
    pub note: Option<String>,
}

impl fmt::Display for UrlCheck {
    /// One line: what a patient given this URL would get.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.outcome, self.transport) {
            (Ok(relayed), Some(transport)) => write!(
                f,
                "{}: allocated over {transport}, relayed address {relayed}",
                self.url
            )?,
            (Ok(relayed), None) => write!(f, "{}: allocated, relayed address {relayed}", self.url)?,
            (Err(why), _) => write!(f, "{}: FAILED: {why}", self.url)?,
        }
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// How long one allocation through one URL may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whose certificate a `turns:` URL should present.
#[derive(Debug, Clone)]
enum Expect {
    /// This server's configured one (`tls.cert`), for its host name.
    Configured(CertificateDer<'static>),
    /// Not checked, for the reason given.
    Unchecked(&'static str),
}

/// Allocates through every TURN URL this installation hands to patients
/// (the embedded relay's over UDP, TCP and TLS, and each external one),
/// with a one-minute credential of its own (`relay-check`), as a patient's
/// browser would: `konsult relay-check`, next to a running server.
///
/// A `turns:` URL of the embedded relay must present the configured
/// certificate (`tls.cert`), valid for the relay's host name; with the
/// generated self-signed certificate, and for external relays, the
/// certificate is not checked, and the check says so.
pub async fn check_relays(settings: &Settings) -> anyhow::Result<Vec<UrlCheck>> {
    let turn = &settings.turn;
    let secret = match &turn.secret {
        Some(secret) => secret.clone(),
        None => {
            let path = settings.data_dir.join(SECRET_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no TURN secret: set turn.secret, or start the server once so that it creates {}",
                    path.display()
                )
            })?;
            SecretString::from(text.trim().to_owned())
        }
    };
    let mut urls: Vec<(String, Expect)> = Vec::new();
    if turn.enabled {
        let embedded = EmbeddedUrls {
            host_port: format!(
                "{}:{}",
                url_host(advertised_ip(settings)?),
                turn.listen.port()
            ),
            udp: turn.udp,
            tcp: turn.tcp,
            tls: tls_offer(
                settings,
                settings.serves_tls().then_some(settings.listen.port()),
            )?,
        };
        let expect = match &settings.tls.cert {
            // Read only when there is a turns: URL to check with it.
            Some(path) if embedded.tls.is_some() => Expect::Configured(first_certificate(path)?),
            _ => Expect::Unchecked(
                "certificate not checked: the server's generated self-signed one, which patients' browsers do not trust; configure tls.cert",
            ),
        };
        urls.extend(embedded.turn().into_iter().map(|u| (u, expect.clone())));
    }
    urls.extend(
        turn.external_urls
            .iter()
            .filter(|u| !u.starts_with("stun:"))
            .map(|u| {
                (
                    u.clone(),
                    Expect::Unchecked("certificate not checked: an external relay's"),
                )
            }),
    );
    let reference = Reference::parse("relay-check").expect("a valid reference");
    let creds = TurnCredentials::issue(
        &secret,
        &reference,
        SystemTime::now(),
        Duration::from_secs(60),
    )
    .context("cannot issue a TURN credential")?;
    let username = creds.username().to_string();
    let password = creds.password().expose_secret();
    let mut checks = Vec::new();
    for (url, expect) in urls {
        checks.push(check_url(url, expect, &username, password).await);
    }
    Ok(checks)
}

/// The first certificate of a PEM file (the server's own, before its chain).
fn first_certificate(path: &Path) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read the TLS certificate {}", path.display()))?
        .next()
        .with_context(|| format!("no certificate in {}", path.display()))?
        .with_context(|| format!("cannot read the TLS certificate {}", path.display()))
}

/// One URL: parsed, allocated through, described.
async fn check_url(url: String, expect: Expect, username: &str, password: &str) -> UrlCheck {
    let Some((transport, host, port)) = target(&url) else {
        return UrlCheck {
            url,
            transport: None,
            outcome: Err(
                "not checked: only turn: over UDP or TCP and turns: over TCP can be checked from here"
                    .to_owned(),
            ),
            note: None,
        };
    };
    let host = host.to_owned();
    let attempt = async {
        match transport {
            Transport::Udp => {
                let target = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                try_allocation(&target, username, password).await
            }
            Transport::Tcp => {
                let stream = connect(&host, port).await?;
                allocate_and_release(stream, username, password).await
            }
            Transport::Tls => {
                let stream = connect(&host, port).await?;
                let verifier = match &expect {
                    Expect::Configured(cert) => ExpectCertificate::new(Some(cert.clone())),
                    Expect::Unchecked(_) => ExpectCertificate::new(None),
                };
                let stream = tls_connect(stream, &host, verifier, None).await?;
                allocate_and_release(stream, username, password).await
            }
        }
    };
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())));
    let note = match (transport, &expect) {
        (Transport::Tls, Expect::Unchecked(why)) => Some((*why).to_owned()),
        (Transport::Tls, Expect::Configured(_)) if outcome.is_ok() => Some(format!(
            "certificate checked: the configured tls.cert, valid for {host}"
        )),
        _ => None,
    };
    UrlCheck {
        url,
        transport: Some(transport),
        outcome,
        note,
    }
}

/// The transport, host and port of a `turn:`/`turns:` URL (default
/// transport UDP for `turn:`, TCP for `turns:`); `None` for anything this
/// check cannot reach (`stun:`, `turns:` over DTLS).
fn target(url: &str) -> Option<(Transport, &str, u16)> {
    let (host, port) = turn_url_host(url)?;
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let transport = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("transport="));
    let transport = match (url.starts_with("turns:"), transport) {
        (false, None | Some("udp")) => Transport::Udp,
        (false, Some("tcp")) => Transport::Tcp,
        (true, None | Some("tcp")) => Transport::Tls,
        _ => return None,
    };
    Some((transport, host, port))
}

/// A TCP connection to `host:port`. Names under `localhost` are loopback
/// (RFC 6761), as browsers take them, whatever the resolver says.
async fn connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let connecting = if host == "localhost" || host.ends_with(".localhost") {
        tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await
    } else {
        tokio::net::TcpStream::connect((host, port)).await
    };
    connecting.map_err(|e| format!("cannot connect: {e}"))
}

/// TLS over `stream` for `server_name` (sent as SNI unless it is an IP
/// address), checking the certificate with `verifier`, offering `alpn`.
pub async fn tls_connect<S>(
    stream: S,
    server_name: &str,
    verifier: ExpectCertificate,
    alpn: Option<&[u8]>,
) -> Result<tokio_rustls::client::TlsStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&verifier.provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| format!("{server_name} is not a host name"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))
}

/// The certificate check of `relay-check`'s TLS connections: the server must
/// present exactly the expected certificate, valid for the name connected
/// to; or, with none expected, anything is accepted (the caller says so).
/// Signatures are always verified.
#[derive(Debug)]
pub struct ExpectCertificate {
    expected: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ExpectCertificate {
    /// Expects `certificate`; `None` accepts any.
    pub fn new(certificate: Option<CertificateDer<'static>>) -> Self {
        Self {
            expected: certificate,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl ServerCertVerifier for ExpectCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = &self.expected else {
            return Ok(ServerCertVerified::assertion());
        };
        if end_entity.as_ref() != expected.as_ref() {
            return Err(rustls::Error::General(
                "the server presents a certificate other than tls.cert".into(),
            ));
        }
        webpki::EndEntityCert::try_from(end_entity)
            .and_then(|cert| cert.verify_is_valid_for_subject_name(server_name))
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One allocation over a stream, released at once.
async fn allocate_and_release<S>(
    stream: S,
    username: &str,
    password: &str,
) -> Result<SocketAddr, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = StreamClient::new(stream, username, password);
    let relayed = client.allocate().await?;
    // Best effort: the allocation times out anyway.
    let _ = client.refresh(Duration::ZERO).await;
    Ok(relayed)
}

/// A TURN client over one byte stream (TCP, or TLS over TCP): STUN
/// messages back to back (RFC 8656 §3.1), long-term credentials (an
/// unauthenticated Allocate, the 401 challenge's realm and nonce, then
/// authenticated requests; a stale nonce is retried once). Enough for
/// `relay-check` and tests: allocate, refresh, release.
pub struct StreamClient<S> {
    stream: S,
    username: String,
    password: String,
    /// Realm, nonce and key, once challenged.
    auth: Option<(Realm, Nonce, MessageIntegrity)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamClient<S> {
    /// A client on `stream` with TURN REST credentials.
    pub fn new(stream: S, username: &str, password: &str) -> Self {
        Self {
            stream,
            username: username.to_owned(),
            password: password.to_owned(),
            auth: None,
        }
    }

    /// Allocates a UDP relay; the relayed address (XOR-RELAYED-ADDRESS).
    pub async fn allocate(&mut self) -> Result<SocketAddr, String> {
        let request_transport = RequestedTransport {
            protocol: PROTO_UDP,
        };
        let response = self
            .request(METHOD_ALLOCATE, &[&request_transport as &dyn Setter])
            .await?;
        let mut relayed = RelayedAddress::default();
        relayed
            .get_from(&response)
            .map_err(|e| format!("no relayed address in the answer: {e}"))?;
        Ok(SocketAddr::new(relayed.ip, relayed.port))
    }

    /// Refreshes the allocation for `lifetime` (zero releases it); the
    /// lifetime granted.
    pub async fn refresh(&mut self, lifetime: Duration) -> Result<Duration, String> {
        let response = self
            .request(METHOD_REFRESH, &[&Lifetime(lifetime) as &dyn Setter])
            .await?;
        let mut granted = Lifetime::default();
        granted
            .get_from(&response)
            .map_err(|e| format!("no lifetime in the answer: {e}"))?;
        Ok(granted.0)
    }

    /// The stream, e.g. to close it.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// A request of `method` with `attributes`, authenticated once the
    /// server has challenged; the success response, or why not.
    async fn request(
        &mut self,
        method: stun::message::Method,
        attributes: &[&dyn Setter],
    ) -> Result<Message, String> {
        for _ in 0..3 {
            let mut request = Message::new();
            request.write_header();
            MessageType::new(method, CLASS_REQUEST)
                .add_to(&mut request)
                .map_err(|e| e.to_string())?;
            TransactionId::new()
                .add_to(&mut request)
                .map_err(|e| e.to_string())?;
            for attribute in attributes {
                attribute.add_to(&mut request).map_err(|e| e.to_string())?;
            }
            if let Some((realm, nonce, integrity)) = &self.auth {
                Username::new(ATTR_USERNAME, self.username.clone())
                    .add_to(&mut request)
                    .map_err(|e| e.to_string())?;
                realm.add_to(&mut request).map_err(|e| e.to_string())?;
                nonce.add_to(&mut request).map_err(|e| e.to_string())?;
                integrity.add_to(&mut request).map_err(|e| e.to_string())?;
            }
            FINGERPRINT
                .add_to(&mut request)
                .map_err(|e| e.to_string())?;
            let response = self.exchange(&request).await?;
            if response.typ.class == CLASS_SUCCESS_RESPONSE {
                return Ok(response);
            }
            if response.typ.class != CLASS_ERROR_RESPONSE {
                return Err(format!("unexpected answer {}", response.typ));
            }
            let mut code = ErrorCodeAttribute::default();
            code.get_from(&response)
                .map_err(|_| format!("refused without an error code ({})", response.typ))?;
            let challenged = code.code == CODE_UNAUTHORIZED && self.auth.is_none();
            if challenged || code.code == CODE_STALE_NONCE {
                let realm = Realm::get_from_as(&response, ATTR_REALM)
                    .map_err(|_| format!("refused ({code}) without a realm"))?;
                let nonce = Nonce::get_from_as(&response, ATTR_NONCE)
                    .map_err(|_| format!("refused ({code}) without a nonce"))?;
                let integrity = MessageIntegrity::new_long_term_integrity(
                    self.username.clone(),
                    realm.text.clone(),
                    self.password.clone(),
                );
                self.auth = Some((realm, nonce, integrity));
                continue;
            }
            return Err(format!("refused: {code}"));
        }
        Err("refused: the credentials were not accepted".to_owned())
    }

    /// Sends `request` and reads until its answer (skipping ChannelData and
    /// other transactions' messages).
    async fn exchange(&mut self, request: &Message) -> Result<Message, String> {
        self.stream
            .write_all(&request.raw)
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        self.stream
            .flush()
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        loop {
            let message = self.read_message().await?;
            if let Some(message) = message {
                if message.transaction_id == request.transaction_id {
                    return Ok(message);
                }
            }
        }
    }

    /// The next STUN message on the stream; `None` for a ChannelData
    /// message (skipped, with its padding to four bytes).
    async fn read_message(&mut self) -> Result<Option<Message>, String> {
        let closed = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "the relay closed the connection".to_owned(),
            _ => format!("cannot read: {e}"),
        };
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head).await.map_err(closed)?;
        let length = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if head[0] & 0xC0 == 0x40 {
            let mut skip = vec![0u8; length.next_multiple_of(4)];
            self.stream.read_exact(&mut skip).await.map_err(closed)?;
            return Ok(None);
        }
        if head[0] & 0xC0 != 0 {
            return Err("the relay sent something other than STUN or ChannelData".to_owned());
        }
        let mut raw = vec![0u8; 20 + length];
        raw[..4].copy_from_slice(&head);
        self.stream
            .read_exact(&mut raw[4..])
            .await
            .map_err(closed)?;
        let mut message = Message::new();
        message.raw = raw;
        message
            .decode()
            .map_err(|e| format!("the relay sent a malformed message: {e}"))?;
        Ok(Some(message))
    }
}

/// One TURN allocation at `target` (`host:port`, UDP) with these
/// credentials, as a browser would make it: the relayed address it got, or
/// why not. Released at once.
pub async fn try_allocation(
    target: &str,
    username: &str,
    password: &str,
) -> Result<SocketAddr, String> {
    let attempt = async {
        let bind = if target.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        let client = turn::client::Client::new(turn::client::ClientConfig {
            stun_serv_addr: target.to_owned(),
            turn_serv_addr: target.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            realm: String::new(),
            software: String::new(),
            rto_in_ms: 0,
            conn: std::sync::Arc::new(socket),
            vnet: None,
        })
        .await
        .map_err(|e| format!("cannot reach it: {e}"))?;
        client
            .listen()
            .await
            .map_err(|e| format!("cannot listen: {e}"))?;
        let relayed = client
            .allocate()
            .await
            .map_err(|e| format!("allocation refused: {e}"));
        let relayed = match relayed {
            Ok(conn) => {
                use webrtc_util::Conn as _;
                let addr = conn.local_addr().map_err(|e| e.to_string());
                let _ = conn.close().await;
                addr
            }
            Err(e) => Err(e),
        };
        let _ = client.close().await;
        relayed
    };
    tokio::time::timeout(CHECK_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_transport() {
        assert_eq!(
            target("turn:203.0.113.7:3478?transport=udp"),
            Some((Transport::Udp, "203.0.113.7", 3478))
        );
        assert_eq!(
            target("turn:203.0.113.7"),
            Some((Transport::Udp, "203.0.113.7", 3478))
        );
        assert_eq!(
            target("turn:[2001:db8::7]:3478?transport=tcp"),
            Some((Transport::Tcp, "2001:db8::7", 3478))
        );
        assert_eq!(
            target("turns:turn.klinik.example:443?transport=tcp"),
            Some((Transport::Tls, "turn.klinik.example", 443))
        );
        assert_eq!(
            target("turns:turn.klinik.example"),
            Some((Transport::Tls, "turn.klinik.example", 5349))
        );
        assert_eq!(target("turns:turn.klinik.example?transport=udp"), None);
        assert_eq!(target("stun:203.0.113.7:3478"), None);
    }

    #[test]
    fn a_check_reads_as_what_a_patient_gets() {
        let ok = UrlCheck {
            url: "turns:turn.klinik.example:443?transport=tcp".into(),
            transport: Some(Transport::Tls),
            outcome: Ok("203.0.113.10:50000".parse().unwrap()),
            note: Some(
                "certificate checked: the configured tls.cert, valid for turn.klinik.example"
                    .into(),
            ),
        };
        assert_eq!(
            ok.to_string(),
            "turns:turn.klinik.example:443?transport=tcp: allocated over TLS, relayed address 203.0.113.10:50000 (certificate checked: the configured tls.cert, valid for turn.klinik.example)"
        );
        let failed = UrlCheck {
            url: "turn:203.0.113.10:3478?transport=tcp".into(),
            transport: Some(Transport::Tcp),
            outcome: Err("cannot connect: connection refused".into()),
            note: None,
        };
        assert_eq!(
            failed.to_string(),
            "turn:203.0.113.10:3478?transport=tcp: FAILED: cannot connect: connection refused"
        );
    }
}
