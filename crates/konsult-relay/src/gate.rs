//! The relay's policy, sans I/O: the engine asks the [`Gate`] about every
//! authenticated request and every Send indication before acting on it.
//!
//! * authenticated requests (those with MESSAGE-INTEGRITY) must carry an
//!   unexpired TURN REST username whose reference is not closed (neither
//!   itself nor its consultation), and a MESSAGE-INTEGRITY made with the
//!   matching password, else **401**;
//! * an Allocate beyond the consultation's quota (counted over all its
//!   participants and credentials) or the relay's total gets **486**;
//! * a CreatePermission or ChannelBind naming a denied peer gets
//!   **403 Forbidden IP**, and a Send indication to one is dropped.
//!
//! What passes is [`Verdict::Accept`]ed with the key to sign the answer
//! with. The gate reads no clock: `now` comes in, and the count of the
//! consultation's live allocations is looked up by the caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use stun::attributes::{
    ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS,
};
use stun::error_code::{
    ErrorCode, ErrorCodeAttribute, CODE_ALLOC_MISMATCH, CODE_ALLOC_QUOTA_REACHED, CODE_BAD_REQUEST,
    CODE_FORBIDDEN, CODE_UNAUTHORIZED,
};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, CLASS_ERROR_RESPONSE, CLASS_INDICATION,
    CLASS_REQUEST, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH,
    METHOD_SEND,
};
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;

use crate::credentials::{Reference, TurnCredentials};
use crate::peer_policy::{denied_range, DeniedRange, PeerPolicy};

/// What to do with one datagram from a client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not the gate's to judge: a Binding request, an unauthenticated
    /// request (answered with a 401 challenge), a malformed one, a Send
    /// indication to an allowed peer. The relay handles it.
    Forward,
    /// An authenticated request whose credentials and peers are accepted:
    /// the relay carries it out and signs the answer with this key.
    Accept(Key),
    /// Discard it silently (indications have no response).
    Drop(Refusal),
    /// Answer the client with this STUN error response; the server never
    /// sees the request.
    Reply(Refusal, Vec<u8>),
    /// An authenticated Allocate: look up how many allocations the username
    /// holds and finish with [`QuotaCheck::verdict`].
    CheckQuota(QuotaCheck),
    /// An authenticated Refresh: carry it out (signing with the key) if the
    /// client holds an allocation, else answer this signed 437 Allocation
    /// Mismatch (RFC 8656 §7.3).
    CheckAllocation(Vec<u8>, Key),
}

/// The long-term key of an accepted request's credentials, to sign the
/// relay's answer with (RFC 8489 §9.2).
#[derive(Clone)]
pub(crate) struct Key(pub MessageIntegrity);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0 .0 == other.0 .0
    }
}

impl Eq for Key {}

/// The last step for an authenticated Allocate request, which needs the
/// number of live allocations of its consultation (held by the TURN server).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct QuotaCheck {
    /// The reference of the request's username, which owns the allocation
    /// if the server creates it; allocations are counted over its
    /// consultation part.
    pub reference: Reference,
    limit: usize,
    total_limit: usize,
    key: Key,
    /// The signed 486 response, should the quota be reached.
    over_quota_reply: Vec<u8>,
}

impl QuotaCheck {
    /// The key to sign the answer with, whatever the count.
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    /// Accept the request if the consultation holds fewer than its quota of
    /// allocations and the relay fewer than its total, else refuse it with
    /// 486 Allocation Quota Reached.
    pub(crate) fn verdict(
        self,
        consultation_allocations: usize,
        total_allocations: usize,
    ) -> Verdict {
        if consultation_allocations < self.limit && total_allocations < self.total_limit {
            Verdict::Accept(self.key)
        } else {
            Verdict::Reply(Refusal::QuotaReached, self.over_quota_reply)
        }
    }
}

