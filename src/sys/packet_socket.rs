//! AF_PACKET `SOCK_DGRAM` ingress sockets, one per (interface, IP version).
//!
//! Why AF_PACKET and not a joined UDP socket: the relay must forward multicast from sources it
//! cannot route back to (strict `rp_filter` drops those before any UDP socket sees them), and
//! packet sockets tap the frame before the reverse-path check. `SOCK_DGRAM` strips the link
//! header, so a buffer holds the IP packet. Each socket is bound to `ETH_P_IP` or `ETH_P_IPV6`,
//! never `ETH_P_ALL`, so it never sees the host's own outgoing packets (the relay's egress).
//!
//! Order of set-up matters: the socket is created with protocol 0 (no packets delivered), the
//! classic BPF filter is attached, the receive buffer sized, and only then `bind` starts the
//! flow, so nothing unfiltered slips in. `PACKET_FANOUT` (kernel 3.1+) needs a bound socket.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::packet_ring::{RingSpec, RxRing};
use super::{SetupError, owned, setsockopt, setsockopt_int};
use crate::filter::Insn;

const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<libc::sock_filter>());

/// An open, bound AF_PACKET socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
    protocol: u16,
    /// The memory-mapped ring: TPACKET_V3 blocks (`ingress = "ring"`) or TPACKET_V2 slots
    /// (`"frames"`).
    ring: RxRing,
}

/// How [`PacketSocket::open`] sized the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcvbufOutcome {
    /// `SO_RCVBUFFORCE` took the requested size.
    Forced,
    /// CAP_NET_ADMIN is missing: `SO_RCVBUF` was used, capped by `net.core.rmem_max`.
    Capped,
}

impl PacketSocket {
    /// Opens a socket on `ifindex` (named `ifname` in errors) for `protocol` (`ETH_P_IP` or
    /// `ETH_P_IPV6`), attaching `filter` first (empty = no filter), sizing the receive buffer
    /// to `rcvbuf` bytes, mapping the TPACKET ring `ring`, and joining fanout
    /// group `fanout` (hash mode) when given.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        protocol: u16,
        filter: &[Insn],
        rcvbuf: usize,
        ring: RingSpec,
        fanout: Option<u16>,
    ) -> Result<(PacketSocket, RcvbufOutcome), SetupError> {
        // SAFETY: integer arguments only; on success the kernel returns a new descriptor that
        // nothing else owns, which `owned` takes over.
        let fd = match syscall!(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        }) {
            Ok(fd) => owned(fd),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
                return Err(SetupError::NoPermission {
                    what: format!("cannot open a packet socket on {ifname}"),
                    capability: "CAP_NET_RAW",
                    source: e,
                });
            }
            Err(e) => {
                return Err(SetupError::os(
                    format!("cannot open a packet socket on {ifname}"),
                    e,
                ));
            }
        };
        if !filter.is_empty() {
            attach_filter(fd.as_raw_fd(), filter)
                .map_err(|e| SetupError::os(format!("cannot attach the filter on {ifname}"), e))?;
        }
        let outcome = set_rcvbuf(fd.as_raw_fd(), rcvbuf).map_err(|e| {
            SetupError::os(format!("cannot size the receive buffer on {ifname}"), e)
        })?;
        let ring = RxRing::setup(fd.as_raw_fd(), &ring)
            .map_err(|e| SetupError::os(format!("cannot map a packet ring on {ifname}"), e))?;
        let sock = PacketSocket {
            fd,
            ifindex,
            protocol,
            ring,
        };
        sock.bind().map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => SetupError::NoInterface {
                name: ifname.to_string(),
            },
            _ => SetupError::os(format!("cannot bind a packet socket to {ifname}"), e),
        })?;
        if let Some(group) = fanout {
            // PACKET_FANOUT_HASH keeps a flow (addresses, ports) on one socket: no reordering.
            let arg: i32 = i32::from(group) | ((libc::PACKET_FANOUT_HASH as i32) << 16);
            setsockopt_int(
                sock.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                arg,
            )
            .map_err(|e| {
                SetupError::os(format!("cannot join fanout group {group} on {ifname}"), e)
            })?;
        }
        Ok((sock, outcome))
    }

    /// Replaces the socket filter; the kernel swaps it atomically (no frame sees no filter).
    /// An empty program removes the filter.
    pub fn attach_filter(&self, filter: &[Insn]) -> io::Result<()> {
        attach_filter(self.fd.as_raw_fd(), filter)
    }

    fn bind(&self) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is valid before the fields are set.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = self.protocol.to_be();
        sll.sll_ifindex = self.ifindex as i32;
        // SAFETY: `sll` is a live, initialised sockaddr_ll and the length passed is exactly its
        // size, so the kernel reads only inside it; it keeps no pointer after the call.
        syscall!(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// Packets seen and dropped by the kernel since the last call (the kernel resets them on
    /// read; `packets` includes `drops`).
    pub fn statistics(&self) -> io::Result<(u64, u64)> {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` is a live, writable tpacket_stats and `len` holds its size, so the kernel
        // writes at most that many bytes (and the real length into `len`); it keeps neither
        // pointer. This is the V1/V2 layout, a prefix of the V3 one, and the kernel copies no
        // more than `len`.
        syscall!(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        })?;
        Ok((u64::from(st.tp_packets), u64::from(st.tp_drops)))
    }

    /// The pending socket error (e.g. ENETDOWN after the interface went down), cleared.
    pub fn take_error(&self) -> Option<io::Error> {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: `v` is a live, writable i32 and `len` holds its size, so the kernel writes at
        // most four bytes into it and the real length into `len`; it keeps neither pointer.
        syscall!(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut v as *mut i32).cast(),
                &mut len,
            )
        })
        .ok()?;
        (v != 0).then(|| io::Error::from_raw_os_error(v))
    }

    /// The memory-mapped receive ring.
    pub fn ring(&self) -> &RxRing {
        &self.ring
    }

    pub fn ring_mut(&mut self) -> &mut RxRing {
        &mut self.ring
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Attaches (or, with an empty program, detaches) a classic BPF filter on `fd`.
fn attach_filter(fd: RawFd, filter: &[Insn]) -> io::Result<()> {
    if filter.is_empty() {
        let dummy: i32 = 0;
        return match setsockopt(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &dummy) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        };
    }
    if filter.len() > u16::MAX as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        // `Insn` is `#[repr(C)]` with the fields, order and size of `struct sock_filter`.
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program during the call; `filter` outlives it.
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn set_rcvbuf(fd: RawFd, bytes: usize) -> io::Result<RcvbufOutcome> {
    let v = bytes.min(i32::MAX as usize / 2) as i32;
    match setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v) {
        Ok(()) => Ok(RcvbufOutcome::Forced),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v)?;
            Ok(RcvbufOutcome::Capped)
        }
        Err(e) => Err(e),
    }
}
