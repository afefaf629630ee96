//! A minimal TURN client over one UDP socket, as a browser uses a relay:
//! Allocate with the long-term credential dance, ChannelBind to the other
//! side's relayed address, then media as ChannelData. Control messages are
//! built with the `stun` and `turn` crates' codecs; media is framed by hand
//! (four header bytes), so generating load costs little more than the
//! system calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST,
    CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
};
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

/// How long one attempt of a request waits for its response before it is
/// sent again (RFC 8489's initial RTO is 500 ms).
const RETRANSMIT_AFTER: Duration = Duration::from_millis(500);
/// Attempts per request.
const ATTEMPTS: u32 = 6;
/// The STUN error code that asks for a fresh nonce.
const STALE_NONCE: u16 = 438;

/// One client's allocation on a relay.
pub struct Allocation {
    socket: Arc<UdpSocket>,
    username: String,
    realm: String,
    nonce: String,
    integrity: MessageIntegrity,
    /// The relayed address, where the other side sends.
    pub relayed: SocketAddr,
}

impl Allocation {
    /// Allocates a UDP relay on `server` with long-term credentials: an
    /// unauthenticated request, the 401 challenge with realm and nonce,
    /// then the signed request.
    pub async fn new(server: SocketAddr, username: &str, password: &str) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(server).await?;
        let socket = Arc::new(socket);
        let challenge = transact(
            &socket,
            &build(&[
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
                Box::new(RequestedTransport {
                    protocol: PROTO_UDP,
                }),
            ])?,
        )
        .await?;
        if error_code(&challenge) != Some(401) {
            bail!("expected a 401 challenge, got {:?}", challenge.typ);
        }
        let realm = TextAttribute::get_from_as(&challenge, ATTR_REALM)
            .map_err(|e| anyhow!("challenge without REALM: {e}"))?
            .text;
        let nonce = TextAttribute::get_from_as(&challenge, ATTR_NONCE)
            .map_err(|e| anyhow!("challenge without NONCE: {e}"))?
            .text;
        let integrity = MessageIntegrity::new_long_term_integrity(
            username.to_owned(),
            realm.clone(),
            password.to_owned(),
        );
        let mut allocation = Self {
            socket,
            username: username.to_owned(),
            realm,
            nonce,
            integrity,
            relayed: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let response = allocation
            .signed(METHOD_ALLOCATE, || {
                vec![Box::new(RequestedTransport {
                    protocol: PROTO_UDP,
                })]
            })
            .await?;
        let mut relayed = RelayedAddress::default();
        relayed
            .get_from(&response)
            .map_err(|e| anyhow!("Allocate success without XOR-RELAYED-ADDRESS: {e}"))?;
        allocation.relayed = SocketAddr::new(relayed.ip, relayed.port);
        Ok(allocation)
    }

    /// Binds `channel` to `peer` (which also installs the permission for
    /// it), as browsers do before sending media.
    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> anyhow::Result<()> {
        self.signed(METHOD_CHANNEL_BIND, || {
            vec![
                Box::new(ChannelNumber(channel)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ]
        })
        .await
        .map(drop)
    }

    /// The socket, connected to the relay, for media.
    pub fn socket(&self) -> Arc<UdpSocket> {
        Arc::clone(&self.socket)
    }

    /// Sends a signed request and returns its success response; a 438
    /// (stale nonce) is answered once with the fresh nonce it carries.
    async fn signed(
        &mut self,
        method: Method,
        attributes: impl Fn() -> Vec<Box<dyn Setter>>,
    ) -> anyhow::Result<Message> {
        for _ in 0..2 {
            let mut setters: Vec<Box<dyn Setter>> = vec![
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(method, CLASS_REQUEST)),
            ];
            setters.extend(attributes());
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())));
            setters.push(Box::new(TextAttribute::new(ATTR_NONCE, self.nonce.clone())));
            setters.push(Box::new(self.integrity.clone()));
            let response = transact(&self.socket, &build(&setters)?).await?;
            match error_code(&response) {
                None if response.typ.class == CLASS_SUCCESS_RESPONSE => return Ok(response),
                None => bail!("unexpected answer {:?} to {method}", response.typ),
                Some(STALE_NONCE) => {
                    self.nonce = TextAttribute::get_from_as(&response, ATTR_NONCE)
                        .map_err(|e| anyhow!("438 without NONCE: {e}"))?
                        .text;
                }
                Some(code) => bail!("{method} refused with {code}"),
            }
        }
        bail!("{method} kept getting stale nonces")
    }
}

