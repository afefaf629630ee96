//! TURN REST passwords recomputed independently by the `openssl` command
//! line tool: `printf %s "$username" | openssl dgst -sha1 -hmac "$secret"
//! -binary | openssl base64 -A`. (coturn's acceptance of the same
//! credentials is shown in `coturn.rs`.)

use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use konsult_relay::{Reference, TurnCredentials};
use secrecy::{ExposeSecret, SecretString};

fn openssl_rest_password(secret: &str, username: &str) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"printf %s "$U" | openssl dgst -sha1 -hmac "$S" -binary | openssl base64 -A"#)
        .env("U", username)
        .env("S", secret)
        .output()
        .expect("run sh");
    assert!(
        output.status.success() && !output.stdout.is_empty(),
        "openssl failed (install Debian's `openssl` package): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn passwords_match_openssl_hmac_sha1() {
    let cases = [
        ("konsult-test-secret", "c0ffee-consult", 1_699_999_000, 1000),
        (
            "another secret with spaces & symbols!",
            "550e8400-e29b-41d4-a716-446655440000",
            1_735_689_600,
            2700,
        ),
        ("æøå-utf8-secret", "a", 0, 1),
        ("s", "x.y_z~w-9", 4_102_444_800, 86_400),
    ];
    for (secret, reference, now, ttl) in cases {
        let creds = TurnCredentials::issue(
            &SecretString::from(secret),
            &Reference::parse(reference).unwrap(),
            UNIX_EPOCH + Duration::from_secs(now),
            Duration::from_secs(ttl),
        )
        .unwrap();
        let username = creds.username().to_string();
        assert_eq!(username, format!("{}:{reference}", now + ttl));
        assert_eq!(
            creds.password().expose_secret(),
            openssl_rest_password(secret, &username),
            "secret {secret:?}, username {username}"
        );
    }
}
