//! Small value types shared by client and server messages.
//!
//! Text fields that reach the other participant or the server's state are
//! newtypes with a private field and a `parse` constructor: an over-long chat
//! line or an SDP that is not an SDP cannot exist past deserialization.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Maximum length of a chat line, in Unicode scalar values (`char`s).
pub const MAX_CHAT_CHARS: usize = 2000;

/// Maximum length of the therapist's optional note on `deny`, in `char`s.
pub const MAX_NOTE_CHARS: usize = 500;

/// Maximum length of one ICE candidate attribute, in bytes.
pub const MAX_CANDIDATE_BYTES: usize = 1024;

/// Maximum length of an SDP `a=mid` value, in bytes.
pub const MAX_MID_BYTES: usize = 64;

/// Maximum length of a join-link token, in bytes.
pub const MAX_LINK_TOKEN_BYTES: usize = 2048;

/// Which side of a consultation a participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The clinic's physiotherapist; authenticated by the dashboard session.
    Therapist,
    /// The patient; authenticated by the join link.
    Patient,
}

impl Role {
    /// The other participant's role.
    pub fn other(self) -> Role {
        match self {
            Role::Therapist => Role::Patient,
            Role::Patient => Role::Therapist,
        }
    }

    /// The wire name (`"therapist"` / `"patient"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Therapist => "therapist",
            Role::Patient => "patient",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which ICE candidates the server lets through for a consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidatePolicy {
    /// Every candidate is relayed unchanged.
    All,
    /// Only `typ relay` candidates are relayed; everything else is removed
    /// from SDP and trickle messages by the server, so neither side learns the
    /// other's IP address. Clients should set `iceTransportPolicy: "relay"`.
    RelayOnly,
}

/// The type of an ICE candidate (RFC 8445 section 5.1.1), as reported in stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateType {
    /// A local interface address.
    Host,
    /// Server-reflexive: the address a STUN server saw.
    Srflx,
    /// Peer-reflexive: learned from a connectivity check.
    Prflx,
    /// Relayed through TURN.
    Relay,
}

/// `RTCPeerConnection.connectionState`, as reported in stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Not yet connecting.
    New,
    /// ICE/DTLS in progress.
    Connecting,
    /// Media can flow.
    Connected,
    /// Temporarily lost connectivity.
    Disconnected,
    /// ICE failed; an ICE restart is needed.
    Failed,
    /// The peer connection was closed.
    Closed,
}

/// Declares a validated string newtype with serde support through `parse`.
macro_rules! text_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the value, returning the text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidText;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Why a text field was rejected. The messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidText {
    /// The text is empty (or only whitespace where that matters).
    #[error("must not be empty")]
    Empty,
    /// The text is longer than allowed.
    #[error("longer than {max} {unit}")]
    TooLong {
        /// The limit.
        max: usize,
        /// `"characters"` or `"bytes"`.
        unit: &'static str,
    },
    /// The text contains a character that is not allowed here.
    #[error("contains a character that is not allowed here")]
    ForbiddenCharacter,
    /// The text does not have the required shape.
    #[error("{0}")]
    Shape(&'static str),
}

fn check_bytes(s: &str, max: usize) -> Result<(), InvalidText> {
    if s.is_empty() {
        return Err(InvalidText::Empty);
    }
    if s.len() > max {
        return Err(InvalidText::TooLong { max, unit: "bytes" });
    }
    Ok(())
}

text_newtype!(
    /// A session description (RFC 8866 SDP), as produced by
    /// `RTCPeerConnection.createOffer/createAnswer`. Must start with `v=0`.
    /// Its size is bounded by the frame size limit.
    Sdp
);

impl Sdp {
    /// Accepts text that starts with the SDP version line `v=0`.
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        if s.is_empty() {
            return Err(InvalidText::Empty);
        }
        if !s.starts_with("v=0") {
            return Err(InvalidText::Shape("an SDP must start with `v=0`"));
        }
        if s.contains('\0') {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(Sdp(s))
    }
}

impl fmt::Debug for Sdp {
    // SDP contains addresses: never print it, not even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sdp(<{} bytes>)", self.0.len())
    }
}