/// Sends `request` and returns the response with its transaction id,
/// retransmitting as UDP needs.
async fn transact(socket: &UdpSocket, request: &Message) -> anyhow::Result<Message> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..ATTEMPTS {
        socket.send(&request.raw).await?;
        let deadline = tokio::time::Instant::now() + RETRANSMIT_AFTER;
        while let Ok(read) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            let n = read?;
            let mut response = Message {
                raw: buf[..n].to_vec(),
                ..Default::default()
            };
            if response.decode().is_ok() && response.transaction_id == request.transaction_id {
                return Ok(response);
            }
        }
    }
    bail!("no response to {:?}", request.typ)
}

fn build(setters: &[Box<dyn Setter>]) -> anyhow::Result<Message> {
    let mut message = Message::new();
    message
        .build(setters)
        .map_err(|e| anyhow!("build a STUN message: {e}"))?;
    Ok(message)
}

/// The ERROR-CODE of an error response, `None` for any other message.
pub fn error_code(message: &Message) -> Option<u16> {
    if message.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut code = ErrorCodeAttribute::default();
    code.get_from(message).ok()?;
    Some(code.code.0)
}

/// Frames `payload` as ChannelData on `channel` into `out` (RFC 8656
/// §12.4; no padding over UDP).
pub fn channel_data(channel: u16, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The channel and payload of a ChannelData message, `None` for anything
/// else (a STUN message starts with two zero bits; channels with 0b01).
pub fn parse_channel_data(datagram: &[u8]) -> Option<(u16, &[u8])> {
    let header: [u8; 4] = datagram.get(..4)?.try_into().ok()?;
    let channel = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !(0x4000..=0x7FFF).contains(&channel) {
        return None;
    }
    Some((channel, datagram.get(4..4 + length)?))
}

/// An unauthenticated Allocate request (no USERNAME, no MESSAGE-INTEGRITY),
/// the first message of every browser's allocation, which a relay answers
/// with 401 and a nonce. `id` makes its transaction id unique.
pub fn unauthenticated_allocate(id: u64, tag: u32) -> [u8; 28] {
    let mut request = [0u8; 28];
    request[0..2].copy_from_slice(&0x0003u16.to_be_bytes()); // Allocate request
    request[2..4].copy_from_slice(&8u16.to_be_bytes()); // one 8-byte attribute
    request[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes()); // magic cookie
    request[8..12].copy_from_slice(&tag.to_be_bytes());
    request[12..20].copy_from_slice(&id.to_be_bytes());
    request[20..22].copy_from_slice(&0x0019u16.to_be_bytes()); // REQUESTED-TRANSPORT
    request[22..24].copy_from_slice(&4u16.to_be_bytes());
    request[24] = PROTO_UDP.0;
    request
}

/// Whether `datagram` is an Allocate error response (the class and method
/// bits of its first two bytes), without decoding it.
pub fn is_allocate_error(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0..2] == 0x0113u16.to_be_bytes()
}

/// Checks that `datagram` is a 401 challenge with a NONCE, as both relays
/// must answer an unauthenticated Allocate.
pub fn check_challenge(datagram: &[u8]) -> anyhow::Result<()> {
    let mut message = Message {
        raw: datagram.to_vec(),
        ..Default::default()
    };
    message
        .decode()
        .map_err(|e| anyhow!("undecodable answer: {e}"))?;
    match error_code(&message) {
        Some(401) => {}
        other => bail!("expected 401, got {other:?} ({:?})", message.typ),
    }
    TextAttribute::get_from_as(&message, ATTR_NONCE)
        .map(drop)
        .map_err(|e| anyhow!("401 without NONCE: {e}"))
        .context("unauthenticated Allocate")
}
