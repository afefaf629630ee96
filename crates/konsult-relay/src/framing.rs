//! TURN framing on the data path, in place and without copies, sans I/O.
//!
//! A peer's datagram is read into a buffer behind [`HEADROOM`] bytes, so
//! that the relay can put a ChannelData header (4 bytes) or a Data
//! indication's STUN header, XOR-PEER-ADDRESS and DATA header (at most 48
//! bytes) right in front of it and send the frame from the same buffer. A
//! client's Send indication is read where it lies: its peer address and
//! data are found by walking the attributes, not by decoding the message
//! into owned parts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::message::MAGIC_COOKIE;

/// Room in front of a peer's datagram: a STUN header (20), an IPv6
/// XOR-PEER-ADDRESS (4 + 20) and a DATA header (4).
pub(crate) const HEADROOM: usize = 48;
/// Room behind it, for a Data indication's padding to four bytes.
pub(crate) const TAILROOM: usize = 3;

const STUN_HEADER: usize = 20;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_DATA: u16 = 0x0013;
/// Message type of a Send indication (method 0x006, class indication).
const SEND_INDICATION: u16 = 0x0016;
/// Message type of a Data indication (method 0x007, class indication).
const DATA_INDICATION: u16 = 0x0017;

/// Frames `buffer[HEADROOM..HEADROOM + length]` as ChannelData on channel
/// `number`; returns the frame.
pub(crate) fn channel_data(buffer: &mut [u8], number: u16, length: usize) -> &[u8] {
    let start = HEADROOM - 4;
    buffer[start..start + 2].copy_from_slice(&number.to_be_bytes());
    buffer[start + 2..HEADROOM].copy_from_slice(&(length as u16).to_be_bytes());
    &buffer[start..HEADROOM + length]
}

/// Frames `buffer[HEADROOM..HEADROOM + length]` as a Data indication from
/// `peer` with `transaction`, padding the data to four bytes (the buffer
/// has [`TAILROOM`] behind it); returns the message.
pub(crate) fn data_indication(
    buffer: &mut [u8],
    peer: SocketAddr,
    length: usize,
    transaction: [u8; 12],
) -> &[u8] {
    let padded = length.next_multiple_of(4);
    buffer[HEADROOM + length..HEADROOM + padded].fill(0);
    // DATA header.
    buffer[HEADROOM - 4..HEADROOM - 2].copy_from_slice(&ATTR_DATA.to_be_bytes());
    buffer[HEADROOM - 2..HEADROOM].copy_from_slice(&(length as u16).to_be_bytes());
    // XOR-PEER-ADDRESS (RFC 8489 §14.2).
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let (family, address): (u8, Vec<u8>) = match peer.ip() {
        IpAddr::V4(ip) => (1, xor(&ip.octets(), &cookie)),
        IpAddr::V6(ip) => {
            let mut key = cookie.to_vec();
            key.extend_from_slice(&transaction);
            (2, xor(&ip.octets(), &key))
        }
    };
    let value = 4 + address.len();
    let attr = HEADROOM - 4 - 4 - value;
    buffer[attr..attr + 2].copy_from_slice(&ATTR_XOR_PEER_ADDRESS.to_be_bytes());
    buffer[attr + 2..attr + 4].copy_from_slice(&(value as u16).to_be_bytes());
    buffer[attr + 4] = 0;
    buffer[attr + 5] = family;
    let port = peer.port() ^ (MAGIC_COOKIE >> 16) as u16;
    buffer[attr + 6..attr + 8].copy_from_slice(&port.to_be_bytes());
    buffer[attr + 8..attr + 8 + address.len()].copy_from_slice(&address);
    // STUN header.
    let start = attr - STUN_HEADER;
    let body = HEADROOM + padded - attr;
    buffer[start..start + 2].copy_from_slice(&DATA_INDICATION.to_be_bytes());
    buffer[start + 2..start + 4].copy_from_slice(&(body as u16).to_be_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&cookie);
    buffer[start + 8..attr].copy_from_slice(&transaction);
    &buffer[start..HEADROOM + padded]
}

fn xor(bytes: &[u8], key: &[u8]) -> Vec<u8> {
    bytes.iter().zip(key).map(|(b, k)| b ^ k).collect()
}