/// Why a datagram was refused, for logs and tests. Carries no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Unknown, expired, forged, over-long-lived or closed credentials.
    Unauthorized(&'static str),
    /// The consultation already holds its quota of allocations.
    QuotaReached,
    /// The request names a peer in a denied range.
    ForbiddenPeer(DeniedRange),
    /// A well-authenticated request the relay must refuse by RFC 8656 (a
    /// channel number out of range, an address family it does not serve).
    Invalid(&'static str),
}

/// Whether a ChannelBind's CHANNEL-NUMBER is a channel number (0x4000–
/// 0x7FFF, RFC 5766, of which RFC 8656 keeps 0x4000–0x4FFF); a missing one
/// is not.
fn channel_number_valid(msg: &Message) -> bool {
    let mut number = ChannelNumber::default();
    number.get_from(msg).is_ok() && (0x4000..=0x7FFF).contains(&number.0)
}

/// The gate's settings.
#[derive(Debug, Clone)]
pub(crate) struct GateConfig {
    pub secret: SecretString,
    pub realm: String,
    pub policy: PeerPolicy,
    pub allocations_per_consultation: usize,
    pub max_allocations: usize,
    pub max_credential_ttl: Duration,
}

/// Screens client datagrams; see the module docs.
///
/// Feed each decoded client message to [`Gate::screen`]; when it answers
/// [`Verdict::CheckQuota`], count the username's allocations and call
/// [`QuotaCheck::verdict`]. [`Gate::close_references`] refuses the
/// credentials of references (and of the participants of consultation
/// references) from then on.
#[derive(Debug)]
pub(crate) struct Gate {
    config: GateConfig,
    /// References closed by [`Gate::close_references`], with the time they
    /// were (last) closed. A credential is refused if its reference or its
    /// reference's consultation part is here. Entries are kept for
    /// `max_credential_ttl`: every credential issued before the close has
    /// expired by then. The server is the only one who closes, so the size
    /// is the number of references it closed within that time.
    closed: HashMap<Reference, SystemTime>,
}

impl Gate {
    pub(crate) fn new(config: GateConfig) -> Self {
        Self {
            config,
            closed: HashMap::new(),
        }
    }

    /// Refuses credentials of every reference that one of `references`
    /// [covers](Reference::covers) from `now` on. Closing a reference again
    /// is harmless; it is then remembered from the latest close.
    pub(crate) fn close_references<'a>(
        &mut self,
        now: SystemTime,
        references: impl IntoIterator<Item = &'a Reference>,
    ) {
        let keep_for = self.config.max_credential_ttl;
        self.closed
            .retain(|_, closed_at| !is_past(*closed_at, keep_for, now));
        for reference in references {
            let closed_at = self.closed.entry(reference.clone()).or_insert(now);
            *closed_at = (*closed_at).max(now);
        }
    }

    /// Whether credentials of `reference` are refused at `now` because it,
    /// or its consultation, was closed.
    pub(crate) fn is_closed(&self, now: SystemTime, reference: &Reference) -> bool {
        let keep_for = self.config.max_credential_ttl;
        [reference.as_str(), reference.consultation_str()]
            .into_iter()
            .filter_map(|key| self.closed.get(key))
            .any(|closed_at| !is_past(*closed_at, keep_for, now))
    }

    /// Decides what happens to `msg`, a decoded STUN message from a client.
    pub(crate) fn screen(&self, now: SystemTime, msg: &Message) -> Verdict {
        if msg.typ == MessageType::new(METHOD_SEND, CLASS_INDICATION) {
            return match self.denied_peer(msg) {
                Some(range) => Verdict::Drop(Refusal::ForbiddenPeer(range)),
                None => Verdict::Forward,
            };
        }
        if msg.typ.class != CLASS_REQUEST || !msg.contains(ATTR_MESSAGE_INTEGRITY) {
            // Binding requests, and first requests that the server answers
            // with its 401 challenge (REALM and NONCE).
            return Verdict::Forward;
        }
        let (Ok(username), Ok(nonce)) = (
            TextAttribute::get_from_as(msg, ATTR_USERNAME),
            TextAttribute::get_from_as(msg, ATTR_NONCE),
        ) else {
            // Malformed; the server answers 400 Bad Request.
            return Verdict::Forward;
        };
        let (integrity, reference) = match self.authenticate(now, msg, &username.text) {
            Ok(accepted) => accepted,
            Err(why) => {
                return Verdict::Reply(
                    Refusal::Unauthorized(why),
                    self.unauthorized(msg, nonce.text),
                )
            }
        };
        let method = msg.typ.method;
        let invalid = |why: &'static str, code: ErrorCode, reason: &str| {
            Verdict::Reply(
                Refusal::Invalid(why),
                error_response(msg, method, code, reason, vec![Box::new(integrity.clone())]),
            )
        };
        // Channel numbers: RFC 8656 §12 allows 0x4000–0x4FFF, RFC 5766
        // 0x4000–0x7FFF (which older clients, coturn's among them, still
        // use); anything else, or none, is 400.
        if method == METHOD_CHANNEL_BIND && !channel_number_valid(msg) {
            return invalid(
                "channel number out of range",
                CODE_BAD_REQUEST,
                "Bad Request",
            );
        }
        if method == METHOD_REFRESH {
            return Verdict::CheckAllocation(
                error_response(
                    msg,
                    method,
                    CODE_ALLOC_MISMATCH,
                    "Allocation Mismatch",
                    vec![Box::new(integrity.clone())],
                ),
                Key(integrity),
            );
        }
        if method == METHOD_ALLOCATE {
            return Verdict::CheckQuota(QuotaCheck {
                reference,
                limit: self.config.allocations_per_consultation,
                total_limit: self.config.max_allocations,
                over_quota_reply: error_response(
                    msg,
                    method,
                    CODE_ALLOC_QUOTA_REACHED,
                    "Allocation Quota Reached",
                    vec![Box::new(integrity.clone())],
                ),
                key: Key(integrity),
            });
        }
        if method == METHOD_CREATE_PERMISSION || method == METHOD_CHANNEL_BIND {
            if let Some(range) = self.denied_peer(msg) {
                return Verdict::Reply(
                    Refusal::ForbiddenPeer(range),
                    error_response(
                        msg,
                        method,
                        CODE_FORBIDDEN,
                        "Forbidden IP",
                        vec![Box::new(integrity)],
                    ),
                );
            }
        }
        Verdict::Accept(Key(integrity))
    }

    /// Checks the credentials of an authenticated request and returns the
    /// integrity key to sign the response with and the credential's
    /// reference.
    fn authenticate(
        &self,
        now: SystemTime,
        msg: &Message,
        username: &str,
    ) -> Result<(MessageIntegrity, Reference), &'static str> {
        let realm = TextAttribute::get_from_as(msg, ATTR_REALM).map_err(|_| "no realm")?;
        if realm.text != self.config.realm {
            return Err("wrong realm");
        }
        let creds = TurnCredentials::verify(&self.config.secret, username, now)
            .map_err(|_| "malformed or expired username")?;
        let latest_expiry = now.checked_add(self.config.max_credential_ttl);
        if latest_expiry.is_some_and(|latest| creds.expires_at() > latest) {
            return Err("credential lifetime above the relay's maximum");
        }
        if self.is_closed(now, creds.username().reference()) {
            return Err("reference closed");
        }
        let integrity = long_term_integrity(&creds, &self.config.realm);
        integrity
            .check(&mut msg.clone())
            .map_err(|_| "message integrity mismatch")?;
        Ok((integrity, creds.username().reference().clone()))
    }

    /// The first peer address in `msg` that the policy denies. A request
    /// naming several peers is refused if any one is denied (RFC 8656 §9.2).
    fn denied_peer(&self, msg: &Message) -> Option<DeniedRange> {
        peer_addresses(msg).find_map(|ip| denied_range(ip, &self.config.policy))
    }

    /// 401 with REALM and the request's NONCE, as coturn answers bad
    /// credentials (the turn crate itself would answer 400).
    fn unauthorized(&self, msg: &Message, nonce: String) -> Vec<u8> {
        error_response(
            msg,
            msg.typ.method,
            CODE_UNAUTHORIZED,
            "Unauthorized",
            vec![
                Box::new(TextAttribute::new(ATTR_REALM, self.config.realm.clone())),
                Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
            ],
        )
    }
}

