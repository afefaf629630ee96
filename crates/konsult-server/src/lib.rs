//! The Konsult clinic server.
//!
//! The binary (`src/main.rs`) parses the command line and calls [`run`];
//! everything else lives here so that tests start the real application on
//! port 0 with [`Application::build`] and a fresh database.
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod demo;
pub mod error;
pub mod extract;
pub mod ics;
pub mod input;
pub mod jobs;
pub mod relay;
pub mod routes;
pub mod security;
pub mod signaling;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Settings;
pub use state::{AppState, Clock};

/// A bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

impl Application {
    /// Prepares the data directory, key and database, binds the listener
    /// and builds the router, with the system clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::System).await
    }

    /// As [`Application::build`], with a given clock (tests).
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        startup::check_listen(&settings)?;
        let store = startup::open_store(&settings).await?;
        let tls = if settings.serves_tls() {
            Some(startup::tls_config(&settings).await?)
        } else {
            None
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url: Arc<str> = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}"))
            .trim_end_matches('/')
            .into();
        let turn = Arc::new(relay::Turn::start(&settings).await?);
        let signaling = signaling::Signaling::start(
            konsult_signal::Config::default(),
            store.clone(),
            clock.clone(),
            turn,
        );
        let state = AppState {
            store,
            secure_cookies: tls.is_some() || settings.tls.behind_proxy,
            settings: Arc::new(settings),
            clock,
            login_limiter: Arc::default(),
            public_url,
            signaling,
        };
        Ok(Self {
            listener,
            state,
            tls,
        })
    }

    /// The address the server actually listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The application state (tests reach the store and clock through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// On an installation without a clinic: the one-time setup link.
    pub async fn setup_link(&self) -> anyhow::Result<Option<String>> {
        Self::setup_link_for(&self.state).await
    }

    /// [`Application::setup_link`] for a running application's state. The
    /// token sits after `#`, so it never reaches a server log or a Referer.
    pub async fn setup_link_for(state: &AppState) -> anyhow::Result<Option<String>> {
        let token = state.store.issue_setup_token(state.clock.now()).await?;
        Ok(token.map(|t| format!("{}/app/setup#{t}", state.public_url)))
    }

    /// Serves until `shutdown` completes, then closes the database.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let signaling = self.state.signaling.clone();
        let closing = signaling.clone();
        // Upgraded WebSockets outlive the HTTP server's graceful shutdown:
        // tell them to close as soon as it starts.
        let shutdown = async move {
            shutdown.await;
            closing.begin_shutdown();
        };
        let router = routes::router(self.state);
        let app = router.into_make_service();
        match self.tls {
            None => {
                axum::serve(self.listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
                });
                axum_server::from_tcp_rustls(self.listener.into_std()?, tls)
                    .handle(handle)
                    .serve(app)
                    .await?
            }
        }
        signaling.shutdown().await;
        store.close().await;
        Ok(())
    }
}

/// Starts the server and runs it until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    if demo {
        if let Some(text) = demo::seed(&app.state).await? {
            // Printed, never logged: it holds a password and a join link.
            println!("{text}");
        }
    }
    let scheme = if app.tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %app.local_addr(), scheme, "konsult listening");
    if let Some(link) = app.setup_link().await? {
        // Printed, never logged: the link grants setting up the clinic.
        println!("\nKonsult is not set up yet. Open this one-time link to create the clinic and its first admin:\n\n    {link}\n");
    }
    let retention = jobs::spawn_retention(app.state.clone());
    let result = app.run_until(shutdown_signal()).await;
    retention.abort();
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
