//! The WebSocket client against the protocol stand-in of `common`: join,
//! admission, two-way media, resume with replay, leave, refusals. The real
//! server's end-to-end tests use the same client.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{start_server, Shared, COOKIE_OK, LINK};
use konsult_peer::{ClientError, ClientOptions, Credentials, NetworkScope, PeerClient};
use konsult_protocol::{ByeReason, ErrorCode, LinkToken, Role};
use tokio::net::TcpListener;
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(60);

fn options(admit: bool) -> ClientOptions {
    ClientOptions {
        admit,
        network: NetworkScope::Loopback,
        ..ClientOptions::default()
    }
}

fn patient() -> Credentials {
    Credentials::Patient {
        link_token: LinkToken::parse(LINK.to_owned()).unwrap(),
    }
}

fn therapist(cookie: &str) -> Credentials {
    Credentials::Therapist {
        cookie: cookie.to_owned(),
        consultation: Uuid::nil(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_therapist_join_get_admitted_and_establish_two_way_media() {
    let room = Shared::default();
    let server = start_server(Arc::clone(&room)).await;

    let mut p = PeerClient::connect(&server, patient(), options(false))
        .await
        .unwrap();
    assert_eq!(p.welcome().role, Role::Patient);
    let mut t = PeerClient::connect(&server, therapist(COOKIE_OK), options(true))
        .await
        .unwrap();
    assert_eq!(t.welcome().role, Role::Therapist);

    let (rp, rt) = tokio::join!(
        p.run_until_established(TIMEOUT),
        t.run_until_established(TIMEOUT)
    );
    let (rp, rt) = (rp.unwrap(), rt.unwrap());
    for (who, report) in [("patient", &rp), ("therapist", &rt)] {
        assert!(report.media_flowed_both_ways, "{who}: {report:#?}");
        assert!(report.media_established, "{who}");
        let media = report.media.as_ref().unwrap();
        assert!(media.received.video.frames > 0 && media.received.audio.frames > 0);
        assert!(media.time_to_first_media_ms.is_some());
        assert_eq!(report.resumes, 0);
    }
    assert_eq!(rt.role, Role::Therapist);
    assert!(room.lock().unwrap().established);

    // The therapist ends the consultation: the patient is told.
    let left = t.leave().await.unwrap();
    assert!(left.media_flowed_both_ways);
    match p.run_for(TIMEOUT).await {
        Err(ClientError::Ended(ByeReason::EndedByTherapist)) => {}
        other => panic!("expected the end of the consultation, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_whose_connection_drops_resumes_and_gets_the_missed_messages() {
    let room = Shared::default();
    let server = start_server(Arc::clone(&room)).await;

    // Enough attempts (with back-off) to outlast a slow, loaded machine.
    let patient_options = ClientOptions {
        max_reconnects: 40,
        ..options(false)
    };
    let mut p = PeerClient::connect(&server, patient(), patient_options)
        .await
        .unwrap();
    // The patient's network goes away; the server stays out of reach until
    // the therapist's offer waits for the patient.
    room.lock().unwrap().hold_patient_resume = true;
    p.drop_connection();

    let mut t = PeerClient::connect(&server, therapist(COOKIE_OK), options(true))
        .await
        .unwrap();
    let (rp, rt) = tokio::join!(
        p.run_until_established(TIMEOUT),
        t.run_until_established(TIMEOUT)
    );
    let (rp, rt) = (rp.unwrap(), rt.unwrap());
    assert!(rp.media_flowed_both_ways && rt.media_flowed_both_ways);
    assert!(rp.resumes >= 1, "{rp:#?}");
    // admitted, peer_joined and the offer at least came by replay.
    assert!(room.lock().unwrap().replayed >= 3);
}

#[tokio::test]
async fn a_therapist_without_a_valid_session_cookie_is_rejected() {
    let room = Shared::default();
    let server = start_server(Arc::clone(&room)).await;
    let result =
        PeerClient::connect(&server, therapist("konsult_session=forged"), options(true)).await;
    assert!(
        matches!(
            result,
            Err(ClientError::Rejected {
                code: ErrorCode::Unauthorized
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_connect_error() {
    // Bind and drop, so the port is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = PeerClient::connect(
        &format!("http://127.0.0.1:{port}"),
        patient(),
        options(false),
    )
    .await;
    assert!(matches!(result, Err(ClientError::Connect(_))), "{result:?}");
}
