//! A relay-only consultation: both peers use the embedded TURN relay with
//! the credentials from `welcome`, the selected candidate pair is relay on
//! both sides, audio and video flow both ways, and the server lets only
//! relay candidates through (with their related address zeroed), even when
//! a client sends a host candidate. Ending the call closes the
//! consultation's allocations on the relay; completing it is billable. The
//! operator's `/metrics` (behind its token) count the allocations and the
//! media relayed each way, the rooms and participants, the committed call
//! events and set-up time, and the billing line, and name no address.

use crate::common;

use chrono::Duration;
use common::signal::*;
use common::TestApp;
use konsult_peer::CandidateType;
use konsult_protocol::{CandidateLine, CandidatePolicy, ClientMessage, IceCandidate};

const METRICS_TOKEN: &str = "scraper-token-for-the-tests";

/// `/metrics` with the token, and one sample's value from it.
async fn scrape(app: &TestApp) -> String {
    let res = reqwest::Client::new()
        .get(format!("{}/metrics", app.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    res.text().await.unwrap()
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_call_goes_through_the_embedded_turn_relay() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.metrics.token = Some(METRICS_TOKEN.to_owned().into());
    // Relayed sockets in the configured range (what a firewall opens).
    settings.turn.relay_ports = Some("50100-50199".into());
    let app = TestApp::spawn_with(settings, dir, common::t0()).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let turn = app.state.signaling.turn();
    assert_eq!(turn.allocations_for(b.id()).await, Some(0));
    // The operator's metrics: only with the token, and nothing relayed yet.
    let anonymous = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let before = scrape(&app).await;
    assert_eq!(sample(&before, "konsult_turn_up"), 1);
    assert_eq!(sample(&before, "konsult_turn_allocations"), 0);

    let mut call = start_call(&app, &fx, &b).await;
    assert_eq!(call.pw.candidate_policy, CandidatePolicy::RelayOnly);
    assert_eq!(call.tw.candidate_policy, CandidatePolicy::RelayOnly);
    let (t, p) = call.until_media().await;
    for (label, report) in [("therapist", &t), ("patient", &p)] {
        print_figures(&format!("relay-only {label}"), report);
        assert_two_way(label, report);
        let pair = report.selected_pair.expect("a selected pair");
        assert_eq!(pair.local, CandidateType::Relay, "{label}: {pair:?}");
        assert_eq!(pair.remote, CandidateType::Relay, "{label}: {pair:?}");
    }
    assert!(turn.allocations_for(b.id()).await.unwrap() >= 2);
    let during = scrape(&app).await;
    assert!(sample(&during, "konsult_turn_allocations") >= 2, "{during}");
    for direction in ["client_to_peer", "peer_to_client"] {
        let packets = sample(
            &during,
            &format!("konsult_turn_media_packets_total{{direction=\"{direction}\"}}"),
        );
        assert!(packets >= 40, "{direction}: {packets} packets\n{during}");
    }
    assert!(!during.contains("127.0.0.1"), "no address in the metrics");
    // The signaling side: one room in its call, both in it, the events
    // counted once committed, and the set-up timed.
    assert_eq!(sample(&during, "konsult_signaling_census_complete"), 1);
    assert_eq!(
        sample(&during, "konsult_signaling_rooms{state=\"in_call\"}"),
        1
    );
    for state in ["therapist", "patient_admitted"] {
        let series = format!("konsult_signaling_participants{{state=\"{state}\"}}");
        assert_eq!(sample(&during, &series), 1, "{state}\n{during}");
    }
    for role in ["therapist", "patient"] {
        let series = format!("konsult_signaling_joins_total{{role=\"{role}\"}}");
        assert!(sample(&during, &series) >= 1, "{role}\n{during}");
    }
    assert_eq!(
        sample(
            &during,
            "konsult_admission_checks_total{outcome=\"passed\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            &during,
            "konsult_call_events_total{event=\"two_way_established\",detail=\"relay_observed\"}"
        ),
        1
    );
    assert_eq!(sample(&during, "konsult_call_setup_seconds_count"), 1);
    assert!(
        sample(
            &during,
            "konsult_db_connections{pool=\"main\",state=\"idle\"}"
        ) >= 1
    );

    // A misbehaving patient sends a host candidate: it never reaches the
    // therapist.
    call.p
        .send_message(&ClientMessage::Candidate(IceCandidate {
            candidate: CandidateLine::parse(
                "candidate:9 1 udp 2130706431 192.0.2.7 50000 typ host".into(),
            )
            .unwrap(),
            sdp_mid: None,
            sdp_m_line_index: Some(0),
            username_fragment: None,
        }))
        .await;
    call.p.send_message(&ClientMessage::Ping {}).await;
    let (t2, p2) = call.run_for(std::time::Duration::from_secs(2)).await;
    assert!(p2.received.video.packets > p.received.video.packets);
    assert!(t2.received.audio.packets > t.received.audio.packets);

    // What crossed the server: relay candidates only, related addresses
    // zeroed, no host or reflexive candidate in any SDP.
    let mut relay_candidates = 0;
    for link in [&call.p, &call.t] {
        assert!(!link.received_sdp.is_empty());
        for sdp in &link.received_sdp {
            for line in sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
                assert!(line.contains(" typ relay"), "{line}");
                let port: u16 = line.split_whitespace().nth(5).unwrap().parse().unwrap();
                assert!((50100..=50199).contains(&port), "{line}");
                relay_candidates += 1;
            }
            assert!(!sdp.contains("typ host") && !sdp.contains("typ srflx"));
        }
        for candidate in &link.received_candidates {
            assert!(candidate.contains(" typ relay"), "{candidate}");
            let port: u16 = candidate
                .split_whitespace()
                .nth(5)
                .unwrap()
                .parse()
                .unwrap();
            assert!((50100..=50199).contains(&port), "{candidate}");
            relay_candidates += 1;
            if candidate.contains(" raddr ") {
                assert!(candidate.contains(" raddr 0.0.0.0 rport 0"), "{candidate}");
            }
            assert!(!candidate.contains("192.0.2.7"));
        }
    }
    assert!(
        relay_candidates >= 2,
        "relay candidates seen: {relay_candidates}"
    );

    // The therapist ends the consultation; the peers stay open for now.
    call.t.send_message(&ClientMessage::Leave {}).await;
    call.t.wait_for("bye").await;
    call.p.wait_for("bye").await;
    wait_for_events(&app, &fx, &b, &WHOLE_CALL).await;
    // The server closed the consultation on the relay: its allocations are
    // gone and relayed media stops, although both peers still send.
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    while turn.allocations_for(b.id()).await != Some(0) {
        assert!(tokio::time::Instant::now() < deadline, "allocations left");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = call.patient.report().await.received.video.packets;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = call.patient.report().await.received.video.packets;
    assert_eq!(before, after, "media still flows after the relay closed");
    call.therapist.close().await.unwrap();
    call.patient.close().await.unwrap();

    assert!(stored(&app, &fx, &b).await.two_way_at.is_some());
    // Completed through the API, as the dashboard does: billable.
    let (status, done) = api(
        &app,
        &fx,
        reqwest::Method::POST,
        &format!("/api/consultations/{}/complete", b.consultation),
        Some(common::journal()),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{done}");
    assert_eq!(done["billable"], true, "{done}");
    let after = scrape(&app).await;
    assert_eq!(sample(&after, "konsult_billing_lines_written_total"), 1);
    assert_eq!(
        sample(
            &after,
            "konsult_call_events_total{event=\"ended\",detail=\"therapist_ended\"}"
        ),
        1
    );
    assert_eq!(
        sample(&after, "konsult_signaling_rooms{state=\"in_call\"}"),
        0
    );
    app.stop().await;
}

/// `konsult relay-check` allocates through every TURN URL patients are
/// given, as a browser would, over the URL's transport, and says which
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_check_allocates_through_every_url_patients_are_given() {
    let app = TestApp::spawn(common::Db::Sqlite).await;
    let relay = app.state.signaling.turn().relay_addr().await.unwrap();
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // A TCP port nothing listens on (bound, then closed).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut settings = (*app.state.settings).clone();
    settings.turn.listen = relay;
    settings.turn.external_urls = vec![
        format!("turn:{nobody}?transport=udp"),
        format!("turns:{closed}?transport=tcp"),
        "turns:relay.example:443?transport=udp".into(),
    ];
    let checks = konsult_server::relay::check_relays(&settings)
        .await
        .unwrap();
    let urls: Vec<&str> = checks.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            format!("turn:127.0.0.1:{}?transport=udp", relay.port()).as_str(),
            format!("turn:127.0.0.1:{}?transport=tcp", relay.port()).as_str(),
            format!("turn:{nobody}?transport=udp").as_str(),
            format!("turns:{closed}?transport=tcp").as_str(),
            "turns:relay.example:443?transport=udp",
        ]
    );
    // The embedded relay allocates over UDP and over TCP.
    for check in &checks[..2] {
        let relayed = check
            .outcome
            .as_ref()
            .expect("the embedded relay allocates");
        assert_eq!(relayed.ip(), relay.ip());
    }
    assert!(checks[2].outcome.is_err(), "{:?}", checks[2]);
    let refused = checks[3].outcome.as_ref().unwrap_err();
    assert!(refused.starts_with("cannot connect"), "{refused}");
    assert_eq!(
        checks[3].note.as_deref(),
        Some("certificate not checked: an external relay's")
    );
    // TURN over DTLS is not something this check (or a browser) speaks.
    assert!(checks[4]
        .outcome
        .as_ref()
        .unwrap_err()
        .starts_with("not checked"));

    // The command prints it and exits non-zero when a URL fails.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_konsult"))
        .arg("relay-check")
        .env("KONSULT_DATA_DIR", app.dir.path())
        .env("KONSULT_TURN__LISTEN", relay.to_string())
        .env(
            "KONSULT_TURN__EXTERNAL_URLS",
            format!("[\"turn:{nobody}?transport=udp\"]"),
        )
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for transport in ["UDP", "TCP"] {
        assert!(
            stdout.contains(&format!(
                ": allocated over {transport}, relayed address 127.0.0.1:"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("turn:{nobody}?transport=udp: FAILED")),
        "{stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}
