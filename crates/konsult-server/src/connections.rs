//! Limits on HTTP connections, so that clients who connect and then send
//! nothing, or half a request, cannot use up the server's file
//! descriptors (security review, issue 10 item 2).
//!
//! [`Guard`] is the first acceptor of every TCP connection (TLS runs on
//! top of it). It holds one of `max_connections` permits for as long as
//! the connection lives, WebSocket upgrades included, and closes a
//! connection at once when none is free. Until the connection's first
//! request has reached the router, the client has `first_request_within`
//! for the TLS handshake, the request line and the headers; hyper's
//! `header_read_timeout` (set in [`crate::Application::run_until`]) does
//! the same for later requests on a kept-alive connection. A TLS
//! connection for the TURN relay (`crate::tls_router`) keeps its permit but
//! drops the deadline once its handshake is done ([`Guarded::handed_over`]).

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Accepts a connection if a permit is free and arms its first-request
/// deadline.
#[derive(Clone)]
pub struct Guard {
    permits: Arc<Semaphore>,
    first_request_within: Duration,
}

impl Guard {
    /// At most `max_connections` open connections, each sending its first
    /// request within `first_request_within`.
    pub fn new(max_connections: usize, first_request_within: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            first_request_within,
        }
    }
}

impl<S> Accept<TcpStream, S> for Guard {
    type Stream = Guarded<TcpStream>;
    type Service = MarkFirstRequest<S>;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Dropping the stream closes it: the descriptor comes back now.
            return ready(Err(io::Error::other("connection limit reached")));
        };
        // Signaling frames are small and each one is written when it is
        // due: Nagle's algorithm would hold a frame back until the previous
        // one is acknowledged (up to the peer's delayed-ACK time, 40 ms).
        if let Err(error) = stream.set_nodelay(true) {
            return ready(Err(error));
        }
        let served = Arc::new(AtomicBool::new(false));
        ready(Ok((
            Guarded {
                inner: stream,
                _permit: permit,
                deadline: Some(Box::pin(tokio::time::sleep(self.first_request_within))),
                served: served.clone(),
            },
            MarkFirstRequest {
                inner: service,
                served,
            },
        )))
    }
}

/// A connection holding its permit; reads fail with `TimedOut` once the
/// first-request deadline passes before a request has been served.
pub struct Guarded<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
    deadline: Option<Pin<Box<Sleep>>>,
    served: Arc<AtomicBool>,
}

impl<I> Guarded<I> {
    /// The connection leaves HTTP (TURN over TLS, handed to the relay): no
    /// first-request deadline any more; it keeps its permit while it lives.
    pub fn handed_over(&mut self) {
        self.served.store(true, Ordering::Relaxed);
        self.deadline = None;
    }

    /// Whether the first-request deadline has passed without a request.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.served.load(Ordering::Relaxed) {
            self.deadline = None;
        }
        // Polled on every read, not only an idle one: a client trickling
        // one byte at a time must not keep the deadline away.
        match &mut self.deadline {
            Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request in time",
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection's service, noting that a whole request head arrived.
#[derive(Clone)]
pub struct MarkFirstRequest<S> {
    inner: S,
    served: Arc<AtomicBool>,
}

impl<S, R> tower::Service<R> for MarkFirstRequest<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.served.store(true, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// How many connections to allow: `configured`, but never more than the
/// process's file-descriptor limit leaves room for (database, relay,
/// log files and a margin keep `reserve` for themselves).
pub fn connection_cap(configured: u32, reserve: u64) -> usize {
    let configured = configured.max(1) as usize;
    match open_files_limit() {
        Some(limit) => {
            let room = limit.saturating_sub(reserve).max(16);
            configured.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

/// The soft `RLIMIT_NOFILE` of this process (Linux, from `/proc`).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        if let Some(limit) = open_files_limit() {
            assert!(connection_cap(u32::MAX, 100) as u64 <= limit.saturating_sub(100).max(16));
        }
        assert!(connection_cap(10, 100) <= 10);
    }
}