text_newtype!(
    /// One ICE candidate attribute as given by `RTCIceCandidate.candidate`
    /// (`candidate:…`, an `a=` prefix is tolerated). Non-empty, at most
    /// [`MAX_CANDIDATE_BYTES`], one line. End of candidates is its own message.
    CandidateLine
);

impl CandidateLine {
    /// Accepts one non-empty line of at most [`MAX_CANDIDATE_BYTES`].
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        check_bytes(&s, MAX_CANDIDATE_BYTES)?;
        if s.chars().any(|c| c.is_control()) {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(CandidateLine(s))
    }
}

impl fmt::Debug for CandidateLine {
    // Candidates contain addresses: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CandidateLine(<{} bytes>)", self.0.len())
    }
}

text_newtype!(
    /// An SDP media id (`a=mid`), as given by `RTCIceCandidate.sdpMid`.
    Mid
);

impl Mid {
    /// Accepts 1 to [`MAX_MID_BYTES`] visible ASCII characters.
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        check_bytes(&s, MAX_MID_BYTES)?;
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(Mid(s))
    }
}

impl fmt::Debug for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mid({:?})", self.0)
    }
}

text_newtype!(
    /// An ICE username fragment (`usernameFragment`), used to tell candidate
    /// generations apart across ICE restarts.
    Ufrag
);

impl Ufrag {
    /// Accepts 1 to 256 visible ASCII characters.
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        check_bytes(&s, 256)?;
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(Ufrag(s))
    }
}

impl fmt::Debug for Ufrag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ufrag(<redacted>)")
    }
}

text_newtype!(
    /// One in-call chat line: 1 to [`MAX_CHAT_CHARS`] characters, not only
    /// whitespace; newlines and tabs are allowed, other control characters not.
    ChatText
);

impl ChatText {
    /// Accepts a chat line within the limits above.
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        if s.trim().is_empty() {
            return Err(InvalidText::Empty);
        }
        if s.chars().count() > MAX_CHAT_CHARS {
            return Err(InvalidText::TooLong {
                max: MAX_CHAT_CHARS,
                unit: "characters",
            });
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(ChatText(s))
    }
}

impl fmt::Debug for ChatText {
    // Chat is personal data: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChatText(<{} chars>)", self.0.chars().count())
    }
}

text_newtype!(
    /// The therapist's optional note when denying entry, shown to the patient:
    /// 1 to [`MAX_NOTE_CHARS`] characters, no control characters but newline.
    Note
);

impl Note {
    /// Accepts a note within the limits above.
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        if s.trim().is_empty() {
            return Err(InvalidText::Empty);
        }
        if s.chars().count() > MAX_NOTE_CHARS {
            return Err(InvalidText::TooLong {
                max: MAX_NOTE_CHARS,
                unit: "characters",
            });
        }
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(Note(s))
    }
}

impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Note(<{} chars>)", self.0.chars().count())
    }
}

text_newtype!(
    /// The opaque token from a patient's join link. The server verifies it;
    /// the protocol only bounds its size (1 to [`MAX_LINK_TOKEN_BYTES`]
    /// visible ASCII characters).
    LinkToken
);

impl LinkToken {
    /// Accepts a token within the limits above.
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        check_bytes(&s, MAX_LINK_TOKEN_BYTES)?;
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(LinkToken(s))
    }
}

impl fmt::Debug for LinkToken {
    // A bearer credential: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(<redacted>)")
    }
}

text_newtype!(
    /// The token a participant presents to resume after a dropped WebSocket.
    /// Issued in `welcome`; 16 to 128 characters of `[A-Za-z0-9_-]`
    /// (for example base64url of 32 random bytes).
    ResumeToken
);