/// The long-term key `MD5(username ":" realm ":" password)` of RFC 8489 §9.2.
pub(crate) fn long_term_integrity(creds: &TurnCredentials, realm: &str) -> MessageIntegrity {
    MessageIntegrity::new_long_term_integrity(
        creds.username().to_string(),
        realm.to_owned(),
        creds.password().expose_secret().to_owned(),
    )
}

/// The reference of a TURN REST username; `None` if it is not one.
#[cfg(test)]
fn username_reference(username: &str) -> Option<Reference> {
    crate::credentials::TurnUsername::parse(username)
        .ok()
        .map(|u| u.reference().clone())
}

fn is_past(since: SystemTime, keep_for: Duration, now: SystemTime) -> bool {
    since.checked_add(keep_for).is_some_and(|until| until < now)
}

/// Every XOR-PEER-ADDRESS in `msg`, decoded one by one (the turn crate's
/// getter only sees the first). Undecodable ones are skipped: the server
/// refuses the request for them.
pub(crate) fn peer_addresses(msg: &Message) -> impl Iterator<Item = IpAddr> + '_ {
    msg.attributes
        .0
        .iter()
        .filter(|attr| attr.typ == ATTR_XOR_PEER_ADDRESS)
        .filter_map(|attr| {
            let mut single = Message::new();
            single.transaction_id = msg.transaction_id;
            single.add(ATTR_XOR_PEER_ADDRESS, &attr.value);
            let mut peer = PeerAddress::default();
            peer.get_from(&single).ok().map(|()| peer.ip)
        })
}

