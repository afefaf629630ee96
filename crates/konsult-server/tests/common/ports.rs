//! Loopback ports for servers that tests and benchmarks start as child
//! processes. Also compiled into the load benchmarks (`#[path]`).

/// A loopback port free for both TCP and UDP (the server's listener, and
/// the relay, which listens on both), never handed out twice by this
/// process, and taken from below the kernel's ephemeral range: a port from
/// `bind(0)` can be taken by any outgoing connection (to PostgreSQL, NATS,
/// another node) between its release and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.min(65_536));
    if high <= low + 1_000 {
        return bound_and_released();
    }
    let span = high - low;
    // Test binaries may run side by side: each starts somewhere else.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).expect("below 65536");
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    bound_and_released()
}

fn bound_and_released() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
