//! RFC 8656 answers the relay gives where the `turn` crate's server did not:
//! stateless nonces and 438, the lifetime floor, DONT-FRAGMENT, EVEN-PORT
//! and reservations, unknown attributes, a second Allocate on a 5-tuple,
//! and dual-stack allocations (RFC 6156) with ADDRESS-ERROR-CODE.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use konsult_relay::{Relay, RelayAddress};
use secrecy::ExposeSecret;
use stun::attributes::{AttrType, ATTR_NONCE, ATTR_XOR_RELAYED_ADDRESS};
use stun::message::{Getter, Message, Setter, METHOD_ALLOCATE, METHOD_REFRESH};
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;

/// Any attribute, as raw bytes.
struct Raw(u16, Vec<u8>);

impl Setter for Raw {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(AttrType(self.0), &self.1);
        Ok(())
    }
}

const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
const ADDRESS_ERROR_CODE: u16 = 0x8001;
const DONT_FRAGMENT: u16 = 0x001A;
const EVEN_PORT: u16 = 0x0018;
const RESERVATION_TOKEN: u16 = 0x0022;

fn family(value: u8) -> Vec<u8> {
    vec![value, 0, 0, 0]
}

/// Every XOR-RELAYED-ADDRESS of an answer, in order.
fn relayed_addresses(m: &Message) -> Vec<SocketAddr> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        .map(|a| {
            let mut single = Message::new();
            single.transaction_id = m.transaction_id;
            single.add(ATTR_XOR_RELAYED_ADDRESS, &a.value);
            let mut relayed = RelayedAddress::default();
            relayed.get_from(&single).unwrap();
            SocketAddr::new(relayed.ip, relayed.port)
        })
        .collect()
}

fn granted(m: &Message) -> Duration {
    let mut lifetime = Lifetime::default();
    lifetime.get_from(m).unwrap();
    lifetime.0
}

async fn allocate(
    relay_addr: SocketAddr,
    reference: &str,
    extra: Vec<Box<dyn Setter>>,
) -> (RawTurn, Session, Message) {
    let raw = RawTurn::new(relay_addr).await;
    let creds = issue(reference, 600);
    let (session, answer) = raw
        .allocate_with(
            &creds.username().to_string(),
            creds.password().expose_secret(),
            extra,
        )
        .await
        .unwrap();
    (raw, session, answer)
}

#[tokio::test]
async fn a_stale_or_forged_nonce_gets_438_with_a_fresh_one_that_works() {
    let relay = start_relay(true).await;
    let (raw, session, answer) = allocate(relay.local_addr(), "nonce", vec![]).await;
    assert_eq!(error_code(&answer), None);

    // Another client's nonce, or one the relay never issued: 438, and the
    // fresh NONCE in the answer is accepted.
    let never_issued = "0".repeat(24);
    let forged = session.with_nonce(&never_issued);
    let answer = raw
        .signed(
            &forged,
            METHOD_REFRESH,
            vec![Box::new(Lifetime(Duration::from_secs(600)))],
        )
        .await
        .unwrap();
    assert_eq!(error_code(&answer), Some(438));
    let fresh = TextAttribute::get_from_as(&answer, ATTR_NONCE)
        .unwrap()
        .text;
    assert_ne!(fresh, never_issued);
    let answer = raw
        .signed(
            &session.with_nonce(&fresh),
            METHOD_REFRESH,
            vec![Box::new(Lifetime(Duration::from_secs(600)))],
        )
        .await
        .unwrap();
    assert_eq!(error_code(&answer), None);

    // A nonce is bound to the client's address: the same one from
    // another socket is stale there.
    let other = RawTurn::new(relay.local_addr()).await;
    let answer = other
        .signed(&session, METHOD_ALLOCATE, vec![])
        .await
        .unwrap();
    assert_eq!(error_code(&answer), Some(438));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn unauthenticated_allocates_leave_nothing_behind() {
    let relay = start_relay(true).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Thousands of challenges: each answered, none remembered.
    let raw = RawTurn::new(relay.local_addr()).await;
    for _ in 0..2_000 {
        let request = unauthenticated_allocate();
        socket
            .send_to(&request.raw, relay.local_addr())
            .await
            .unwrap();
    }
    let answer = raw.transact(&unauthenticated_allocate()).await.unwrap();
    assert_eq!(error_code(&answer), Some(401));
    assert_eq!(relay.allocation_count().await.unwrap(), 0);
    relay.shutdown().await.unwrap();
}

fn unauthenticated_allocate() -> Message {
    use stun::agent::TransactionId;
    use stun::message::{MessageType, CLASS_REQUEST};
    use turn::proto::reqtrans::RequestedTransport;
    let mut m = Message::new();
    m.build(&[
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        Box::new(RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        }),
    ])
    .unwrap();
    m
}

