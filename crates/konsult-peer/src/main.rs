//! `konsult-peer`: join a Konsult consultation as a headless participant and
//! report, as JSON on standard output, what media flowed.
//!
//! ```text
//! konsult-peer join --server http://127.0.0.1:8080 --link TOKEN
//! konsult-peer join --server http://127.0.0.1:8080 --as-therapist \
//!     --cookie 'konsult_session=…' --consultation UUID --admit
//! ```
//!
//! Exits 0 only when media flowed both ways; 1 otherwise (the JSON says
//! why); 2 for a bad command line. Logs go to standard error (`RUST_LOG`,
//! default `konsult_peer=info`) and never contain addresses, SDP or
//! candidates.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use konsult_peer::{CallReport, ClientError, ClientOptions, Credentials, NetworkScope, PeerClient};
use konsult_protocol::{ByeReason, LinkToken};
use serde::Serialize;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "konsult-peer",
    version,
    about = "Headless Konsult call participant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join a consultation, exchange synthetic audio and video, leave.
    Join(Join),
}

#[derive(Args)]
struct Join {
    /// The Konsult server, e.g. http://127.0.0.1:8080 (or a ws:// URL).
    #[arg(long)]
    server: String,

    /// Join as the patient with the token of the join link.
    #[arg(
        long,
        value_name = "TOKEN",
        required_unless_present = "as_therapist",
        conflicts_with = "as_therapist",
        env = "KONSULT_PEER_LINK",
        hide_env_values = true
    )]
    link: Option<String>,

    /// Join as the therapist (needs --cookie and --consultation).
    #[arg(long, requires_all = ["cookie", "consultation"])]
    as_therapist: bool,

    /// The therapist's `Cookie` header value, e.g. `konsult_session=…`.
    #[arg(long, env = "KONSULT_PEER_COOKIE", hide_env_values = true)]
    cookie: Option<String>,

    /// The consultation id (therapist).
    #[arg(long)]
    consultation: Option<Uuid>,

    /// Therapist: admit the waiting patient.
    #[arg(long, requires = "as_therapist")]
    admit: bool,

    /// Use relay (TURN) candidates only.
    #[arg(long)]
    relay_only: bool,

    /// How long to keep the call once media flows both ways (e.g. 10s,
    /// 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// How long to wait for media to flow both ways.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,

    /// Local interfaces for host candidates. `auto`: loopback only when
    /// the server is on a loopback address, all interfaces otherwise.
    #[arg(long, value_enum, default_value_t = Network::Auto)]
    network: Network,

    /// The signaling protocol version to speak (docs/protocol.md).
    #[arg(long, default_value_t = konsult_protocol::PROTOCOL_VERSION,
          value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..=2))]
    protocol: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum Network {
    Auto,
    Any,
    Loopback,
}

