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
    /// Operator commands for the clinics of this installation.
    Clinic {
        #[command(subcommand)]
        command: ClinicCommand,
    },
    /// Operator commands for the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Allocate through every TURN URL patients are given (the embedded
    /// relay's over UDP, TCP and TLS, and the external ones), as a
    /// patient's browser would, and print what each gave. Exits non-zero
    /// when one fails.
    RelayCheck,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print every clinic's audit chain head, signed, one JSON line each:
    /// keep the output outside the database (a ticket, a mail to the clinic)
    /// and check it later with `konsult audit check`.
    Heads,
    /// Check exported heads (a file of `konsult audit heads` lines) against
    /// the database: each must be signed by this installation and still be
    /// in an intact chain. Exits non-zero when one does not hold.
    Check {
        /// The file with the exported heads.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClinicCommand {
    /// Add a clinic and print a one-time link (valid `setup_link_hours`)
    /// that creates its first admin. Works next to a running server.
    Add {
        /// The clinic's name.
        #[arg(long)]
        name: String,
        /// Its six-digit ydernummer.
        #[arg(long)]
        ydernummer: String,
        /// Specialer, comma-separated: 51 (almen fysioterapi), 62
        /// (vederlagsfri fysioterapi).
        #[arg(long, value_delimiter = ',', default_value = "51")]
        specialer: Vec<u16>,
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
            Command::Clinic {
                command:
                    ClinicCommand::Add {
                        name,
                        ydernummer,
                        specialer,
                    },
            } => {
                let added = konsult_server::operator::add_clinic(
                    &settings,
                    &name,
                    &ydernummer,
                    &specialer,
                    chrono::Utc::now(),
                )
                .await?;
                // Printed, never logged: the link grants setting up the
                // clinic's first admin.
                println!(
                    "Clinic {} added.\n\nOpen this one-time link to create its first admin (it works until {}):\n\n    {}\n",
                    added.clinic,
                    added.expires_at.format("%Y-%m-%d %H:%M UTC"),
                    added.link
                );
                Ok(())
            }
            Command::RelayCheck => {
                let checks = konsult_server::relay::check_relays(&settings).await?;
                let mut failed = 0;
                for check in &checks {
                    // One line each: what a patient given the URL gets.
                    println!("{check}");
                    if check.outcome.is_err() {
                        failed += 1;
                    }
                }
                if checks.is_empty() {
                    Err(anyhow::anyhow!("no relay is configured (turn.enabled is false and turn.external_urls is empty)"))
                } else if failed > 0 {
                    Err(anyhow::anyhow!("{failed} of {} relay URLs failed", checks.len()))
                } else {
                    Ok(())
                }
            }
            Command::Audit {
                command: AuditCommand::Heads,
            } => {
                for head in konsult_server::operator::audit_heads(&settings, chrono::Utc::now()).await? {
                    println!("{}", serde_json::to_string(&head)?);
                }
                Ok(())
            }
            Command::Audit {
                command: AuditCommand::Check { file },
            } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                let report = konsult_server::operator::check_audit_heads(&settings, &text).await?;
                for line in &report.lines {
                    println!("{line}");
                }
                if report.all_hold {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("an exported audit head does not hold"))
                }
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