#[tokio::test]
async fn lifetimes_are_floored_at_ten_minutes_and_capped_at_an_hour() {
    let relay = start_relay(true).await;
    let short = vec![Box::new(Lifetime(Duration::from_secs(5))) as Box<dyn Setter>];
    let (raw, session, answer) = allocate(relay.local_addr(), "lifetime", short).await;
    assert_eq!(granted(&answer), Duration::from_secs(600));
    let answer = raw
        .signed(
            &session,
            METHOD_REFRESH,
            vec![Box::new(Lifetime(Duration::from_secs(86_400)))],
        )
        .await
        .unwrap();
    assert_eq!(granted(&answer), Duration::from_secs(3600));
    // Refresh with 0 deletes the allocation.
    assert_eq!(raw.refresh(&session, Duration::ZERO).await.unwrap(), Ok(()));
    assert_eq!(relay.allocation_count().await.unwrap(), 0);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn dont_fragment_and_even_port_are_served_and_reservations_refused() {
    let relay = start_relay(true).await;
    let echo = EchoPeer::start().await;
    let df = vec![Box::new(Raw(DONT_FRAGMENT, vec![])) as Box<dyn Setter>];
    let (raw, session, answer) = allocate(relay.local_addr(), "df", df).await;
    assert_eq!(error_code(&answer), None, "DONT-FRAGMENT is supported");
    assert_eq!(
        raw.create_permission(&session, echo.addr).await.unwrap(),
        Ok(())
    );
    raw.send_indication(echo.addr, b"df").await.unwrap();
    assert_eq!(raw.recv_data(PATIENCE).await.as_deref(), Some(&b"df"[..]));

    let even = vec![Box::new(Raw(EVEN_PORT, vec![0])) as Box<dyn Setter>];
    let (_, session, answer) = allocate(relay.local_addr(), "even", even).await;
    assert_eq!(error_code(&answer), None);
    assert_eq!(
        session.relayed.port() % 2,
        0,
        "EVEN-PORT gives an even port"
    );

    let reserve = vec![Box::new(Raw(EVEN_PORT, vec![0x80])) as Box<dyn Setter>];
    let (_, _, answer) = allocate(relay.local_addr(), "reserve", reserve).await;
    assert_eq!(error_code(&answer), Some(508));
    let token = vec![Box::new(Raw(RESERVATION_TOKEN, vec![1; 8])) as Box<dyn Setter>];
    let (_, _, answer) = allocate(relay.local_addr(), "token", token).await;
    assert_eq!(error_code(&answer), Some(508));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_required_attributes_get_420_and_a_second_allocate_437() {
    let relay = start_relay(true).await;
    let unknown = vec![Box::new(Raw(0x0042, vec![1, 2, 3, 4])) as Box<dyn Setter>];
    let (_, _, answer) = allocate(relay.local_addr(), "unknown", unknown).await;
    assert_eq!(error_code(&answer), Some(420));
    // Comprehension-optional ones (0x8000 and up) are ignored.
    let optional = vec![Box::new(Raw(0x8042, vec![1, 2, 3, 4])) as Box<dyn Setter>];
    let (raw, session, answer) = allocate(relay.local_addr(), "optional", optional).await;
    assert_eq!(error_code(&answer), None);

    let again = raw
        .signed(&session, METHOD_ALLOCATE, vec![Box::new(RequestedUdp)])
        .await
        .unwrap();
    assert_eq!(error_code(&again), Some(437));
    assert_eq!(relay.allocation_count().await.unwrap(), 1);
    relay.shutdown().await.unwrap();
}

struct RequestedUdp;

impl Setter for RequestedUdp {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        turn::proto::reqtrans::RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        }
        .add_to(m)
    }
}

async fn dual_stack_relay() -> Relay {
    let mut config = config(true);
    config.extra_addresses = vec![RelayAddress {
        public: "::1".parse().unwrap(),
        bind: "::1".parse().unwrap(),
    }];
    Relay::start(config).await.unwrap()
}