pub(crate) fn error_response(
    request: &Message,
    method: Method,
    code: ErrorCode,
    reason: &str,
    extra: Vec<Box<dyn Setter>>,
) -> Vec<u8> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(request.clone()),
        Box::new(MessageType::new(method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code,
            reason: reason.as_bytes().to_vec(),
        }),
    ];
    setters.extend(extra);
    setters.push(Box::new(FINGERPRINT));
    let mut response = Message::new();
    match response.build(&setters) {
        Ok(()) => response.raw,
        // Building from well-formed attributes of bounded size cannot fail;
        // if it ever did, an empty reply is dropped by the client and the
        // request is still refused.
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::UNIX_EPOCH;

    use stun::agent::TransactionId;
    use stun::error_code::CODE_BAD_REQUEST;
    use stun::message::{CLASS_SUCCESS_RESPONSE, METHOD_BINDING};

    use super::*;

    const REALM: &str = "konsult.test";
    const SECRET: &str = "gate-test-secret";

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn gate(allow_loopback: bool) -> Gate {
        Gate::new(GateConfig {
            secret: SecretString::from(SECRET),
            realm: REALM.to_owned(),
            policy: PeerPolicy { allow_loopback },
            allocations_per_consultation: 2,
            max_allocations: 5,
            max_credential_ttl: Duration::from_secs(3600),
        })
    }

    fn creds(reference: &str, now: u64, ttl: u64) -> TurnCredentials {
        TurnCredentials::issue(
            &SecretString::from(SECRET),
            &Reference::parse(reference).unwrap(),
            at(now),
            Duration::from_secs(ttl),
        )
        .unwrap()
    }

    /// An authenticated request as a TURN client builds it.
    fn request(
        method: Method,
        username: &str,
        password: &str,
        realm: &str,
        peers: &[&str],
    ) -> Message {
        // A ChannelBind carries a valid channel number unless a test says.
        let extra: Vec<Box<dyn Setter>> = if method == METHOD_CHANNEL_BIND {
            vec![Box::new(ChannelNumber(0x4000))]
        } else {
            Vec::new()
        };
        request_with(method, username, password, realm, peers, extra)
    }

    fn request_with(
        method: Method,
        username: &str,
        password: &str,
        realm: &str,
        peers: &[&str],
        extra: Vec<Box<dyn Setter>>,
    ) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(extra);
        for p in peers {
            let addr: SocketAddr = p.parse().unwrap();
            setters.push(Box::new(PeerAddress {
                ip: addr.ip(),
                port: addr.port(),
            }));
        }
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            username.to_owned(),
        )));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.to_owned())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, "n0nce".to_owned())));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            username.to_owned(),
            realm.to_owned(),
            password.to_owned(),
        )));
        setters.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&setters).unwrap();
        decoded(&m.raw)
    }

    fn authed(method: Method, c: &TurnCredentials, peers: &[&str]) -> Message {
        request(
            method,
            &c.username().to_string(),
            c.password().expose_secret(),
            REALM,
            peers,
        )
    }

    fn decoded(raw: &[u8]) -> Message {
        let mut m = Message {
            raw: raw.to_vec(),
            ..Default::default()
        };
        m.decode().unwrap();
        m
    }

    /// Whether the request reaches the server (an Allocate with no
    /// allocations held yet).
    fn passes(v: Verdict) -> bool {
        match v {
            Verdict::CheckQuota(q) => matches!(q.verdict(0, 0), Verdict::Accept(_)),
            // A Refresh of an allocation the client holds.
            Verdict::CheckAllocation(..) => true,
            v => matches!(v, Verdict::Forward | Verdict::Accept(_)),
        }
    }

    fn reply_code(v: &Verdict) -> u16 {
        let Verdict::Reply(_, raw) = v else {
            panic!("expected a reply, got {v:?}")
        };
        let m = decoded(raw);
        assert_eq!(m.typ.class, CLASS_ERROR_RESPONSE);
        let mut code = ErrorCodeAttribute::default();
        code.get_from(&m).unwrap();
        code.code.0
    }

    #[test]
    fn valid_credentials_are_forwarded() {
        let c = creds("consult-1", 1000, 600);
        for method in [METHOD_ALLOCATE, METHOD_REFRESH] {
            assert!(passes(
                gate(false).screen(at(1000), &authed(method, &c, &[]))
            ));
        }
    }

    #[test]
    fn unauthenticated_and_binding_requests_are_forwarded() {
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_BINDING, CLASS_REQUEST)),
        ])
        .unwrap();
        assert_eq!(
            gate(false).screen(at(0), &decoded(&m.raw)),
            Verdict::Forward
        );
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        ])
        .unwrap();
        assert_eq!(
            gate(false).screen(at(0), &decoded(&m.raw)),
            Verdict::Forward
        );
    }

    #[test]
    fn expired_forged_and_wrong_realm_credentials_get_401() {
        let g = gate(false);
        let c = creds("consult-1", 1000, 600);
        // Expired.
        assert_eq!(
            reply_code(&g.screen(at(1601), &authed(METHOD_ALLOCATE, &c, &[]))),
            401
        );
        // Forged: the expiry pushed out, the old password kept.
        let forged = request(
            METHOD_ALLOCATE,
            "1700:consult-1",
            c.password().expose_secret(),
            REALM,
            &[],
        );
        assert_eq!(reply_code(&g.screen(at(1000), &forged)), 401);
        // Wrong password.
        let wrong = request(
            METHOD_ALLOCATE,
            &c.username().to_string(),
            "guess",
            REALM,
            &[],
        );
        assert_eq!(reply_code(&g.screen(at(1000), &wrong)), 401);
        // Not a REST username at all.
        let plain = request(METHOD_ALLOCATE, "alice", "pw", REALM, &[]);
        assert_eq!(reply_code(&g.screen(at(1000), &plain)), 401);
        // Right credentials, other realm.
        let other_realm = request(
            METHOD_ALLOCATE,
            &c.username().to_string(),
            c.password().expose_secret(),
            "elsewhere",
            &[],
        );
        assert_eq!(reply_code(&g.screen(at(1000), &other_realm)), 401);
    }

    #[test]
    fn the_401_carries_realm_and_nonce_and_the_request_transaction() {
        let g = gate(false);
        let c = creds("consult-1", 1000, 600);
        let req = authed(METHOD_ALLOCATE, &c, &[]);
        let Verdict::Reply(Refusal::Unauthorized(_), raw) = g.screen(at(5000), &req) else {
            panic!("expected 401")
        };
        let resp = decoded(&raw);
        assert_eq!(resp.transaction_id, req.transaction_id);
        assert_eq!(
            resp.typ,
            MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE)
        );
        assert_eq!(
            TextAttribute::get_from_as(&resp, ATTR_REALM).unwrap().text,
            REALM
        );
        assert_eq!(
            TextAttribute::get_from_as(&resp, ATTR_NONCE).unwrap().text,
            "n0nce"
        );
    }

    #[test]
    fn credentials_living_longer_than_the_maximum_are_refused() {
        let g = gate(false);
        let ok = creds("consult-1", 1000, 3600);
        assert!(passes(
            g.screen(at(1000), &authed(METHOD_ALLOCATE, &ok, &[]))
        ));
        let too_long = creds("consult-1", 1000, 3601);
        assert_eq!(
            reply_code(&g.screen(at(1000), &authed(METHOD_ALLOCATE, &too_long, &[]))),
            401
        );
    }

    #[test]
    fn quota_is_per_consultation_and_signed() {
        let g = gate(false);
        let c = creds("consult-1", 1000, 600);
        let req = authed(METHOD_ALLOCATE, &c, &[]);
        let check = || match g.screen(at(1000), &req) {
            Verdict::CheckQuota(q) => q,
            other => panic!("expected a quota check, got {other:?}"),
        };
        assert_eq!(check().reference.as_str(), "consult-1");
        assert!(matches!(check().verdict(1, 4), Verdict::Accept(_)));
        let v = check().verdict(2, 2);
        assert_eq!(reply_code(&v), 486);
        // The relay's total caps every consultation, whatever it holds.
        assert_eq!(reply_code(&check().verdict(0, 5)), 486);
        let Verdict::Reply(Refusal::QuotaReached, raw) = v else {
            panic!()
        };
        long_term_integrity(&c, REALM)
            .check(&mut decoded(&raw))
            .expect("486 is signed with the client's key");
        // Refreshing an existing allocation is not capped; one the client
        // does not hold gets a signed 437.
        let Verdict::CheckAllocation(mismatch, _) =
            g.screen(at(1000), &authed(METHOD_REFRESH, &c, &[]))
        else {
            panic!("a Refresh is checked against the client's allocation")
        };
        assert_eq!(
            reply_code(&Verdict::Reply(Refusal::Invalid("x"), mismatch.clone())),
            437
        );
        long_term_integrity(&c, REALM)
            .check(&mut decoded(&mismatch))
            .expect("437 is signed with the client's key");
    }

    #[test]
    fn rfc_8656_refusals_are_signed_answers() {
        let g = gate(false);
        let c = creds("consult-1", 1000, 600);
        let with = |method, extra: Vec<Box<dyn Setter>>| {
            let peers: &[&str] = if method == METHOD_CHANNEL_BIND {
                &["8.8.8.8:5000"]
            } else {
                &[]
            };
            request_with(
                method,
                &c.username().to_string(),
                c.password().expose_secret(),
                REALM,
                peers,
                extra,
            )
        };
        // Channel numbers: 0x4000–0x7FFF; outside, or none: 400.
        for number in [0x0000, 0x3FFF, 0x8000, 0xFFFF] {
            let v = g.screen(
                at(1000),
                &with(METHOD_CHANNEL_BIND, vec![Box::new(ChannelNumber(number))]),
            );
            assert_eq!(reply_code(&v), 400, "{number:#x}");
            assert!(matches!(v, Verdict::Reply(Refusal::Invalid(_), _)));
        }
        assert_eq!(
            reply_code(&g.screen(at(1000), &with(METHOD_CHANNEL_BIND, Vec::new()))),
            400
        );
        for number in [0x4000, 0x4FFF, 0x7FFF] {
            let req = with(METHOD_CHANNEL_BIND, vec![Box::new(ChannelNumber(number))]);
            assert!(
                matches!(g.screen(at(1000), &req), Verdict::Accept(_)),
                "{number:#x}"
            );
        }
    }

    #[test]
    fn denied_peers_get_403_for_permission_and_channel_bind() {
        let g = gate(false);
        let c = creds("consult-1", 1000, 600);
        for method in [METHOD_CREATE_PERMISSION, METHOD_CHANNEL_BIND] {
            for peer in [
                "127.0.0.1:5000",
                "10.0.0.1:1",
                "[fe80::1]:9",
                "[::ffff:192.168.0.1]:9",
            ] {
                let v = g.screen(at(1000), &authed(method, &c, &[peer]));
                assert_eq!(reply_code(&v), 403, "{peer}");
                let Verdict::Reply(Refusal::ForbiddenPeer(_), raw) = v else {
                    panic!()
                };
                let mut code = ErrorCodeAttribute::default();
                code.get_from(&decoded(&raw)).unwrap();
                assert_eq!(code.reason, b"Forbidden IP");
            }
            assert!(matches!(
                g.screen(at(1000), &authed(method, &c, &["8.8.8.8:5000"])),
                Verdict::Accept(_)
            ));
        }
    }

    #[test]
    fn one_denied_peer_among_several_refuses_the_request() {
        let c = creds("consult-1", 1000, 600);
        let req = authed(
            METHOD_CREATE_PERMISSION,
            &c,
            &["8.8.8.8:1", "1.1.1.1:2", "192.168.1.1:3"],
        );
        let v = gate(false).screen(at(1000), &req);
        assert!(
            matches!(
                v,
                Verdict::Reply(Refusal::ForbiddenPeer(DeniedRange::Private), _)
            ),
            "{v:?}"
        );
        assert_eq!(reply_code(&v), 403);
    }

    #[test]
    fn loopback_peers_pass_only_with_allow_loopback() {
        let c = creds("consult-1", 1000, 600);
        let req = authed(METHOD_CREATE_PERMISSION, &c, &["127.0.0.1:5000"]);
        assert!(matches!(
            gate(true).screen(at(1000), &req),
            Verdict::Accept(_)
        ));
        assert_eq!(reply_code(&gate(false).screen(at(1000), &req)), 403);
    }

    #[test]
    fn credentials_are_checked_before_peers() {
        let c = creds("consult-1", 1000, 600);
        let req = authed(METHOD_CREATE_PERMISSION, &c, &["10.0.0.1:1"]);
        assert_eq!(reply_code(&gate(false).screen(at(9999), &req)), 401);
    }

    #[test]
    fn send_indications_to_denied_peers_are_dropped() {
        let mk = |peer: &str| {
            let addr: SocketAddr = peer.parse().unwrap();
            let mut m = Message::new();
            m.build(&[
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
                Box::new(PeerAddress {
                    ip: addr.ip(),
                    port: addr.port(),
                }),
                Box::new(turn::proto::data::Data(b"hi".to_vec())),
            ])
            .unwrap();
            decoded(&m.raw)
        };
        assert_eq!(
            gate(false).screen(at(0), &mk("169.254.169.254:80")),
            Verdict::Drop(Refusal::ForbiddenPeer(DeniedRange::LinkLocal))
        );
        assert_eq!(
            gate(false).screen(at(0), &mk("8.8.8.8:80")),
            Verdict::Forward
        );
        assert_eq!(
            gate(true).screen(at(0), &mk("127.0.0.1:80")),
            Verdict::Forward
        );
    }

    #[test]
    fn closed_references_are_refused_until_their_credentials_must_have_expired() {
        let mut g = gate(false);
        let a = creds("consult-a", 1000, 600);
        let b = creds("consult-b", 1000, 600);
        g.close_references(at(1100), [&Reference::parse("consult-a").unwrap()]);
        assert_eq!(
            reply_code(&g.screen(at(1100), &authed(METHOD_REFRESH, &a, &[]))),
            401
        );
        assert!(passes(g.screen(at(1100), &authed(METHOD_REFRESH, &b, &[]))));
        // A credential for the closed reference issued later is refused too,
        // while anything issued before the close could still be alive.
        let later = creds("consult-a", 2000, 600);
        assert_eq!(
            reply_code(&g.screen(at(2000), &authed(METHOD_ALLOCATE, &later, &[]))),
            401
        );
        // After max_credential_ttl every earlier credential has expired, and
        // the entry is forgotten (and pruned on the next close).
        let much_later = creds("consult-a", 4701, 600);
        assert!(passes(
            g.screen(at(4701), &authed(METHOD_ALLOCATE, &much_later, &[]))
        ));
        g.close_references(at(4701), [&Reference::parse("consult-b").unwrap()]);
        assert_eq!(g.closed.len(), 1);
    }

    #[test]
    fn closing_a_consultation_refuses_its_participants_and_closing_one_only_that_one() {
        let mut g = gate(false);
        let p1 = creds("c.p1", 1000, 600);
        let p2 = creds("c.p2", 1000, 600);
        let whole = creds("c", 1000, 600);
        let other = creds("d.p1", 1000, 600);
        let refused = |g: &Gate, c: &TurnCredentials| {
            matches!(
                g.screen(at(1100), &authed(METHOD_REFRESH, c, &[])),
                Verdict::Reply(Refusal::Unauthorized(_), _)
            )
        };

        g.close_references(at(1100), [&Reference::parse("c.p1").unwrap()]);
        assert!(refused(&g, &p1));
        assert!(!refused(&g, &p2), "the other participant keeps its relay");
        assert!(
            !refused(&g, &whole),
            "a participant does not close its consultation"
        );

        g.close_references(at(1100), [&Reference::parse("c").unwrap()]);
        for c in [&p1, &p2, &whole] {
            assert!(refused(&g, c), "{}", c.username());
        }
        assert!(!refused(&g, &other));
        // A dotted reference that is not two parts is its own consultation.
        let dotted = creds("c.p1.x", 1000, 600);
        assert!(!refused(&g, &dotted));
    }

    #[test]
    fn closing_again_is_idempotent_and_remembered_from_the_latest_close() {
        let mut g = gate(false);
        let r = Reference::parse("c").unwrap();
        g.close_references(at(1000), [&r, &r]);
        g.close_references(at(2000), [&r]);
        g.close_references(at(1500), [&r]);
        assert_eq!(g.closed.len(), 1);
        assert_eq!(g.closed[&r], at(2000));
        // Still refused an hour after the first close, as the latest close
        // started the hour again.
        let late = creds("c.p1", 4800, 600);
        assert_eq!(
            reply_code(&g.screen(at(4800), &authed(METHOD_ALLOCATE, &late, &[]))),
            401
        );
    }

    #[test]
    fn an_accepted_allocate_names_its_reference() {
        let c = creds("c.p1", 1000, 600);
        let Verdict::CheckQuota(check) =
            gate(false).screen(at(1000), &authed(METHOD_ALLOCATE, &c, &[]))
        else {
            panic!("expected a quota check")
        };
        assert_eq!(check.reference, Reference::parse("c.p1").unwrap());
    }

    #[test]
    fn malformed_authenticated_requests_go_to_the_server() {
        // Integrity but no USERNAME/NONCE: the server answers 400.
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(MessageIntegrity::new_short_term_integrity("x".into())),
        ])
        .unwrap();
        assert_eq!(
            gate(false).screen(at(0), &decoded(&m.raw)),
            Verdict::Forward
        );
        // Responses from a client are not ours to judge either.
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE)),
            Box::new(ErrorCodeAttribute {
                code: CODE_BAD_REQUEST,
                reason: vec![],
            }),
        ])
        .unwrap();
        assert_eq!(
            gate(false).screen(at(0), &decoded(&m.raw)),
            Verdict::Forward
        );
    }

    #[test]
    fn username_reference_parsing() {
        let r = Reference::parse("consult-a").unwrap();
        assert_eq!(username_reference("123:consult-a"), Some(r));
        assert_eq!(username_reference("consult-a"), None);
        assert_eq!(username_reference("123:consult a"), None);
    }
}
