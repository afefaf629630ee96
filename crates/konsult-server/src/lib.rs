//! The Konsult clinic server.
//!
//! The binary (`src/main.rs`) parses the command line and calls [`run`];
//! everything else lives here so that tests start the real application on
//! port 0 with [`Application::build`] and a fresh database.
#![warn(missing_docs)]

pub mod alerts;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod demo;
pub mod error;
pub mod extract;
pub mod ics;
pub mod input;
pub mod jobs;
pub mod lease;
pub mod login_limits;
pub mod metrics;
pub mod operator;
pub mod passwords;
pub mod privacy;
pub mod rate_limit;
pub mod records;
pub mod relay;
pub mod routes;
pub mod security;
pub mod signaling;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls_router;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Settings;
pub use state::{AppState, Clock};

/// A bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    /// The relays, for TURN over TLS on the HTTPS listener.
    turn: Arc<relay::Turn>,
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
        if settings.tls.behind_proxy && settings.http.client_address_header.is_none() {
            tracing::warn!("behind a proxy without http.client_address_header: logins are limited per account only");
        }
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
        let https_port = tls.is_some().then_some(local.port());
        let turn = Arc::new(relay::Turn::start(&settings, https_port).await?);
        if let (Some(host), Some(cert)) = (turn.tls_host(), &settings.tls.cert) {
            if !startup::certificate_covers(cert, host)? {
                tracing::warn!(
                    "tls.cert does not cover turn.tls_host: browsers will refuse TURN over TLS"
                );
            }
        }
        let metrics = Arc::new(metrics::Metrics::default());
        let cluster = match settings.cluster.nats_url {
            Some(_) => {
                Some(cluster::Cluster::connect(&settings.cluster, Arc::clone(&metrics)).await?)
            }
            None => None,
        };
        let sweep = Duration::from_secs(u64::from(settings.cluster.sweep_seconds.max(1)));
        let signaling = signaling::Signaling::start(
            settings.signaling.core_config(),
            settings.signaling.hub_shards(),
            store.clone(),
            clock.clone(),
            Arc::clone(&turn),
            metrics,
            cluster.as_ref().map(|(nodes, _)| signaling::ClusterMode {
                nodes: nodes.clone(),
                sweep,
                lease_ttl: Duration::from_secs(u64::from(settings.cluster.lease_seconds.max(1))),
            }),
        )
        .await?;
        let login_limiter = Arc::new(match &cluster {
            Some((nodes, _)) => login_limits::LoginLimiter::for_cluster(
                cluster_limiter_secret(&store),
                nodes.clone(),
            ),
            None => login_limits::LoginLimiter::default(),
        });
        if let Some((_, inbox)) = cluster {
            let signaling = signaling.downgrade();
            let limiter = Arc::clone(&login_limiter);
            tokio::spawn(inbox.listen(move |notice| {
                let signaling = signaling.clone();
                let limiter = Arc::clone(&limiter);
                async move {
                    match notice {
                        cluster::Notice::LoginOutcome {
                            account,
                            client,
                            failed,
                        } => limiter.heard(&account, client.as_deref(), failed),
                        notice => {
                            if let Some(signaling) = signaling.upgrade() {
                                signaling.act(notice).await;
                            }
                        }
                    }
                }
            }));
        }
        let state = AppState {
            store,
            secure_cookies: tls.is_some() || settings.tls.behind_proxy,
            settings: Arc::new(settings),
            clock,
            login_limiter,
            join_limiter: Arc::new(rate_limit::RateLimiter::new(routes::join::JOIN_RATE)),
            password_checks: Arc::new(auth::PasswordChecks::for_this_machine()),
            public_url,
            signaling,
            demo_link: Arc::default(),
        };
        Ok(Self {
            listener,
            state,
            tls,
            turn,
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
        let http = self.state.settings.http.clone();
        let body_timeout = Duration::from_secs(u64::from(http.body_timeout_seconds.max(1)));
        let header_timeout = Duration::from_secs(u64::from(http.header_timeout_seconds.max(1)));
        let router = routes::router(self.state).layer(axum::middleware::map_request(
            move |request: axum::extract::Request| async move {
                request.map(|body| {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body))
                })
            },
        ));
        // The peer's address reaches the login limiter (as a keyed hash,
        // never stored or logged).
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        // Room for the database pool, the relay, log files and a margin.
        let cap = connections::connection_cap(http.max_connections, 256);
        let guard = connections::Guard::new(cap, header_timeout);
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            h.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        let listener = self.listener.into_std()?;
        match self.tls {
            None => {
                let server = axum_server::from_tcp(listener).acceptor(guard);
                with_timeouts(server, header_timeout)
                    .handle(handle)
                    .serve(app)
                    .await?
            }
            Some(tls) => {
                // Each TLS connection by its ClientHello: TURN over TLS to
                // the embedded relay, the rest HTTPS (`tls_router`).
                let https = tls.get_inner();
                let turn = self.turn.tls_host().map(|host| {
                    tls_router::TurnOverTls::new(host.clone(), Arc::clone(&self.turn), &https)
                });
                let acceptor = tls_router::RouteByHello::new(guard, https, turn, header_timeout);
                let server = axum_server::from_tcp(listener).acceptor(acceptor);
                with_timeouts(server, header_timeout)
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

/// Closes a kept-alive HTTP/1 connection whose next request line and
/// headers take longer than `header_timeout` (hyper needs a timer for it).
fn with_timeouts<A>(
    mut server: axum_server::Server<A>,
    header_timeout: Duration,
) -> axum_server::Server<A> {
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    server
}

/// Starts the server and runs it until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings, demo: bool) -> anyhow::Result<()> {
    // Take over SIGTERM/SIGINT before anything listens: a signal that
    // arrives while the server is still starting then shuts it down
    // gracefully instead of killing it.
    let shutdown = shutdown_signal();
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
    let result = app.run_until(shutdown).await;
    retention.abort();
    result
}

/// Registers the shutdown signals now (so none is lost while starting) and
/// returns the future that completes when one arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => {},
                _ = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// The login limiter's hashing key in a cluster: the same on every node
/// (derived from the data key they share), held only in memory.
fn cluster_limiter_secret(store: &konsult_store::Store) -> [u8; 32] {
    use sha2::Digest as _;
    let derived = store.cipher().lookup_hash("login_limits", "cluster key");
    sha2::Sha256::digest(derived.as_bytes()).into()
}