#[tokio::test]
async fn a_dual_stack_relay_allocates_either_family_or_both() {
    let relay = dual_stack_relay().await;
    let v6 = vec![Box::new(Raw(REQUESTED_ADDRESS_FAMILY, family(2))) as Box<dyn Setter>];
    let (_, _, answer) = allocate(relay.local_addr(), "v6", v6).await;
    let addresses = relayed_addresses(&answer);
    assert_eq!(addresses.len(), 1);
    assert!(addresses[0].is_ipv6(), "{addresses:?}");

    let both = vec![Box::new(Raw(ADDITIONAL_ADDRESS_FAMILY, family(2))) as Box<dyn Setter>];
    let (raw, session, answer) = allocate(relay.local_addr(), "both", both).await;
    let addresses = relayed_addresses(&answer);
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    assert!(addresses[0].is_ipv4() && addresses[1].is_ipv6());

    // Data flows to an IPv6 peer through the IPv6 relayed address, and to
    // an IPv4 peer through the IPv4 one.
    let v6_peer = UdpSocket::bind("[::1]:0").await.unwrap();
    let v4_peer = EchoPeer::start().await;
    let v6_addr = v6_peer.local_addr().unwrap();
    assert_eq!(
        raw.create_permission(&session, v6_addr).await.unwrap(),
        Ok(())
    );
    assert_eq!(
        raw.create_permission(&session, v4_peer.addr).await.unwrap(),
        Ok(())
    );
    raw.send_indication(v6_addr, b"six").await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = tokio::time::timeout(PATIENCE, v6_peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"six"[..], addresses[1]));
    raw.send_indication(v4_peer.addr, b"four").await.unwrap();
    assert_eq!(raw.recv_data(PATIENCE).await.as_deref(), Some(&b"four"[..]));

    // Both family attributes at once: 400.
    let conflicting = vec![
        Box::new(Raw(REQUESTED_ADDRESS_FAMILY, family(1))) as Box<dyn Setter>,
        Box::new(Raw(ADDITIONAL_ADDRESS_FAMILY, family(2))),
    ];
    let (_, _, answer) = allocate(relay.local_addr(), "conflict", conflicting).await;
    assert_eq!(error_code(&answer), Some(400));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_single_family_relay_answers_440_and_address_error_code() {
    // IPv4 only: an IPv6 request is 440; a dual one gets IPv4 and an
    // ADDRESS-ERROR-CODE for IPv6.
    let relay = start_relay(true).await;
    let v6 = vec![Box::new(Raw(REQUESTED_ADDRESS_FAMILY, family(2))) as Box<dyn Setter>];
    let (_, _, answer) = allocate(relay.local_addr(), "v6", v6).await;
    assert_eq!(error_code(&answer), Some(440));
    let both = vec![Box::new(Raw(ADDITIONAL_ADDRESS_FAMILY, family(2))) as Box<dyn Setter>];
    let (raw, session, answer) = allocate(relay.local_addr(), "both", both).await;
    assert_eq!(error_code(&answer), None);
    assert_eq!(relayed_addresses(&answer).len(), 1);
    let address_error = answer.get(AttrType(ADDRESS_ERROR_CODE)).unwrap();
    assert_eq!(&address_error[..4], &[2, 0, 4, 40]);
    // A peer of the family the allocation lacks: 443.
    let answer = raw
        .create_permission(&session, "[::1]:9".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(answer, Err(443));
    relay.shutdown().await.unwrap();

    // IPv6 only (listening on [::1]): a default Allocate is IPv4, so 440;
    // an IPv6 one works.
    let mut config = config(true);
    config.listen = "[::1]:0".parse().unwrap();
    let relay = Relay::start(config).await.unwrap();
    let (_, _, answer) = allocate(relay.local_addr(), "default", vec![]).await;
    assert_eq!(error_code(&answer), Some(440));
    let v6 = vec![Box::new(Raw(REQUESTED_ADDRESS_FAMILY, family(2))) as Box<dyn Setter>];
    let (_, session, answer) = allocate(relay.local_addr(), "v6", v6).await;
    assert_eq!(error_code(&answer), None);
    assert!(session.relayed.is_ipv6());
    relay.shutdown().await.unwrap();
}
