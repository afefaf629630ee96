//! Bad frames on a joined connection get a clear error and change nothing;
//! an oversized frame reaches the core (`too_large`) instead of killing the
//! socket; too many errors close it with 4003 (resume allowed); binary
//! frames close it with 1003.

use crate::common;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use futures_util::SinkExt;
use konsult_domain::ConsultationState;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_frames_get_errors_and_change_nothing() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;

    for (frame, code) in [
        ("{not json".to_owned(), "malformed"),
        ("[1,2]".to_owned(), "malformed"),
        (r#"{"type":"teleport"}"#.to_owned(), "unknown_type"),
        (
            r#"{"type":"chat","text":"hej","extra":1}"#.to_owned(),
            "invalid_fields",
        ),
        (
            r#"{"type":"offer","sdp":"not an sdp"}"#.to_owned(),
            "invalid_fields",
        ),
        // Over the 64 KiB frame limit, under the socket's limit.
        (
            format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(66 * 1024)),
            "too_large",
        ),
        (r#"{"type":"admit"}"#.to_owned(), "forbidden"),
        (
            r#"{"type":"offer","sdp":"v=0\r\n"}"#.to_owned(),
            "wrong_state",
        ),
        (patient_hello(&b.token), "wrong_state"),
    ] {
        send(&mut patient, frame.clone()).await;
        let error = expect_error(&mut patient, code).await;
        let message = error["message"].as_str().unwrap();
        assert!(
            !message.contains("not an sdp") && !message.contains("xxxx"),
            "{message}"
        );
    }
    // Still connected and still waiting; the store saw only the arrival.
    send(&mut patient, r#"{"type":"ping"}"#).await;
    expect(&mut patient, "pong").await;
    wait_for_events(&app, &fx, &b, &["patient_waiting"]).await;
    assert_eq!(
        stored(&app, &fx, &b).await.state,
        ConsultationState::Waiting
    );
    app.stop().await;
}

#[tokio::test]
async fn too_many_errors_close_with_4003_and_the_participant_may_resume() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let mut patient = connect(&app, None).await;
    let welcome = join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    for _ in 0..9 {
        send(&mut patient, "nonsense").await;
        expect_error(&mut patient, "malformed").await;
    }
    send(&mut patient, "nonsense").await;
    expect_error(&mut patient, "malformed").await;
    expect_error(&mut patient, "too_many_errors").await;
    expect_close(&mut patient, 4003).await;

    // Resume within the grace period: same place, nothing lost.
    let mut hello: serde_json::Value = serde_json::from_str(&patient_hello(&b.token)).unwrap();
    hello["resume"] = serde_json::json!({"token": welcome.resume_token.as_str(), "last_seq": 1});
    let mut patient = connect(&app, None).await;
    let resumed = join(&mut patient, hello.to_string()).await;
    assert!(resumed.resumed);
    send(&mut patient, r#"{"type":"ping"}"#).await;
    expect(&mut patient, "pong").await;
    // The drop and resume did not look like leaving the waiting room.
    wait_for_events(&app, &fx, &b, &["patient_waiting"]).await;
    app.stop().await;
}

#[tokio::test]
async fn binary_and_giant_frames_close_the_socket() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;

    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    patient.send(Message::binary(vec![0u8; 16])).await.unwrap();
    expect_close(&mut patient, 1003).await;

    // Above the socket's message limit the connection is torn down.
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    let giant = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(512 * 1024));
    let _ = patient.send(Message::text(giant)).await;
    loop {
        match next(&mut patient).await {
            Next::Closed(code) => {
                assert_ne!(code, Some(1000));
                break;
            }
            Next::Message(_) => continue,
        }
    }
    // The server is fine.
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    app.stop().await;
}
