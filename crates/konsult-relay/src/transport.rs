//! The relay's sockets and tasks: several UDP listening sockets on one
//! port (`SO_REUSEPORT`, so the kernel spreads clients over cores), a TCP
//! listener on the same port, TURN over any accepted stream (TCP, or TLS
//! that Konsult's HTTPS listener terminated), one receive task per relay
//! socket, and the sweeper that expires allocations. Everything protocol is
//! in [`crate::engine`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::engine::{is_channel_data, Allocation, ClientKey, Engine, Sink, CHANNEL_HEADER};
use crate::framing::{HEADROOM, TAILROOM};

/// The largest frame: a STUN message or ChannelData of 65,535 bytes plus
/// its header.
const MAX_FRAME: usize = 65_535 + 20;
/// Frames queued for one TCP/TLS client before new ones are dropped (as a
/// full UDP buffer would drop them).
const STREAM_QUEUE: usize = 256;
/// A stream that has not allocated within this long is closed (RFC 8656
/// §3.1 leaves it to the server; browsers allocate at once).
const STREAM_ALLOCATE_WITHIN: Duration = Duration::from_secs(30);
/// How often expired allocations, permissions and channels are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A UDP socket bound with `SO_REUSEPORT` (so several can share `addr`) and
/// the given buffer sizes, non-blocking; it is registered with the runtime
/// of the thread that serves it ([`serve_udp_thread`]).
pub(crate) fn listening_socket(
    addr: SocketAddr,
    buffer: usize,
) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    set_buffers(&socket, buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Serves one listening socket on a thread of its own with a
/// single-threaded runtime, until the relay stops. The allocations made
/// through it get their relay sockets and receive tasks on the same thread,
/// so a datagram is read, relayed and answered without waking another
/// thread or passing a task between workers; the kernel spreads clients
/// over the sockets (`SO_REUSEPORT`), and so over the threads.
pub(crate) fn serve_udp_thread(
    engine: Arc<Engine>,
    socket: std::net::UdpSocket,
    index: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("turn-udp-{index}"))
        .spawn(move || {
            let mut stopping = engine.stopping();
            runtime.block_on(async move {
                let socket = match UdpSocket::from_std(socket) {
                    Ok(socket) => Arc::new(socket),
                    Err(err) => {
                        tracing::error!(error = %err, "TURN listening socket unusable");
                        return;
                    }
                };
                tokio::select! {
                    () = serve_udp(engine, socket) => {}
                    _ = stopping.wait_for(|stopping| *stopping) => {}
                }
            });
            // Dropping the runtime ends the relay tasks still on it.
            drop(runtime);
        })
}

/// A relay socket (one per allocation and family), non-blocking.
pub(crate) fn relay_socket(
    addr: SocketAddr,
    buffer: usize,
) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    set_buffers(&socket, buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Asks for `bytes` of receive and send buffer. The kernel caps the request
/// at `net.core.rmem_max`/`wmem_max`; the README says how to raise
/// those. Failing to get it is not fatal: the socket works, with less room.
fn set_buffers(socket: &Socket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
}

/// Sets the Don't Fragment bit on everything the socket sends (DONT-
/// FRAGMENT, RFC 8656 §7.2): path MTU discovery "do" on Linux.
pub(crate) fn set_dont_fragment(socket: &std::net::UdpSocket, ip: IpAddr) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (level, name, value) = match ip {
            IpAddr::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            ),
            IpAddr::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
            ),
        };
        // SAFETY: a valid socket descriptor, an int option of int size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, ip);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "DONT-FRAGMENT is supported on Linux",
        ))
    }
}

/// Whether a receive error only reports an ICMP message about an earlier
/// send; a read loop must carry on (else any peer could end it).
fn is_transient(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
    )
}

/// Reads client datagrams from one listening socket until the task ends.
pub(crate) async fn serve_udp(engine: Arc<Engine>, socket: Arc<UdpSocket>) {
    let mut buffer = vec![0u8; MAX_FRAME];
    loop {
        let (length, from) = match socket.recv_from(&mut buffer).await {
            Ok(read) => read,
            Err(err) if is_transient(&err) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "TURN listening socket failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let sink = Sink::Udp {
            socket: Arc::clone(&socket),
            to: from,
        };
        let key = ClientKey {
            addr: from,
            stream: 0,
        };
        engine.on_client_frame(Instant::now(), &sink, key, &buffer[..length]);
    }
}

