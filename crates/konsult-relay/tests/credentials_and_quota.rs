//! Expired and forged credentials are refused with 401, a consultation holds
//! at most its quota of allocations over all its credentials, and closing a consultation reference ends
//! its allocations and refuses its credentials.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use konsult_relay::{Reference, Relay, RelayConfig, TurnCredentials};
use secrecy::{ExposeSecret, SecretString};
use webrtc_util::Conn;

async fn allocate_raw(relay: &Relay, username: &str, password: &str) -> Outcome<Session> {
    RawTurn::new(relay.local_addr())
        .await
        .allocate(username, password)
        .await
        .expect("the relay answers")
}

#[tokio::test]
async fn expired_credentials_get_401() {
    let relay = start_relay(false).await;
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let expired = issue_at("consult-cred-a", an_hour_ago, 60);
    assert_eq!(
        allocate_raw(
            &relay,
            &expired.username().to_string(),
            expired.password().expose_secret()
        )
        .await
        .err(),
        Some(401)
    );
    // And the turn crate's client (a headless peer) fails to allocate.
    let client = turn_client_for(relay.local_addr(), &expired).await;
    let err = client.allocate().await.err().expect("allocation refused");
    assert!(err.to_string().contains("401"), "{err}");
    client.close().await.unwrap();

    // The control: the same reference with a live credential works.
    let live = issue("consult-cred-a", 60);
    assert!(allocate_raw(
        &relay,
        &live.username().to_string(),
        live.password().expose_secret()
    )
    .await
    .is_ok());
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn forged_credentials_get_401() {
    let relay = start_relay(false).await;
    let genuine = issue("consult-cred-b", 600);
    let password = genuine.password().expose_secret();
    let expiry = genuine.username().expiry_unix();

    // The expiry pushed out by a day, the password kept.
    let extended = format!("{}:consult-cred-b", expiry + 86_400);
    assert_eq!(
        allocate_raw(&relay, &extended, password).await.err(),
        Some(401)
    );
    // Another consultation's reference, the password kept.
    let other = format!("{expiry}:consult-cred-c");
    assert_eq!(
        allocate_raw(&relay, &other, password).await.err(),
        Some(401)
    );
    // Minted with another secret.
    let foreign = TurnCredentials::issue(
        &SecretString::from("not-the-relay-secret"),
        &Reference::parse("consult-cred-b").unwrap(),
        SystemTime::now(),
        Duration::from_secs(600),
    )
    .unwrap();
    assert_eq!(
        allocate_raw(
            &relay,
            &foreign.username().to_string(),
            foreign.password().expose_secret()
        )
        .await
        .err(),
        Some(401)
    );
    // Not a TURN REST username at all.
    assert_eq!(
        allocate_raw(&relay, "therapist", "hunter2").await.err(),
        Some(401)
    );
    // A lifetime beyond the relay's maximum (24 h by default).
    let too_long = TurnCredentials::issue(
        &secret(),
        &Reference::parse("consult-cred-b").unwrap(),
        SystemTime::now(),
        Duration::from_secs(3 * 86_400),
    )
    .unwrap();
    assert_eq!(
        allocate_raw(
            &relay,
            &too_long.username().to_string(),
            too_long.password().expose_secret()
        )
        .await
        .err(),
        Some(401)
    );

    assert!(
        allocate_raw(&relay, &genuine.username().to_string(), password)
            .await
            .is_ok()
    );
    assert_eq!(relay.allocation_count().await.unwrap(), 1);
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_consultation_holds_its_quota_whatever_its_usernames() {
    let relay = start_relay(false).await;
    let quota = RelayConfig::DEFAULT_ALLOCATIONS_PER_CONSULTATION;
    // A fresh credential for each allocation, as a client that fetches new
    // ICE servers every time would have: participants and expiries differ,
    // the consultation is the same.
    let fresh = |i: usize| {
        let reference = match i % 3 {
            0 => "consult-quota".to_owned(),
            n => format!("consult-quota.p{n}"),
        };
        issue(&reference, 600 + i as u64)
    };
    let mut clients = Vec::new();
    for i in 0..quota {
        let creds = fresh(i);
        let raw = RawTurn::new(relay.local_addr()).await;
        let session = raw
            .allocate(
                &creds.username().to_string(),
                creds.password().expose_secret(),
            )
            .await
            .unwrap()
            .unwrap_or_else(|code| panic!("allocation {} refused with {code}", i + 1));
        clients.push((raw, session));
    }
    assert_eq!(relay.allocation_count().await.unwrap(), quota);

    let one_more = fresh(quota);
    let (username, password) = (
        one_more.username().to_string(),
        one_more.password().expose_secret().to_owned(),
    );
    let next = RawTurn::new(relay.local_addr()).await;
    let allocate_next = || next.allocate(&username, &password);
    assert_eq!(allocate_next().await.unwrap().err(), Some(486));
    assert_eq!(relay.allocation_count().await.unwrap(), quota);

    // The quota counts one consultation: another is not affected.
    let other = issue("consult-quota-other", 600);
    assert!(allocate_raw(
        &relay,
        &other.username().to_string(),
        other.password().expose_secret()
    )
    .await
    .is_ok());

    // It counts live allocations: after one is released, there is room.
    let (raw, session) = &clients[0];
    assert_eq!(
        raw.refresh(session, Duration::from_secs(600))
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(raw.refresh(session, Duration::ZERO).await.unwrap(), Ok(()));
    assert!(allocate_next().await.unwrap().is_ok());
    // Refreshing the allocation that is gone: 437 Allocation Mismatch (RFC
    // 8656 §7.3), not a success.
    assert_eq!(
        raw.refresh(session, Duration::from_secs(600))
            .await
            .unwrap(),
        Err(437)
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn close_reference_ends_a_consultations_allocations_only() {
    let relay = start_relay(true).await;
    let echo = EchoPeer::start().await;
    let ended = Reference::parse("consult-ended").unwrap();
    let ongoing = Reference::parse("consult-ongoing").unwrap();

    // Two participants of the ending consultation, one of another.
    let ended_creds = issue(ended.as_str(), 600);
    let patient = turn_client_for(relay.local_addr(), &ended_creds).await;
    let patient_conn = patient.allocate().await.unwrap();
    let therapist = turn_client_for(relay.local_addr(), &ended_creds).await;
    let therapist_conn = therapist.allocate().await.unwrap();
    let other_creds = issue(ongoing.as_str(), 600);
    let other = turn_client_for(relay.local_addr(), &other_creds).await;
    let other_conn = other.allocate().await.unwrap();
    for conn in [&patient_conn, &therapist_conn, &other_conn] {
        round_trip(conn, echo.addr, b"before").await.unwrap();
    }
    assert_eq!(relay.allocations_for(&ended).await.unwrap(), 2);

    assert_eq!(relay.close_reference(&ended).await.unwrap(), 2);
    assert_eq!(relay.allocations_for(&ended).await.unwrap(), 0);
    assert_eq!(relay.allocations_for(&ongoing).await.unwrap(), 1);

    // Media of the ended consultation no longer reaches the peer ...
    let before = echo.received();
    let _ = patient_conn.send_to(b"after", echo.addr).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(echo.received(), before);
    // ... its credentials cannot allocate again ...
    assert_eq!(
        allocate_raw(
            &relay,
            &ended_creds.username().to_string(),
            ended_creds.password().expose_secret()
        )
        .await
        .err(),
        Some(401)
    );
    // ... and the other consultation carries on.
    assert_eq!(
        round_trip(&other_conn, echo.addr, b"still here")
            .await
            .unwrap(),
        b"still here"
    );
    for client in [patient, therapist, other] {
        client.close().await.unwrap();
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_relay_holds_its_total_whatever_the_consultations() {
    let mut c = config(false);
    c.max_allocations = 3;
    let relay = Relay::start(c).await.unwrap();
    let allocate = |reference: String| {
        let relay = &relay;
        async move {
            let creds = issue(&reference, 600);
            allocate_raw(
                relay,
                &creds.username().to_string(),
                creds.password().expose_secret(),
            )
            .await
            .err()
        }
    };
    for i in 0..3 {
        assert_eq!(allocate(format!("consult-total-{i}")).await, None, "{i}");
    }
    // A fourth consultation, well inside its own quota, meets the total.
    assert_eq!(allocate("consult-total-3".into()).await, Some(486));
    assert_eq!(relay.allocation_count().await.unwrap(), 3);
    let stats = relay.stats().await.unwrap();
    assert_eq!((stats.allocations, stats.refused_quota), (3, 1));
    relay.shutdown().await.unwrap();
}
