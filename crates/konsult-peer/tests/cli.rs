//! The `konsult-peer join` binary, run as a patient and as a therapist
//! against the protocol stand-in: JSON on stdout, exit status 0 only when
//! media flowed both ways.

mod common;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::{start_server, Shared, COOKIE_OK, LINK};
use serde_json::Value;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_konsult-peer");
const CONSULTATION: &str = "0b6f2c1e-8d2a-4f0e-9c3b-5a7d1e2f3a4b";

async fn run(args: &[&str]) -> (Output, Value) {
    let child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("konsult-peer finished")
        .expect("konsult-peer ran");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

fn patient_args<'a>(server: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["join", "--server", server, "--link", LINK];
    args.extend_from_slice(extra);
    args
}

fn therapist_args<'a>(server: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "join",
        "--server",
        server,
        "--as-therapist",
        "--cookie",
        COOKIE_OK,
        "--consultation",
        CONSULTATION,
        "--admit",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_therapist_binaries_report_two_way_media_and_exit_zero() {
    let server = start_server(Shared::default()).await;
    let short = ["--duration", "2s", "--timeout", "60s"];
    let (p_args, t_args) = (
        patient_args(&server, &short),
        therapist_args(&server, &short),
    );
    let (patient, therapist) = tokio::join!(run(&p_args), run(&t_args));
    for (who, (output, json)) in [("patient", patient), ("therapist", therapist)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{who}: {json:#}\n{stderr}");
        assert_eq!(json["ok"], true, "{who}");
        let report = &json["report"];
        assert_eq!(report["role"], who);
        assert_eq!(report["media_flowed_both_ways"], true);
        let media = &report["media"];
        for direction in ["sent", "received"] {
            for kind in ["audio", "video"] {
                let flow = &media[direction][kind];
                for counter in ["packets", "bytes", "frames"] {
                    assert!(
                        flow[counter].as_u64().unwrap() > 0,
                        "{who} {direction} {kind} {counter}: {json:#}"
                    );
                }
            }
        }
        // Loopback host candidates; the remote may be learnt as prflx.
        assert_eq!(media["selected_pair"]["local"], "host", "{who}");
        assert!(media["time_to_first_media_ms"].is_u64(), "{who}");
        // Nothing in the output or the log names an address.
        for text in [json.to_string(), stderr.into_owned()] {
            assert!(!text.contains("127.0.0.1"), "{text}");
            assert!(!text.contains("candidate:"), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_without_a_relay_reports_no_media_and_exits_one() {
    let room = Shared::default();
    let server = start_server(Arc::clone(&room)).await;
    let args = ["--relay-only", "--duration", "1s", "--timeout", "3s"];
    let (p_args, t_args) = (patient_args(&server, &args), therapist_args(&server, &args));
    let (patient, therapist) = tokio::join!(run(&p_args), run(&t_args));
    for (output, json) in [patient, therapist] {
        assert_eq!(output.status.code(), Some(1), "{json:#}");
        assert_eq!(json["ok"], false);
        assert!(
            json["error"].as_str().unwrap().contains("gave up"),
            "{json:#}"
        );
        assert_eq!(json["report"]["media_flowed_both_ways"], false);
    }
    assert!(room.lock().unwrap().admitted, "the call itself was set up");
}

#[tokio::test]
async fn an_unreachable_server_exits_one_with_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let (output, json) = run(&patient_args(&server, &[])).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json["ok"], false);
    assert!(json["error"]
        .as_str()
        .unwrap()
        .contains("could not open the WebSocket"));
}

#[tokio::test]
async fn a_bad_command_line_exits_two() {
    let output = Command::new(BIN)
        .args(["join", "--server", "http://127.0.0.1:1"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
