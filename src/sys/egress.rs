//! Egress UDP sockets: one per destination (and IP version) per worker, and the batched send.
//!
//! Each socket is non-blocking, bound to the relay's source port for the destination (a given
//! one, else an ephemeral one) with `SO_REUSEPORT` and `SO_REUSEADDR`, so that the sockets of
//! several workers, and a destination's sockets before and after a reload, share one port, also
//! across the privilege drop (`SO_REUSEPORT` alone requires the same owner). Then the
//! destination's TTL / hop limit and DSCP, multicast loop off (the relay must not hear itself)
//! and, for multicast, the egress interface fixed twice: `SO_BINDTODEVICE` and
//! `IP_MULTICAST_IF` by ifindex (`ip_mreqn`) / `IPV6_MULTICAST_IF`. `IP_RECVERR` is on so that
//! qdisc drops come back as `ENOBUFS` instead of vanishing; the error queue it fills is drained
//! by [`EgressSocket::drain_errors`].
//!
//! [`EgressSocket::send_batch`] sends a worker's batch for one destination in as few system
//! calls as it can: one `sendmmsg` whose messages are either single datagrams or, with UDP GSO
//! (`UDP_SEGMENT`, kernel 4.18+), runs of up to [`GSO_MAX_SEGMENTS`] equal-size payloads to the
//! same address, which the kernel splits into datagrams after one pass through the stack. GSO
//! is probed per socket by using it: a device without checksum offload answers `EIO`, after
//! which the socket falls back to plain batches for good. `EAGAIN` (socket buffer full) drops
//! the rest of the batch rather than wait: the worker never blocks.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::{owned, setsockopt, setsockopt_int};

/// Most segments in one GSO send (the kernel allows 128 since 5.x; 64 keeps bursts short).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (the largest IPv4 UDP payload).
pub const GSO_MAX_BYTES: usize = 65507;
/// Requested send buffer: room for a few thousand small datagrams of a burst.
pub const SNDBUF: i32 = 4 << 20;

/// How to set up an egress socket.
#[derive(Debug, Clone, Copy)]
pub struct EgressConfig<'a> {
    pub ipv6: bool,
    /// Multicast egress interface (name, ifindex); `None` for unicast (kernel-routed).
    pub multicast_if: Option<(&'a str, u32)>,
    pub ttl: u8,
    pub dscp: u8,
    /// Use UDP GSO when the kernel and device allow it.
    pub gso: bool,
    /// Local UDP port to bind (the datagrams' source port); 0 for an ephemeral one.
    pub source_port: u16,
}

/// What happened to one datagram of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Not sent because the socket or the qdisc was full (EAGAIN, ENOBUFS).
    Dropped,
    /// Not sent because of another error (errno).
    Error(i32),
}

/// Reusable storage for building a batch (no allocation per batch once warm).
#[derive(Default)]
pub struct SendScratch {
    iovs: Vec<libc::iovec>,
    addrs: Vec<SocketAddr>,
    names: Vec<libc::sockaddr_in6>,
    msgs: Vec<libc::mmsghdr>,
    cmsgs: Vec<GsoCmsg>,
    /// Item range of each message.
    spans: Vec<(u32, u32)>,
}

// SAFETY: the raw pointers inside are rebuilt on each use and never dereferenced across calls.
unsafe impl Send for SendScratch {}

/// A control message carrying `UDP_SEGMENT` (CMSG_SPACE(2) bytes, 8-byte aligned).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct GsoCmsg([u8; GSO_CMSG_SPACE]);
const CMSGHDR_LEN: usize = std::mem::size_of::<libc::cmsghdr>();
const GSO_CMSG_SPACE: usize = CMSGHDR_LEN + 8;

/// A non-blocking UDP socket for one destination.
#[derive(Debug)]
pub struct EgressSocket {
    fd: OwnedFd,
    ipv6: bool,
    gso: bool,
    /// Payloads of this size or more are not sent with GSO (a segment larger than the path
    /// MTU is refused with EMSGSIZE, where a plain datagram would be fragmented).
    gso_limit: usize,
}