impl ResumeToken {
    /// Accepts a token within the limits above.
    pub fn parse(s: String) -> Result<Self, InvalidText> {
        if s.is_empty() {
            return Err(InvalidText::Empty);
        }
        if s.len() < 16 {
            return Err(InvalidText::Shape(
                "a resume token has at least 16 characters",
            ));
        }
        if s.len() > 128 {
            return Err(InvalidText::TooLong {
                max: 128,
                unit: "bytes",
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidText::ForbiddenCharacter);
        }
        Ok(ResumeToken(s))
    }

    /// Compares two tokens in time independent of where they differ, so a
    /// guesser learns nothing from response timing.
    pub fn ct_eq(&self, other: &ResumeToken) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for ResumeToken {
    // A bearer credential: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(<redacted>)")
    }
}

/// One ICE server for `RTCPeerConnection({iceServers})`, usually the TURN
/// relay with short-lived TURN REST credentials. `Debug` hides the credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `turn:`/`turns:`/`stun:` URLs.
    pub urls: Vec<String>,
    /// TURN username (`expiry:id` for TURN REST credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_text_limits() {
        assert!(ChatText::parse("hej".into()).is_ok());
        assert!(ChatText::parse("linje 1\nlinje 2".into()).is_ok());
        assert_eq!(ChatText::parse("  ".into()), Err(InvalidText::Empty));
        assert!(ChatText::parse("æ".repeat(MAX_CHAT_CHARS)).is_ok());
        assert!(matches!(
            ChatText::parse("æ".repeat(MAX_CHAT_CHARS + 1)),
            Err(InvalidText::TooLong { .. })
        ));
        assert_eq!(
            ChatText::parse("a\u{7}b".into()),
            Err(InvalidText::ForbiddenCharacter)
        );
    }

    #[test]
    fn sdp_must_look_like_sdp() {
        assert!(Sdp::parse("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n".into()).is_ok());
        assert!(Sdp::parse("hello".into()).is_err());
        assert!(Sdp::parse(String::new()).is_err());
    }

    #[test]
    fn candidate_line_is_one_line() {
        assert!(CandidateLine::parse("candidate:1 1 udp 1 1.2.3.4 5 typ host".into()).is_ok());
        assert!(CandidateLine::parse("candidate:1\r\na=x".into()).is_err());
        assert!(CandidateLine::parse(String::new()).is_err());
        assert!(CandidateLine::parse("x".repeat(MAX_CANDIDATE_BYTES + 1)).is_err());
    }

    #[test]
    fn resume_token_shape_and_comparison() {
        let a = ResumeToken::parse("abcdefghijklmnop".into()).unwrap();
        let b = ResumeToken::parse("abcdefghijklmnoq".into()).unwrap();
        assert!(a.ct_eq(&a.clone()));
        assert!(!a.ct_eq(&b));
        assert!(ResumeToken::parse("short".into()).is_err());
        assert!(ResumeToken::parse("abcdefghijklmnop!".into()).is_err());
    }

    #[test]
    fn debug_output_never_shows_secrets_or_addresses() {
        let sdp = Sdp::parse("v=0\r\nc=IN IP4 192.0.2.7\r\n".into()).unwrap();
        assert!(!format!("{sdp:?}").contains("192.0.2.7"));
        let cand = CandidateLine::parse("candidate:1 1 udp 1 192.0.2.7 5 typ host".into()).unwrap();
        assert!(!format!("{cand:?}").contains("192.0.2.7"));
        let tok = LinkToken::parse("secret-token".into()).unwrap();
        assert!(!format!("{tok:?}").contains("secret"));
        let ice = IceServer {
            urls: vec!["turn:relay.example:3478".into()],
            username: Some("1700000000:x".into()),
            credential: Some("s3cr3t".into()),
        };
        assert!(!format!("{ice:?}").contains("s3cr3t"));
    }
}
