//! Real calls through the server (WebRTC peers, the embedded relay, TURN
//! over TLS on the HTTPS port), one module per file, in one test binary.
//! `hardening`, `api_logs` and `call_logs` stay binaries of their own: the
//! first measures a server under load with timing bounds, the other two
//! install a process-wide log subscriber.

#[macro_use]
mod common;

#[path = "call_direct.rs"]
mod call_direct;
#[path = "call_evidence.rs"]
mod call_evidence;
#[path = "call_relay.rs"]
mod call_relay;
#[path = "call_resume.rs"]
mod call_resume;
#[path = "call_revocation.rs"]
mod call_revocation;
#[path = "cluster.rs"]
mod cluster;
#[path = "signaling_slow_reader.rs"]
mod signaling_slow_reader;
#[path = "turn_over_tls.rs"]
mod turn_over_tls;