impl EgressSocket {
    /// Opens and configures a socket as `cfg` says.
    pub fn open(cfg: &EgressConfig<'_>) -> io::Result<EgressSocket> {
        let domain = if cfg.ipv6 {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        // SAFETY: integer arguments only; on success the kernel returns a new descriptor that
        // nothing else owns, which `owned` takes over.
        let fd = owned(syscall!(unsafe {
            libc::socket(
                domain,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?);
        let raw = fd.as_raw_fd();
        let tos = i32::from(cfg.dscp & 0x3f) << 2;
        let ttl = i32::from(cfg.ttl);
        if cfg.ipv6 {
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, tos)?;
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, ttl)?;
            if let Some((_, ifindex)) = cfg.multicast_if {
                setsockopt_int(
                    raw,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MULTICAST_IF,
                    ifindex as i32,
                )?;
                setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, ttl)?;
                setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, 0)?;
            }
        } else {
            setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_TOS, tos)?;
            setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
            setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_TTL, ttl)?;
            if let Some((_, ifindex)) = cfg.multicast_if {
                let mreqn = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: ifindex as i32,
                };
                setsockopt(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)?;
                setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, ttl)?;
                setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, 0)?;
            }
        }
        if let Some((name, _)) = cfg.multicast_if {
            // SAFETY: `name` is a live `&str` borrowed for the call and the length passed is its
            // length in bytes, so the kernel reads only inside it (SO_BINDTODEVICE takes a name
            // of at most IFNAMSIZ bytes that need not be NUL-terminated) and keeps no pointer.
            syscall!(unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    name.as_ptr().cast(),
                    name.len() as libc::socklen_t,
                )
            })?;
        }
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SNDBUF).is_err() {
            // Without CAP_NET_ADMIN: capped by net.core.wmem_max, still better than the default.
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, SNDBUF);
        }
        // Before bind: the kernel checks both options there.
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        bind_port(raw, cfg.ipv6, cfg.source_port)?;
        let gso = cfg.gso && gso_supported(raw);
        Ok(EgressSocket {
            fd,
            ipv6: cfg.ipv6,
            gso,
            gso_limit: usize::MAX,
        })
    }

    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// True while this socket still uses UDP GSO (until the device refuses it).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// The local address (the relay's source port), for logs and tests.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: sockaddr_in6 is plain data and large enough for either family.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: `sa` is a live, writable sockaddr_in6 and `len` holds its size, so the kernel
        // writes at most that many bytes (either family's address fits) and stores the real
        // length in `len`; neither pointer is kept after the call.
        syscall!(unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_in6).cast(),
                &mut len,
            )
        })?;
        Ok(from_sockaddr(&sa))
    }

    /// Sends `items` (payload, target) in order, never blocking, and writes one [`Outcome`]
    /// per item into `outcomes` (cleared first). Targets must be of this socket's IP version.
    pub fn send_batch<'a, I>(
        &mut self,
        scratch: &mut SendScratch,
        items: I,
        outcomes: &mut Vec<Outcome>,
    ) where
        I: Iterator<Item = (&'a [u8], SocketAddr)>,
    {
        scratch.iovs.clear();
        scratch.addrs.clear();
        outcomes.clear();
        for (data, addr) in items {
            scratch.iovs.push(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
            scratch.addrs.push(addr);
            outcomes.push(Outcome::Dropped);
        }
        let n = scratch.iovs.len();
        let mut item = 0usize;
        let mut consecutive_errors = 0u32;
        while item < n {
            self.build_messages(scratch, item);
            let mut m = 0usize;
            let mut rebuild = false;
            while m < scratch.msgs.len() {
                let rest = &mut scratch.msgs[m..];
                // SAFETY: every mmsghdr points into `scratch.iovs` (payloads borrowed for 'a,
                // alive for this call), `scratch.names` and `scratch.cmsgs`, none of which is
                // modified until `build_messages` runs again; the count matches the slice.
                let r = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        rest.as_mut_ptr(),
                        rest.len().min(1024) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    for k in m..m + r as usize {
                        let (a, b) = scratch.spans[k];
                        outcomes[a as usize..b as usize].fill(Outcome::Sent);
                    }
                    m += r as usize;
                    item = scratch.spans.get(m).map_or(n, |s| s.0 as usize);
                    consecutive_errors = 0;
                    continue;
                }
                let err = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                let (a, b) = scratch.spans[m];
                let (a, b) = (a as usize, b as usize);
                match err {
                    libc::EINTR => continue,
                    libc::EAGAIN => {
                        // Socket buffer full: drop the rest of this batch, never wait.
                        outcomes[a..].fill(Outcome::Dropped);
                        return;
                    }
                    libc::EIO | libc::EINVAL if b - a > 1 => {
                        // The device refuses GSO (no checksum offload before 6.11, ...): fall
                        // back for good and resend from this message without it.
                        self.gso = false;
                        item = a;
                        rebuild = true;
                        break;
                    }
                    libc::EMSGSIZE if b - a > 1 => {
                        // Segments larger than the MTU: no GSO for payloads this large from
                        // now on (plain datagrams get fragmented); resend from here.
                        self.gso_limit = self.gso_limit.min(scratch.iovs[a].iov_len);
                        item = a;
                        rebuild = true;
                        break;
                    }
                    libc::ENOBUFS => {
                        outcomes[a..b].fill(Outcome::Dropped);
                    }
                    e => {
                        outcomes[a..b].fill(Outcome::Error(e));
                        consecutive_errors += 1;
                        if consecutive_errors >= 2 {
                            // The same destination failing twice in a row (no route, ...):
                            // give up this batch rather than one syscall per datagram.
                            outcomes[b..].fill(Outcome::Error(e));
                            return;
                        }
                    }
                }
                m += 1;
                item = b;
            }
            if !rebuild {
                break;
            }
        }
    }

    /// Reads and discards queued errors (from `IP_RECVERR`); returns how many there were.
    pub fn drain_errors(&self) -> u64 {
        let mut n = 0;
        let mut buf = [0u8; 64];
        let mut control = [0u8; 256];
        for _ in 0..256 {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len();
            // SAFETY: `msg` points to live local buffers of the sizes given.
            let r = unsafe {
                libc::recvmsg(
                    self.fd.as_raw_fd(),
                    &mut msg,
                    libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                break;
            }
            n += 1;
        }
        n
    }

    /// Builds the messages for items `from..` (GSO runs when enabled, else one per item).
    fn build_messages(&self, s: &mut SendScratch, from: usize) {
        s.msgs.clear();
        s.names.clear();
        s.cmsgs.clear();
        s.spans.clear();
        let n = s.iovs.len();
        // Pass 1: spans, names and control messages (vectors grow here, nothing points in yet).
        let mut i = from;
        while i < n {
            let len = s.iovs[i].iov_len;
            let mut j = i + 1;
            if self.gso && len > 0 && len < self.gso_limit {
                let mut total = len;
                while j < n
                    && j - i < GSO_MAX_SEGMENTS
                    && s.addrs[j] == s.addrs[i]
                    && s.iovs[j].iov_len <= len
                    && s.iovs[j].iov_len > 0
                    && total + s.iovs[j].iov_len <= GSO_MAX_BYTES
                {
                    total += s.iovs[j].iov_len;
                    j += 1;
                    // A shorter segment may only come last.
                    if s.iovs[j - 1].iov_len < len {
                        break;
                    }
                }
            }
            s.spans.push((i as u32, j as u32));
            s.names.push(to_sockaddr(&s.addrs[i]));
            let mut c = GsoCmsg([0; GSO_CMSG_SPACE]);
            if j - i > 1 {
                let hdr = libc::cmsghdr {
                    cmsg_len: CMSGHDR_LEN + 2,
                    cmsg_level: libc::SOL_UDP,
                    cmsg_type: libc::UDP_SEGMENT,
                };
                // SAFETY: the buffer is CMSG_SPACE(2) bytes and 8-byte aligned; the header
                // goes first and the u16 segment size right after it.
                unsafe {
                    std::ptr::write(c.0.as_mut_ptr().cast::<libc::cmsghdr>(), hdr);
                    std::ptr::write_unaligned(
                        c.0.as_mut_ptr().add(CMSGHDR_LEN).cast::<u16>(),
                        len as u16,
                    );
                }
            }
            s.cmsgs.push(c);
            i = j;
        }
        // Pass 2: the headers, pointing into vectors that no longer change.
        let name_len = |ipv6: bool| {
            if ipv6 {
                std::mem::size_of::<libc::sockaddr_in6>()
            } else {
                std::mem::size_of::<libc::sockaddr_in>()
            }
        };
        for (k, &(a, b)) in s.spans.iter().enumerate() {
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (&mut s.names[k] as *mut libc::sockaddr_in6).cast();
            hdr.msg_namelen = name_len(s.addrs[a as usize].is_ipv6()) as libc::socklen_t;
            hdr.msg_iov = &mut s.iovs[a as usize];
            hdr.msg_iovlen = (b - a) as usize;
            if b - a > 1 {
                hdr.msg_control = s.cmsgs[k].0.as_mut_ptr().cast();
                hdr.msg_controllen = GSO_CMSG_SPACE;
            }
            s.msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
    }
}

impl AsRawFd for EgressSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Binds to the wildcard address and `port` (0: an ephemeral port).
fn bind_port(fd: RawFd, ipv6: bool, port: u16) -> io::Result<()> {
    let any: SocketAddr = if ipv6 {
        (std::net::Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, port).into()
    };
    let sa = to_sockaddr(&any);
    let len = if ipv6 {
        std::mem::size_of::<libc::sockaddr_in6>()
    } else {
        std::mem::size_of::<libc::sockaddr_in>()
    };
    // SAFETY: `sa` is a live sockaddr_in6-sized buffer holding an address of the family the
    // length names (`to_sockaddr` wrote a sockaddr_in at its start for IPv4), and `len` is at
    // most its size, so the kernel reads only inside it; it keeps no pointer.
    syscall!(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in6).cast(),
            len as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// True when the kernel knows `UDP_SEGMENT` on this socket.
fn gso_supported(fd: RawFd) -> bool {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` is a live, writable i32 and `len` holds its size, so the kernel writes at most
    // four bytes into it and the real length into `len`; neither pointer is kept.
    syscall!(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    })
    .is_ok()
}

/// Encodes an address into a `sockaddr_in6`-sized buffer (a `sockaddr_in` for IPv4).
fn to_sockaddr(addr: &SocketAddr) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in (16 bytes) fits in sockaddr_in6 (28 bytes), same alignment.
            unsafe { std::ptr::write((&mut sa as *mut libc::sockaddr_in6).cast(), sin) };
        }
        SocketAddr::V6(a) => {
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_port = a.port().to_be();
            sa.sin6_flowinfo = a.flowinfo().to_be();
            sa.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sa.sin6_scope_id = a.scope_id();
        }
    }
    sa
}

fn from_sockaddr(sa: &libc::sockaddr_in6) -> SocketAddr {
    if i32::from(sa.sin6_family) == libc::AF_INET {
        // SAFETY: the family says the buffer holds a sockaddr_in, which fits.
        let sin: libc::sockaddr_in =
            unsafe { std::ptr::read((sa as *const libc::sockaddr_in6).cast()) };
        SocketAddr::from((
            sin.sin_addr.s_addr.to_ne_bytes(),
            u16::from_be(sin.sin_port),
        ))
    } else {
        SocketAddr::from((sa.sin6_addr.s6_addr, u16::from_be(sa.sin6_port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `payloads` to `to` in one batch; the outcome of each.
    fn send_all(tx: &mut EgressSocket, payloads: &[Vec<u8>], to: SocketAddr) -> Vec<Outcome> {
        let mut scratch = SendScratch::default();
        let mut out = Vec::new();
        tx.send_batch(
            &mut scratch,
            payloads.iter().map(|p| (p.as_slice(), to)),
            &mut out,
        );
        out
    }
    use std::net::UdpSocket;

    fn receiver() -> (UdpSocket, SocketAddr) {
        let r = UdpSocket::bind("127.0.0.1:0").unwrap();
        r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let a = r.local_addr().unwrap();
        (r, a)
    }

    fn sender(gso: bool) -> EgressSocket {
        EgressSocket::open(&EgressConfig {
            ipv6: false,
            multicast_if: None,
            ttl: 64,
            dscp: 46,
            gso,
            source_port: 0,
        })
        .unwrap()
    }

    /// Several sockets of one destination (one per worker, or before and after a reload) bind
    /// the same source port, and each sends from it.
    #[test]
    fn sockets_share_a_source_port() {
        let (rx, to) = receiver();
        let first = sender(false);
        let port = first.local_addr().unwrap().port();
        let cfg = EgressConfig {
            ipv6: false,
            multicast_if: None,
            ttl: 64,
            dscp: 0,
            gso: false,
            source_port: port,
        };
        let mut second = EgressSocket::open(&cfg).unwrap();
        assert_eq!(second.local_addr().unwrap().port(), port);
        let mut outcomes = Vec::new();
        second.send_batch(
            &mut SendScratch::default(),
            [(&b"x"[..], to)].into_iter(),
            &mut outcomes,
        );
        assert_eq!(outcomes, [Outcome::Sent]);
        let mut buf = [0u8; 8];
        let (_, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(from.port(), port);
        drop(first);
    }

    fn check_batch(gso: bool) {
        let (rx, to) = receiver();
        let mut tx = sender(gso);
        // Runs of equal sizes, a shorter tail, a size change: every datagram arrives intact and
        // in order whichever way the batch is cut into messages.
        let payloads: Vec<Vec<u8>> = (0..150u32)
            .map(|i| {
                let len = if i < 100 {
                    200
                } else if i == 100 {
                    50
                } else {
                    300
                };
                (0..len)
                    .map(|b| (i as u8).wrapping_mul(7).wrapping_add(b as u8))
                    .collect()
            })
            .collect();
        let out = send_all(&mut tx, &payloads, to);
        assert_eq!(out.len(), payloads.len());
        assert!(out.iter().all(|o| *o == Outcome::Sent), "{out:?}");
        let mut buf = [0u8; 2048];
        for p in &payloads {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], p.as_slice());
        }
    }

    #[test]
    fn batch_without_gso_arrives_in_order() {
        check_batch(false);
    }

    #[test]
    fn batch_with_gso_arrives_in_order() {
        // Loopback has checksum offload, so GSO stays on.
        check_batch(true);
    }

    #[test]
    fn dscp_and_port_are_set() {
        let tx = sender(false);
        let raw = tx.as_raw_fd();
        let mut v: i32 = 0;
        let mut len = 4 as libc::socklen_t;
        // SAFETY: `v` is a live, writable i32 and `len` holds its size; the kernel writes at
        // most that much and keeps no pointer.
        syscall!(unsafe {
            libc::getsockopt(
                raw,
                libc::IPPROTO_IP,
                libc::IP_TOS,
                (&mut v as *mut i32).cast(),
                &mut len,
            )
        })
        .unwrap();
        assert_eq!(v, 46 << 2);
        assert_ne!(tx.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn payloads_over_the_mtu_fall_back_from_gso_and_small_ones_keep_it() {
        if let Err(e) = super::super::enter_private_netns() {
            panic!("this test needs root (CAP_SYS_ADMIN) for a network namespace: {e}");
        }
        // A veth without checksum offload (kernels before 6.11 refuse GSO there with EIO) and
        // a small MTU (segments larger than the MTU: EINVAL on some kernels). Whether the
        // kernel takes the GSO send or refuses it and the socket falls back, every datagram
        // must arrive intact and in order.
        for cmd in [
            "ip link set lo up",
            "ip link add gs0 type veth peer name gs1",
            "ip addr add 10.66.0.1/24 dev gs0",
            "ip addr add 10.66.0.2/24 dev gs1",
            "ip link set gs0 mtu 576 up",
            "ip link set gs1 mtu 576 up",
            "ethtool -K gs0 tx off >/dev/null",
            // gs1 receives what gs0 sends from an address of this same namespace.
            "sysctl -qw net.ipv4.conf.gs1.accept_local=1 net.ipv4.conf.gs1.rp_filter=0 \
             net.ipv4.conf.all.rp_filter=0",
        ] {
            let st = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .unwrap();
            assert!(st.success(), "`{cmd}` failed");
        }
        // Multicast out of gs0 (bound to it), received on gs1 by a socket joined there.
        let rx = UdpSocket::bind("0.0.0.0:0").unwrap();
        rx.join_multicast_v4(
            &"239.66.0.1".parse().unwrap(),
            &"10.66.0.2".parse().unwrap(),
        )
        .unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let to = SocketAddr::from(([239, 66, 0, 1], rx.local_addr().unwrap().port()));
        let ifindex = super::super::ifindex("gs0").expect("gs0 exists");
        let mut tx = EgressSocket::open(&EgressConfig {
            ipv6: false,
            multicast_if: Some(("gs0", ifindex)),
            ttl: 4,
            dscp: 0,
            gso: true,
            source_port: 0,
        })
        .unwrap();
        assert!(tx.gso(), "the kernel knows UDP_SEGMENT");
        // 1000-byte payloads: fragmented without GSO, refused with it (segment > MTU).
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000]).collect();
        let out = send_all(&mut tx, &payloads, to);
        assert!(out.iter().all(|o| *o == Outcome::Sent), "{out:?}");
        let mut buf = [0u8; 2048];
        for p in &payloads {
            let n = rx
                .recv(&mut buf)
                .expect("every datagram arrives after the fallback");
            assert_eq!(&buf[..n], p.as_slice());
        }
        // Small payloads still go out with GSO.
        let small: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i ^ 0x5a; 100]).collect();
        let out = send_all(&mut tx, &small, to);
        assert!(out.iter().all(|o| *o == Outcome::Sent), "{out:?}");
        assert!(tx.gso(), "GSO stays on for payloads below the MTU");
        for p in &small {
            let n = rx.recv(&mut buf).expect("every small datagram arrives");
            assert_eq!(&buf[..n], p.as_slice());
        }
    }
}