/// What the command prints.
#[derive(Serialize)]
struct Output {
    /// True when media flowed both ways; the exit status says the same.
    ok: bool,
    /// Why the run failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What was seen, when the join got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<CallReport>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("konsult-peer: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Command::Join(join) = cli.command;
    let output = runtime.block_on(run(join));
    println!(
        "{}",
        serde_json::to_string_pretty(&output).expect("the output always serializes")
    );
    if output.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn init_logging() {
    // A plain subscriber, deliberately without the `log` bridge: the WebRTC
    // stack logs addresses through `log` at debug and trace level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("konsult_peer=info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

async fn run(join: Join) -> Output {
    let failed = |error: String, report: Option<CallReport>| Output {
        ok: false,
        error: Some(error),
        report,
    };
    let credentials = match credentials(&join) {
        Ok(credentials) => credentials,
        Err(error) => return failed(error, None),
    };
    let options = ClientOptions {
        admit: join.admit,
        relay_only: join.relay_only,
        network: network_scope(join.network, &join.server),
        protocol: join.protocol,
        ..ClientOptions::default()
    };
    let mut client = match PeerClient::connect(&join.server, credentials, options).await {
        Ok(client) => client,
        Err(error) => return failed(error.to_string(), None),
    };
    if let Err(error) = client.run_until_media(join.timeout).await {
        let report = match &error {
            ClientError::Timeout { report, .. } => Some((**report).clone()),
            _ => None,
        };
        let _ = client.leave().await;
        return failed(error.to_string(), report);
    }
    let error = match client.run_for(join.duration).await {
        Ok(_) => None,
        // The therapist ending the consultation is a normal end for the
        // patient; whether media flowed decides.
        Err(ClientError::Ended(ByeReason::EndedByTherapist)) => None,
        Err(error) => Some(error.to_string()),
    };
    match client.leave().await {
        Ok(report) => {
            let ok = error.is_none() && report.media_flowed_both_ways;
            Output {
                ok,
                error: error.or_else(|| (!ok).then(|| "media did not flow both ways".to_owned())),
                report: Some(report),
            }
        }
        Err(leave_error) => failed(error.unwrap_or_else(|| leave_error.to_string()), None),
    }
}

fn credentials(join: &Join) -> Result<Credentials, String> {
    if join.as_therapist {
        // clap requires both with --as-therapist.
        let (Some(cookie), Some(consultation)) = (&join.cookie, join.consultation) else {
            return Err("--as-therapist needs --cookie and --consultation".to_owned());
        };
        Ok(Credentials::Therapist {
            cookie: cookie.clone(),
            consultation,
        })
    } else {
        let token = join
            .link
            .clone()
            .ok_or("--link is required for a patient")?;
        let link_token =
            LinkToken::parse(token).map_err(|e| format!("the link token is not valid: {e}"))?;
        Ok(Credentials::Patient { link_token })
    }
}

fn network_scope(network: Network, server: &str) -> NetworkScope {
    match network {
        Network::Any => NetworkScope::Any,
        Network::Loopback => NetworkScope::Loopback,
        Network::Auto if server_is_loopback(server) => NetworkScope::Loopback,
        Network::Auto => NetworkScope::Any,
    }
}

/// Whether the server URL's host is a loopback name or address.
fn server_is_loopback(server: &str) -> bool {
    let rest = server.split_once("://").map_or(server, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses `250ms`, `10s`, `2m` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 10s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => value
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{text}` is too long")),
        _ => Err(format!("`{text}`: the unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration(&format!("{}m", u64::MAX)).is_err());
    }

    #[test]
    fn loopback_servers_are_recognised() {
        assert!(server_is_loopback("http://127.0.0.1:8080"));
        assert!(server_is_loopback("http://127.1.2.3:1/"));
        assert!(server_is_loopback("ws://localhost:9/ws"));
        assert!(server_is_loopback("http://[::1]:8080"));
        assert!(!server_is_loopback("http://konsult.example.dk"));
        assert!(!server_is_loopback("http://192.0.2.1:80"));
    }

    #[test]
    fn the_command_line_needs_exactly_one_identity() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&[
            "konsult-peer",
            "join",
            "--server",
            "http://x",
            "--link",
            "t"
        ])
        .is_ok());
        assert!(parse(&[
            "konsult-peer",
            "join",
            "--server",
            "http://x",
            "--as-therapist",
            "--cookie",
            "c=1",
            "--consultation",
            "0b6f2c1e-8d2a-4f0e-9c3b-5a7d1e2f3a4b",
            "--admit"
        ])
        .is_ok());
        // Neither, both, a therapist without cookie, a patient admitting.
        assert!(parse(&["konsult-peer", "join", "--server", "http://x"]).is_err());
        assert!(parse(&[
            "konsult-peer",
            "join",
            "--server",
            "http://x",
            "--link",
            "t",
            "--as-therapist",
            "--cookie",
            "c",
            "--consultation",
            "0b6f2c1e-8d2a-4f0e-9c3b-5a7d1e2f3a4b"
        ])
        .is_err());
        assert!(parse(&[
            "konsult-peer",
            "join",
            "--server",
            "http://x",
            "--as-therapist"
        ])
        .is_err());
        assert!(parse(&[
            "konsult-peer",
            "join",
            "--server",
            "http://x",
            "--link",
            "t",
            "--admit"
        ])
        .is_err());
    }
}
