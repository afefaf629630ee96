//! The limits shown in `docs/protocol.md`'s `welcome` example are the
//! defaults the core announces.

use konsult_protocol::{ServerBody, ServerMessage};
use konsult_signal::Config;

const DOC: &str = include_str!("../../../docs/protocol.md");

#[test]
fn documented_welcome_limits_are_the_defaults() {
    let welcome = DOC
        .lines()
        .find(|l| l.starts_with(r#"{"type":"welcome""#))
        .expect("welcome example");
    let msg: ServerMessage = serde_json::from_str(welcome).unwrap();
    let ServerBody::Welcome(w) = msg.body else {
        panic!("not a welcome")
    };
    let cfg = Config::default();
    assert_eq!(w.limits, cfg.limits());
    assert!(DOC.contains(&format!(
        "| admission check | {} s |",
        cfg.admission_check_timeout.as_secs()
    )));
    assert!(DOC.contains(&format!("| replay buffer | {} messages", cfg.replay_buffer)));
    assert!(DOC.contains(&format!(
        "| errors | {} within {} s |",
        cfg.max_errors,
        cfg.error_window.as_secs()
    )));
}