/// Reads peer datagrams from one of an allocation's relay sockets, for as
/// long as the allocation lives (its retirement aborts this task).
pub(crate) async fn serve_relay(engine: Arc<Engine>, allocation: Arc<Allocation>, index: usize) {
    let socket = Arc::clone(&allocation.relays[index].socket);
    let mut buffer = vec![0u8; HEADROOM + MAX_FRAME + TAILROOM];
    loop {
        let (length, from) = match socket
            .recv_from(&mut buffer[HEADROOM..HEADROOM + MAX_FRAME])
            .await
        {
            Ok(read) => read,
            Err(err) if is_transient(&err) => continue,
            Err(err) => {
                tracing::debug!(error = %err, "relay socket failed");
                return;
            }
        };
        engine.on_peer_datagram(Instant::now(), &allocation, from, &mut buffer, length);
    }
}

/// Accepts TURN-over-TCP connections.
pub(crate) async fn serve_tcp(engine: Arc<Engine>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_stream(Arc::clone(&engine), stream, client));
            }
            Err(err) => {
                // Out of descriptors and the like: back off, keep serving.
                tracing::warn!(error = %err, "TURN TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The length of the first frame in `buffer` once it is complete: a STUN
/// message (20-byte header plus its length) or ChannelData (4-byte header
/// plus its length, padded to four over a stream, RFC 8656 §12.5). `Err`
/// if the bytes are neither, and the stream must be closed.
fn frame_length(buffer: &[u8]) -> Result<Option<usize>, ()> {
    if buffer.len() < CHANNEL_HEADER {
        return Ok(None);
    }
    let length = usize::from(u16::from_be_bytes([buffer[2], buffer[3]]));
    let total = match buffer[0] >> 6 {
        0 => 20 + length,
        1 => (CHANNEL_HEADER + length).next_multiple_of(4),
        _ => return Err(()),
    };
    Ok((buffer.len() >= total).then_some(total))
}

/// Serves TURN over one stream until the client closes it, it fails, its
/// allocation ends, or it allocates nothing in time.
pub(crate) async fn serve_stream<S>(engine: Arc<Engine>, stream: S, client: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (frames, mut queued) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    let close = Arc::new(Notify::new());
    let key = ClientKey {
        addr: client,
        stream: engine.next_stream_id(),
    };
    let sink = Sink::Stream {
        frames,
        close: Arc::clone(&close),
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while let Some(frame) = queued.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut stopping = engine.stopping();
    let opened = tokio::time::Instant::now();
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = reader.read(&mut chunk) => read,
            () = close.notified() => break,
            _ = stopping.wait_for(|stopping| *stopping) => break,
            () = tokio::time::sleep_until(opened + STREAM_ALLOCATE_WITHIN),
                if !engine.holds_allocation(&key) => break,
        };
        let length = match read {
            Ok(0) | Err(_) => break,
            Ok(length) => length,
        };
        buffer.extend_from_slice(&chunk[..length]);
        let mut start = 0;
        let failed = loop {
            match frame_length(&buffer[start..]) {
                Ok(Some(total)) => {
                    let frame = &buffer[start..start + total];
                    // ChannelData padding is not part of the frame.
                    let frame = if is_channel_data(frame) {
                        let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
                        &frame[..CHANNEL_HEADER + length]
                    } else {
                        frame
                    };
                    engine.on_client_frame(Instant::now(), &sink, key, frame);
                    start += total;
                }
                Ok(None) => break false,
                Err(()) => break true,
            }
        };
        buffer.drain(..start);
        if failed || buffer.len() > MAX_FRAME + 4 {
            break;
        }
    }
    engine.remove(Instant::now(), &key);
    drop(sink);
    // The writer ends once the last sender (the allocation's) is gone.
    tasks.detach_all();
}

/// Expires allocations, permissions and channels every second.
pub(crate) async fn sweep(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let expired = engine.sweep(Instant::now());
        if expired > 0 {
            tracing::debug!(expired, "TURN allocations expired");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_by_their_headers() {
        // STUN: 20-byte header plus the length in bytes 2..4.
        let mut stun = vec![0x00, 0x01, 0x00, 0x04];
        stun.extend([0u8; 20]);
        assert_eq!(frame_length(&stun), Ok(Some(24)));
        assert_eq!(frame_length(&stun[..23]), Ok(None));
        // ChannelData of 5 bytes: padded to 12 over a stream.
        let mut data = vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0];
        assert_eq!(frame_length(&data), Ok(None));
        data.push(0);
        assert_eq!(frame_length(&data), Ok(Some(12)));
        assert_eq!(frame_length(&[0x40, 0x00]), Ok(None));
        // Neither (first two bits 10 or 11): the stream ends.
        assert_eq!(frame_length(&[0xC0, 0, 0, 0]), Err(()));
        assert_eq!(frame_length(&[0x80, 0, 0, 0]), Err(()));
    }
}
