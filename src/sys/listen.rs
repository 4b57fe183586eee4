//! The sockets that keep the kernel from answering `listen` routes' datagrams with ICMP
//! port-unreachable.
//!
//! A `listen` route relays unicast datagrams that AF_PACKET taps before the IP layer; the IP
//! layer still delivers each one to UDP, and with no socket on the port the kernel answers the
//! sender with ICMP port-unreachable (RFC 1122, 3.2.2.1), which makes some senders stop. A UDP
//! socket bound to the route's address and port, on its interface, with a classic BPF filter
//! that drops everything, gives the kernel a socket to deliver to: no ICMP, and the filter
//! discards the datagram before it is queued, so the socket holds no memory and is never read.
//! Its drop count (`SO_MEMINFO`) is the number of datagrams it swallowed (docs/TUNNEL.md,
//! section 5, says why this and not a firewall rule).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

/// `BPF_RET | BPF_K` with 0: accept no byte of any packet.
const DROP_ALL: [SockFilter; 1] = [SockFilter::new(0x06, 0, 0, 0)];

/// A bound, never-read UDP socket that drops every datagram it is given.
#[derive(Debug)]
pub struct SinkSocket {
    sock: Socket,
}

impl SinkSocket {
    /// Binds `address` on `interface` (`IP_FREEBIND`: the address need not be configured yet).
    /// The filter is attached before the bind, so no datagram is ever queued.
    pub fn open(address: SocketAddr, interface: &str) -> io::Result<SinkSocket> {
        let sock = Socket::new(
            Domain::for_address(address),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        sock.attach_filter(&DROP_ALL)?;
        if address.is_ipv6() {
            sock.set_only_v6(true)?;
            sock.set_freebind_v6(true)?;
        } else {
            sock.set_freebind_v4(true)?;
        }
        sock.bind_device(Some(interface.as_bytes()))?;
        sock.bind(&address.into())?;
        Ok(SinkSocket { sock })
    }

    /// Datagrams it swallowed so far (each one that the kernel would otherwise have answered
    /// with port-unreachable).
    pub fn drops(&self) -> u64 {
        super::tunnel::socket_drops(std::os::fd::AsRawFd::as_raw_fd(&self.sock)).unwrap_or(0)
    }

    /// The local address it holds.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sock.local_addr().ok()?.as_socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_socket_holds_its_port_and_receives_nothing() {
        let sink = SinkSocket::open("127.0.0.1:0".parse().unwrap(), "lo").unwrap();
        let at = sink.local_addr().unwrap();
        // The port is held: a second plain bind fails.
        assert!(std::net::UdpSocket::bind(at).is_err(), "{at} not held");
        // And nothing is ever queued on it.
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..10 {
            tx.send_to(b"dropped", at).unwrap();
        }
        assert_eq!(sink.drops(), 10, "each datagram dropped and counted");
        let plain: std::net::UdpSocket = sink.sock.try_clone().unwrap().into();
        plain.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            plain.recv(&mut buf).map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::WouldBlock),
            "a datagram was queued"
        );
    }
}
