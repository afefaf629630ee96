//! `konsult`: the command line. Parses arguments and calls the library.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "konsult", version, about = "Video consultations for physiotherapy clinics")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default when no command is given).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "KONSULT_LISTEN")]
        listen: Option<SocketAddr>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    konsult_server::telemetry::init(std::io::stderr);
    let cli = Cli::parse();
    let mut settings = konsult_server::Settings::default();
    match cli.command.unwrap_or(Command::Serve { listen: None }) {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            konsult_server::run(settings).await
        }
    }
}
