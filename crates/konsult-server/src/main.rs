//! `konsult`: the command line. Parses arguments, loads settings and calls
//! the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "konsult",
    version,
    about = "Video consultations for physiotherapy clinics"
)]
struct Cli {
    /// A TOML settings file (also `KONSULT_CONFIG`); `KONSULT_…` environment
    /// variables override it.
    #[arg(long, global = true, env = "KONSULT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default when no command is given).
    Serve {
        /// Address to listen on (overrides the settings).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Seed a demo clinic, therapist and eligible patient when the
        /// database is empty, and print how to log in.
        #[arg(long)]
        demo: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    konsult_server::telemetry::init(std::io::stderr);
    let cli = Cli::parse();
    let result = async {
        let mut settings = konsult_server::Settings::load(cli.config.as_deref())
            .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
        match cli.command.unwrap_or(Command::Serve {
            listen: None,
            demo: false,
        }) {
            Command::Serve { listen, demo } => {
                if let Some(listen) = listen {
                    settings.listen = listen;
                }
                konsult_server::run(settings, demo).await
            }
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line, not a panic or a backtrace.
            eprintln!("konsult: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