/// Whether `frame` is a Send indication (by its header; [`send_parts`]
/// reads the rest).
pub(crate) fn is_send_indication(frame: &[u8]) -> bool {
    frame.len() >= STUN_HEADER
        && u16::from_be_bytes([frame[0], frame[1]]) == SEND_INDICATION
        && frame[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// The peer and data of a Send indication, read in place; `None` if
/// either is missing or malformed, or the message is cut short.
pub(crate) fn send_parts(frame: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
    let body = frame.get(STUN_HEADER..STUN_HEADER + length)?;
    let transaction = &frame[8..STUN_HEADER];
    let (mut peer, mut data) = (None, None);
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let size = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + size)?;
        match kind {
            ATTR_XOR_PEER_ADDRESS if peer.is_none() => {
                peer = Some(xor_address(value, transaction)?)
            }
            ATTR_DATA if data.is_none() => data = Some(value),
            _ => {}
        }
        at += 4 + size.next_multiple_of(4);
    }
    Some((peer?, data?))
}

fn xor_address(value: &[u8], transaction: &[u8]) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (value.get(1)?, value.len()) {
        (1, 8) => {
            let octets: [u8; 4] = xor(&value[4..8], &cookie).try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        (2, 20) => {
            let mut key = cookie.to_vec();
            key.extend_from_slice(transaction);
            let octets: [u8; 16] = xor(&value[4..20], &key).try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use stun::agent::TransactionId;
    use stun::message::{
        Getter, Message, MessageType, Setter, CLASS_INDICATION, METHOD_DATA, METHOD_SEND,
    };
    use turn::proto::data::Data;
    use turn::proto::peeraddr::PeerAddress;

    use super::*;

    fn decoded(raw: &[u8]) -> Message {
        let mut m = Message {
            raw: raw.to_vec(),
            ..Default::default()
        };
        m.decode().unwrap();
        m
    }

    #[test]
    fn data_indications_framed_in_place_decode_as_the_codec_reads_them() {
        for (peer, length) in [
            ("198.51.100.7:4000", 5),
            ("198.51.100.7:4000", 8),
            ("[2001:db8::7]:61000", 1199),
            ("[2001:db8::7]:61000", 0),
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            let mut buffer = vec![0xEEu8; HEADROOM + length + TAILROOM];
            for (i, b) in buffer[HEADROOM..HEADROOM + length].iter_mut().enumerate() {
                *b = i as u8;
            }
            let transaction = [7u8; 12];
            let frame = data_indication(&mut buffer, peer, length, transaction).to_vec();
            let m = decoded(&frame);
            assert_eq!(m.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
            assert_eq!(m.transaction_id.0, transaction);
            let mut got = PeerAddress::default();
            got.get_from(&m).unwrap();
            assert_eq!(SocketAddr::new(got.ip, got.port), peer);
            let mut data = Data::default();
            data.get_from(&m).unwrap();
            assert_eq!(data.0, (0..length).map(|i| i as u8).collect::<Vec<_>>());
        }
    }

    #[test]
    fn channel_data_is_framed_in_front_of_the_payload() {
        let mut buffer = vec![0u8; HEADROOM + 3];
        buffer[HEADROOM..].copy_from_slice(&[1, 2, 3]);
        assert_eq!(
            channel_data(&mut buffer, 0x4001, 3),
            &[0x40, 0x01, 0x00, 0x03, 1, 2, 3]
        );
    }

    #[test]
    fn send_indications_are_read_in_place_as_the_codec_writes_them() {
        for peer in ["198.51.100.7:4000", "[2001:db8::7]:61000"] {
            let peer: SocketAddr = peer.parse().unwrap();
            let mut m = Message::new();
            let setters: Vec<Box<dyn Setter>> = vec![
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
                Box::new(Data(b"hello".to_vec())),
                Box::new(stun::fingerprint::FINGERPRINT),
            ];
            m.build(&setters).unwrap();
            assert!(is_send_indication(&m.raw));
            assert_eq!(send_parts(&m.raw), Some((peer, &b"hello"[..])));
            // Cut short, or without DATA: nothing.
            assert_eq!(send_parts(&m.raw[..m.raw.len() - 12]), None);
        }
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            Box::new(Data(b"x".to_vec())),
        ])
        .unwrap();
        assert_eq!(send_parts(&m.raw), None, "no peer address");
        assert!(!is_send_indication(&[0u8; 19]));
    }
}
